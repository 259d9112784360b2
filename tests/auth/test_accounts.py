"""Registration, sign-in and the profile endpoint."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.factories import PASSWORD, account, assert_error, login, register, unique_username


async def test_register_returns_id_and_username(client: httpx.AsyncClient) -> None:
    username = unique_username("new")
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": username}


async def test_usernames_are_unique_ignoring_case(client: httpx.AsyncClient) -> None:
    _, username = await register(client, unique_username("Case"))
    response = await client.post(
        "/api/v1/auth/register", json={"username": username.upper(), "password": PASSWORD}
    )
    error = assert_error(response, 409, "conflict")
    assert error["message"] == "username is already taken"


async def test_login_is_case_insensitive_on_username(client: httpx.AsyncClient) -> None:
    _, username = await register(client, unique_username("Mixed"))
    tokens = await login(client, username.lower())
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 3600


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        ("ab", "short"),
        ("a" * 33, "long"),
        ("bad name", "space"),
        ("émile", "non-ascii"),
        ("x/y", "slash"),
    ],
)
async def test_register_refuses_bad_usernames(
    client: httpx.AsyncClient, username: str, reason: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
    )
    assert_error(response, 422, "invalid_input")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1", "password must be at least 8 characters"),
        ("password123", "password is too common; choose another"),
        ("QWERTYUIOP", "password is too common; choose another"),
    ],
)
async def test_register_refuses_weak_passwords(
    client: httpx.AsyncClient, password: str, message: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"username": unique_username(), "password": password}
    )
    assert assert_error(response, 422, "invalid_input")["message"] == message


async def test_wrong_password_and_unknown_user_look_the_same(client: httpx.AsyncClient) -> None:
    _, username = await register(client)
    wrong = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": "not-the-password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"username": unique_username("ghost"), "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.json()["error"]["message"] == "invalid username or password"


async def test_me_returns_the_caller(client: httpx.AsyncClient) -> None:
    user = await account(client)
    response = await client.get("/api/v1/users/me", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user.id
    assert body["username"] == user.username
    assert body["role"] == "member"
    assert body["created_at"].endswith("Z")


async def test_me_without_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_password_hash_never_leaves_the_api(client: httpx.AsyncClient) -> None:
    user = await account(client)
    response = await client.get("/api/v1/users/me", headers=user.headers)
    assert "argon2" not in response.text
    assert "password" not in response.json()
