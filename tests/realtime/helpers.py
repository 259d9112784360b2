"""Set up users and channels on live nodes through the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.auth.factories import PASSWORD, unique_username
from tests.support.server import Node


@dataclass
class LiveUser:
    id: str
    username: str
    token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def live_user(node: Node, stem: str = "rt") -> LiveUser:
    username = unique_username(stem)
    async with httpx.AsyncClient(base_url=node.http) as http:
        registered = await http.post(
            "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        tokens = (
            await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        ).json()
    return LiveUser(
        registered.json()["id"], username, tokens["access_token"], tokens["refresh_token"]
    )


async def api(node: Node, user: LiveUser, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.http, headers=user.headers) as http:
        return await http.request(method, path, **kwargs)


async def channel_with(
    node: Node, owner: LiveUser, *members: LiveUser, kind: str = "public"
) -> str:
    response = await api(
        node,
        owner,
        "POST",
        "/api/v1/channels",
        json={"name": "room", "kind": kind, "member_ids": [m.id for m in members]},
    )
    assert response.status_code == 201, response.text
    channel_id: str = response.json()["id"]
    return channel_id
