"""Refresh tokens: rotation, reuse detection (RFC 9700), races, and the session's lifetime."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import httpx
import jwt
import pytest

from tests.auth.factories import account, assert_error, login, register
from tests.support.app import running_app
from tests.support.backends import Backend
from tests.support.isolated import isolated_settings

TOKEN_PAIR_KEYS = {"access_token", "refresh_token", "token_type", "expires_in", "session_id"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def me_status(client: httpx.AsyncClient, access_token: str) -> int:
    return (await client.get("/api/v1/users/me", headers=bearer(access_token))).status_code


async def test_refresh_returns_the_login_shape_and_rotates_the_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    response = await refresh(client, user.refresh_token)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_PAIR_KEYS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["session_id"] == user.session_id
    assert body["refresh_token"] != user.refresh_token
    assert body["access_token"] != user.access_token
    # Opaque and at least 256 bits: 43 or more base64url characters.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", body["refresh_token"])
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sid"] == user.session_id
    assert claims["sub"] == user.id
    assert await me_status(client, body["access_token"]) == 200
    # The token it replaced still works until it expires: rotation is of refresh tokens only.
    assert await me_status(client, user.access_token) == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    elsewhere = await login(client, user.username)
    first = (await refresh(client, user.refresh_token)).json()
    newest = (await refresh(client, first["refresh_token"])).json()
    assert await me_status(client, newest["access_token"]) == 200

    replay = await refresh(client, user.refresh_token)
    assert_error(replay, 401, "unauthorized")

    # The thief and the owner are indistinguishable, so the session ends for both.
    assert await me_status(client, newest["access_token"]) == 401
    assert await me_status(client, first["access_token"]) == 401
    assert_error(await refresh(client, newest["refresh_token"]), 401, "unauthorized")
    # Only that session: the user's other sign-in is untouched.
    assert await me_status(client, elsewhere["access_token"]) == 200
    assert (await refresh(client, elsewhere["refresh_token"])).status_code == 200


async def test_two_refreshes_racing_with_the_same_token_exactly_one_succeeds(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    responses = await asyncio.gather(*(refresh(client, user.refresh_token) for _ in range(2)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 401)
    assert_error(loser, 401, "unauthorized")
    # The loser presented a token that had just been rotated: that is reuse, and a race is
    # indistinguishable from a replay, so the winner's new tokens die with the session too.
    winner = next(r for r in responses if r.status_code == 200).json()
    assert await me_status(client, winner["access_token"]) == 401
    assert_error(await refresh(client, winner["refresh_token"]), 401, "unauthorized")


async def test_a_revoked_session_cannot_refresh(client: httpx.AsyncClient) -> None:
    user = await account(client)
    assert (await client.post("/api/v1/auth/logout", headers=user.headers)).status_code == 204
    error = assert_error(await refresh(client, user.refresh_token), 401, "unauthorized")
    assert error["message"] == "invalid or expired refresh token"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"refresh_token": "garbage"}, 401, "unauthorized"),
        ({"refresh_token": "A" * 43}, 401, "unauthorized"),
        ({"refresh_token": "x" * 256}, 401, "unauthorized"),
        ({"refresh_token": "x" * 257}, 422, "invalid_input"),
        ({"refresh_token": ""}, 422, "invalid_input"),
        ({"refresh_token": 12345}, 422, "invalid_input"),
        ({}, 422, "invalid_input"),
    ],
    ids=["garbage", "right-length", "max-length", "too-long", "empty", "number", "missing"],
)
async def test_bad_refresh_tokens_are_refused(
    client: httpx.AsyncClient, payload: dict[str, object], status: int, code: str
) -> None:
    response = await client.post("/api/v1/auth/refresh", json=payload)
    assert_error(response, status, code)


async def test_an_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    user = await account(client)
    assert_error(await refresh(client, user.access_token[:256]), 401, "unauthorized")


async def sessions(client: httpx.AsyncClient, access_token: str) -> dict[str, datetime]:
    response = await client.get("/api/v1/auth/sessions", headers=bearer(access_token))
    (only,) = response.json()["sessions"]
    return {name: datetime.fromisoformat(only[name]) for name in ("expires_at", "last_used_at")}


async def test_expires_in_never_exceeds_the_sessions_remaining_life(backend: Backend) -> None:
    # A one-hour access token in a two-minute session that is never renewed.
    settings = isolated_settings(
        backend, session_max_age_seconds=120, session_renew_threshold_seconds=0
    )
    async with running_app(settings) as (_, client):
        _, username = await register(client)
        tokens = await login(client, username)
        for _ in range(2):
            claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            session = await sessions(client, tokens["access_token"])
            assert claims["exp"] == int(session["expires_at"].timestamp())
            assert tokens["expires_in"] == claims["exp"] - claims["iat"] <= 120
            response = await refresh(client, tokens["refresh_token"])
            assert response.status_code == 200
            tokens = response.json()
        # Outside the renew threshold, refreshing leaves the session's expiry alone.
        after = await sessions(client, tokens["access_token"])
        assert after["expires_at"] == session["expires_at"]
        assert after["last_used_at"] > session["last_used_at"]


async def test_a_refresh_inside_the_renew_threshold_extends_the_session(backend: Backend) -> None:
    # Every refresh is inside a threshold longer than the session: each one renews it.
    settings = isolated_settings(
        backend, session_max_age_seconds=120, session_renew_threshold_seconds=3600
    )
    async with running_app(settings) as (_, client):
        _, username = await register(client)
        tokens = await login(client, username)
        before = await sessions(client, tokens["access_token"])
        response = await refresh(client, tokens["refresh_token"])
        assert response.status_code == 200
        after = await sessions(client, response.json()["access_token"])
        assert after["expires_at"] > before["expires_at"]
        assert (after["expires_at"] - after["last_used_at"]).total_seconds() == 120


async def test_no_session_outlives_its_absolute_max_age(backend: Backend) -> None:
    settings = isolated_settings(
        backend, session_max_age_seconds=120, session_absolute_max_age_seconds=90
    )
    async with running_app(settings) as (_, client):
        _, username = await register(client)
        tokens = await login(client, username)
        assert tokens["expires_in"] == 90
        response = await refresh(client, tokens["refresh_token"])
        assert response.status_code == 200
        assert response.json()["expires_in"] <= 90
