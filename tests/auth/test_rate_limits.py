"""Rate limits on sign-in, registration, refresh and the API, as a client meets them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from tests.auth.factories import PASSWORD, assert_error, login, register, unique_username
from tests.support.app import running_app
from tests.support.backends import Backend
from tests.support.isolated import isolated_settings
from ultrachat.auth.models import AuthSession

ATTACKER_IP = "198.51.100.9"


@asynccontextmanager
async def client_at(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def attempt(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


def assert_rate_limited(response: httpx.Response, limit: int, window: int) -> None:
    assert_error(response, 429, "rate_limited")
    headers = response.headers
    assert headers["RateLimit-Limit"] == str(limit)
    assert headers["RateLimit-Remaining"] == "0"
    assert 0 < int(headers["RateLimit-Reset"]) <= window
    # The next request is admitted one emission interval (window / limit) after the first.
    assert 0 < int(headers["Retry-After"]) <= window // limit


async def test_login_over_the_ip_limit_is_429_with_headers(backend: Backend) -> None:
    settings = isolated_settings(backend, rate_limit_auth_max=3)
    async with running_app(settings) as (app, client):
        _, username = await register(client)
        for _ in range(3):
            assert (await attempt(client, username, "wrong-password!")).status_code == 401
        refused = await attempt(client, username)
        assert_rate_limited(refused, 3, 900)
        assert refused.json()["error"]["message"] == "too many requests; retry later"
        # Per IP: the same account from another address is not held back.
        async with client_at(app, "192.0.2.44") as elsewhere:
            assert (await attempt(elsewhere, username)).status_code == 200


async def test_register_is_limited_per_ip(backend: Backend) -> None:
    settings = isolated_settings(backend, rate_limit_auth_max=2)
    async with running_app(settings) as (app, client):
        for _ in range(2):
            await register(client)
        refused = await client.post(
            "/api/v1/auth/register", json={"username": unique_username(), "password": PASSWORD}
        )
        assert_rate_limited(refused, 2, 900)
        async with client_at(app, "192.0.2.45") as elsewhere:
            _, username = await register(elsewhere)
        # Signing in from the refused address has a bucket of its own.
        await login(client, username)


async def test_refresh_is_limited_per_ip(backend: Backend) -> None:
    settings = isolated_settings(backend, rate_limit_auth_max=2)
    async with running_app(settings) as (_, client):
        for _ in range(2):
            response = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
            assert_error(response, 401, "unauthorized")
        refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
        assert_rate_limited(refused, 2, 900)


async def test_the_owner_still_signs_in_from_a_known_ip_while_an_attacker_is_refused(
    backend: Backend,
) -> None:
    settings = isolated_settings(backend, rate_limit_account_max=3)
    async with running_app(settings) as (app, owner):
        _, username = await register(owner)
        await login(owner, username)  # 203.0.113.7 is now a known address; 1 of 3 used

        async with client_at(app, ATTACKER_IP) as attacker:
            for _ in range(2):
                assert_error(await attempt(attacker, username, "guess-123456"), 401, "unauthorized")
            assert_rate_limited(await attempt(attacker, username, "guess-123456"), 3, 900)
            # Even the right password does not get the attacker in now.
            assert_rate_limited(await attempt(attacker, username), 3, 900)

        # The owner, from an address they signed in from before, gets by.
        assert (await attempt(owner, username)).status_code == 200
        # A new address of the owner's own is held back like any other.
        async with client_at(app, "192.0.2.80") as new_place:
            assert_rate_limited(await attempt(new_place, username), 3, 900)


async def test_a_sign_in_older_than_30_days_does_not_make_an_ip_known(backend: Backend) -> None:
    settings = isolated_settings(backend, rate_limit_account_max=2)
    async with running_app(settings) as (app, owner):
        user_id, username = await register(owner)
        await login(owner, username)
        async with app.state.runtime.db.transaction() as session:
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_id == user_id)
                .values(created_at=datetime.now(UTC) - timedelta(days=31))
            )
        async with client_at(app, ATTACKER_IP) as attacker:
            assert_error(await attempt(attacker, username, "guess-123456"), 401, "unauthorized")
            assert_rate_limited(await attempt(attacker, username), 2, 900)
        assert_rate_limited(await attempt(owner, username), 2, 900)


async def test_unknown_accounts_are_limited_too_so_the_429_reveals_nothing(
    backend: Backend,
) -> None:
    settings = isolated_settings(backend, rate_limit_account_max=2)
    async with running_app(settings) as (_, client):
        ghost = unique_username("ghost")
        for _ in range(2):
            assert_error(await attempt(client, ghost), 401, "unauthorized")
        assert_rate_limited(await attempt(client, ghost), 2, 900)


async def test_the_per_user_api_limit(backend: Backend) -> None:
    settings = isolated_settings(backend, rate_limit_api_max=3)
    async with running_app(settings) as (_, client):
        _, name = await register(client)
        _, other_name = await register(client)
        me = {"Authorization": f"Bearer {(await login(client, name))['access_token']}"}
        other = {"Authorization": f"Bearer {(await login(client, other_name))['access_token']}"}
        remaining = []
        for _ in range(3):
            response = await client.get("/api/v1/users/me", headers=me)
            assert response.status_code == 200
            assert response.headers["RateLimit-Limit"] == "3"
            remaining.append(response.headers["RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        assert_rate_limited(await client.get("/api/v1/users/me", headers=me), 3, 900)
        assert (await client.get("/api/v1/users/me", headers=other)).status_code == 200


async def test_no_content_answers_carry_the_api_limit_headers(backend: Backend) -> None:
    settings = isolated_settings(backend, rate_limit_api_max=5)
    async with running_app(settings) as (_, client):
        _, name = await register(client)
        headers = {"Authorization": f"Bearer {(await login(client, name))['access_token']}"}
        response = await client.post("/api/v1/auth/logout", headers=headers)
        assert response.status_code == 204
        assert response.content == b""
        assert response.headers["RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Remaining"] == "4"
