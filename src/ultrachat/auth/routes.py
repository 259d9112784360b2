"""Auth's HTTP API under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter, status

from ultrachat.auth.dependencies import Claims, Client, Service
from ultrachat.auth.models import User
from ultrachat.auth.schemas import (
    Credentials,
    PasswordChange,
    RefreshRequest,
    RegisteredUser,
    SessionList,
    SessionOut,
    TokenPair,
    UserOut,
)
from ultrachat.auth.service import IssuedTokens, Profile
from ultrachat.gateway.openapi import error_responses

router = APIRouter(prefix="/api/v1", tags=["auth"])


def _pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        session_id=tokens.session_id,
    )


def _user(user: User | Profile) -> UserOut:
    return UserOut(id=user.id, username=user.username, role=user.role, created_at=user.created_at)


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422, 429),
)
async def register(body: Credentials, service: Service, client: Client) -> RegisteredUser:
    user = await service.register(body.username, body.password, client)
    return RegisteredUser(id=user.id, username=user.username)


@router.post("/auth/login", responses=error_responses(401, 422, 429))
async def login(body: Credentials, service: Service, client: Client) -> TokenPair:
    return _pair(await service.login(body.username, body.password, client))


@router.post("/auth/refresh", responses=error_responses(401, 422, 429))
async def refresh(body: RefreshRequest, service: Service, client: Client) -> TokenPair:
    return _pair(await service.refresh(body.refresh_token, client))


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401),
)
async def logout(claims: Claims, service: Service) -> None:
    await service.logout(claims)


@router.post(
    "/auth/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401),
)
async def logout_all(claims: Claims, service: Service) -> None:
    await service.logout_all(claims.user_id)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 422, 429),
)
async def change_password(body: PasswordChange, claims: Claims, service: Service) -> None:
    await service.change_password(claims, body.current_password, body.new_password)


@router.get("/auth/sessions", responses=error_responses(401))
async def list_sessions(claims: Claims, service: Service) -> SessionList:
    sessions = await service.list_sessions(claims.user_id)
    return SessionList(
        sessions=[
            SessionOut(
                id=s.id,
                device=s.device,
                ip=s.ip,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                current=s.id == claims.session_id,
            )
            for s in sessions
        ]
    )


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404),
)
async def revoke_session(session_id: str, claims: Claims, service: Service) -> None:
    await service.revoke_session(claims.user_id, session_id)


@router.get("/users/me", responses=error_responses(401))
async def me(claims: Claims, service: Service) -> UserOut:
    return _user(await service.get_profile(claims.user_id))
