"""Request-level helpers: who is calling, from where."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ultrachat.auth.service import AuthService, ClientInfo
from ultrachat.auth.tokens import AccessClaims
from ultrachat.errors import Forbidden, Unauthorized
from ultrachat.gateway.context import user_id_var

_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/login")


# Dependencies are coroutines even where nothing awaits: FastAPI runs a plain ``def`` in a
# worker thread, a thread hop per request for what is a dictionary lookup.
async def auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.runtime.auth
    return service


async def client_info(request: Request) -> ClientInfo:
    ip = request.client.host if request.client else "unknown"
    # Stored and shown as text: drop control characters (PostgreSQL refuses NUL outright).
    agent = request.headers.get("user-agent", "")
    device = "".join(ch for ch in agent if ch.isprintable())[:255]
    return ClientInfo(ip=ip, device=device)


async def current_claims(
    response: Response,
    service: Annotated[AuthService, Depends(auth_service)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims:
    """The verified access token of the caller; applies the per-user API limit."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="ultrachat"'}
        )
    try:
        claims = await service.authenticate(credentials.credentials)
    except Unauthorized as exc:
        # RFC 6750: tell the client the token itself is the problem (refresh, or sign in).
        exc.headers.setdefault(
            "WWW-Authenticate", 'Bearer realm="ultrachat", error="invalid_token"'
        )
        raise
    user_id_var.set(claims.user_id)
    decision = await service.enforce_api_limit(claims.user_id)
    if decision is not None:
        response.headers.update(decision.headers())
    return claims


async def require_admin(
    claims: Annotated[AccessClaims, Depends(current_claims)],
    service: Annotated[AuthService, Depends(auth_service)],
) -> AccessClaims:
    """The caller's claims if the caller is an admin now (read from the database): else 403."""
    user = await service.get_user(claims.user_id)
    if user.role != "admin":
        raise Forbidden("this needs the admin role")
    return claims


Claims = Annotated[AccessClaims, Depends(current_claims)]
AdminClaims = Annotated[AccessClaims, Depends(require_admin)]
Service = Annotated[AuthService, Depends(auth_service)]
Client = Annotated[ClientInfo, Depends(client_info)]
