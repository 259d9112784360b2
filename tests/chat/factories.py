"""Channels, messages and the event log, made and read through the public API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from tests.auth.factories import Account, account
from ultrachat.chat.log import ChannelLog

API = "/api/v1"


def parse_time(stamp: str) -> datetime:
    """An ISO 8601 UTC time as the API writes it: ending in Z."""
    assert stamp.endswith("Z"), stamp
    moment = datetime.fromisoformat(stamp)
    assert moment.utcoffset() == timedelta(0)
    return moment


async def accounts(client: httpx.AsyncClient, count: int) -> list[Account]:
    return [await account(client) for _ in range(count)]


async def create(
    client: httpx.AsyncClient,
    owner: Account,
    kind: str = "public",
    *members: Account,
    name: str | None = "room",
    status: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "member_ids": [m.id for m in members], **extra}
    if name is not None and kind != "dm":
        body["name"] = name
    response = await client.post(f"{API}/channels", json=body, headers=owner.headers)
    assert response.status_code == status, response.text
    channel: dict[str, Any] = response.json()
    return channel


async def get_channel(client: httpx.AsyncClient, user: Account, channel_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/channels/{channel_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    channel: dict[str, Any] = response.json()
    return channel


async def listed(client: httpx.AsyncClient, user: Account, channel_id: str) -> dict[str, Any]:
    """The channel as it appears in the user's channel list (with its counts)."""
    response = await client.get(f"{API}/channels", headers=user.headers)
    assert response.status_code == 200, response.text
    [channel] = [c for c in response.json()["channels"] if c["id"] == channel_id]
    return dict(channel)


async def roles(client: httpx.AsyncClient, user: Account, channel_id: str) -> dict[str, str]:
    """user id → role, from GET members."""
    response = await client.get(f"{API}/channels/{channel_id}/members", headers=user.headers)
    assert response.status_code == 200, response.text
    return {m["user_id"]: m["role"] for m in response.json()["members"]}


async def join(client: httpx.AsyncClient, user: Account, channel_id: str) -> dict[str, Any]:
    response = await client.post(f"{API}/channels/{channel_id}/join", headers=user.headers)
    assert response.status_code == 200, response.text
    channel: dict[str, Any] = response.json()
    return channel


async def invite(
    client: httpx.AsyncClient, user: Account, channel_id: str, invitee: Account
) -> httpx.Response:
    return await client.post(
        f"{API}/channels/{channel_id}/members", json={"user_id": invitee.id}, headers=user.headers
    )


async def remove(
    client: httpx.AsyncClient, actor: Account, channel_id: str, user: Account
) -> httpx.Response:
    return await client.delete(
        f"{API}/channels/{channel_id}/members/{user.id}", headers=actor.headers
    )


async def leave(client: httpx.AsyncClient, user: Account, channel_id: str) -> httpx.Response:
    return await client.post(f"{API}/channels/{channel_id}/leave", headers=user.headers)


async def set_role(
    client: httpx.AsyncClient, actor: Account, channel_id: str, user: Account, role: str
) -> httpx.Response:
    return await client.patch(
        f"{API}/channels/{channel_id}/members/{user.id}",
        json={"role": role},
        headers=actor.headers,
    )


async def patch_channel(
    client: httpx.AsyncClient, user: Account, channel_id: str, **changes: Any
) -> httpx.Response:
    return await client.patch(f"{API}/channels/{channel_id}", json=changes, headers=user.headers)


async def post(
    client: httpx.AsyncClient, user: Account, channel_id: str, body: str = "hello", **extra: Any
) -> httpx.Response:
    return await client.post(
        f"{API}/channels/{channel_id}/messages",
        json={"body": body, **extra},
        headers=user.headers,
    )


async def send(
    client: httpx.AsyncClient, user: Account, channel_id: str, body: str = "hello", **extra: Any
) -> dict[str, Any]:
    response = await post(client, user, channel_id, body, **extra)
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def get_message(client: httpx.AsyncClient, user: Account, message_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/messages/{message_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


async def history(
    client: httpx.AsyncClient, user: Account, channel_id: str, **params: int
) -> list[dict[str, Any]]:
    response = await client.get(
        f"{API}/channels/{channel_id}/messages", params=params, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def done(response: httpx.Response, status: int = 204) -> None:
    """The request succeeded with this status."""
    assert response.status_code == status, response.text


async def events(app: FastAPI, channel_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The channel's stored event log: (seq, kind, data), checked against each frame."""
    log = ChannelLog(app.state.runtime.db, app.state.runtime.ledger.sealer)
    stored = []
    for envelope in await log.after(channel_id, 0, 1000):
        frame = orjson.loads(envelope.frame)
        assert frame["type"] == "event"
        assert (frame["channel_id"], frame["seq"], frame["event"]) == (
            channel_id,
            envelope.seq,
            envelope.kind,
        )
        stored.append((envelope.seq, envelope.kind, frame["data"]))
    return stored


async def kinds(app: FastAPI, channel_id: str) -> list[str]:
    """The event kinds in the log, after checking its seqs are exactly 1..N."""
    stored = await events(app, channel_id)
    assert [seq for seq, _, _ in stored] == list(range(1, len(stored) + 1))
    return [kind for _, kind, _ in stored]
