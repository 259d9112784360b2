"""Make users and sessions through the public API, as a client would."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx

PASSWORD = "long-enough-passphrase"


@dataclass
class Account:
    id: str
    username: str
    password: str
    access_token: str
    refresh_token: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_username(stem: str = "user") -> str:
    return f"{stem}_{secrets.token_hex(4)}"


async def register(client: httpx.AsyncClient, username: str | None = None) -> tuple[str, str]:
    username = username or unique_username()
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], username


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def account(client: httpx.AsyncClient) -> Account:
    user_id, username = await register(client)
    tokens = await login(client, username)
    return Account(
        user_id,
        username,
        PASSWORD,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["session_id"],
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    """The response is the JSON error envelope with this status and code."""
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error
