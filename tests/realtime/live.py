"""Shared steps for the live real-time tests: connected clients, REST history, waiting.

Waits are generous (the machine is small and shared); nothing here asserts on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.realtime.helpers import LiveUser, api
from tests.support.server import Node
from tests.support.wsclient import RealtimeClient

WAIT = 10.0


@asynccontextmanager
async def connected(
    *pairs: tuple[Node, LiveUser], resume: dict[str, int] | None = None
) -> AsyncIterator[list[RealtimeClient]]:
    """One connected client per (node, user); all closed afterwards, whatever happened."""
    clients = [RealtimeClient(node.ws, user.token) for node, user in pairs]
    try:
        for client in clients:
            await client.connect(resume)
        yield clients
    finally:
        await close_all(clients)


async def close_all(clients: Iterable[RealtimeClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def of_type(client: RealtimeClient, kind: str) -> list[dict[str, Any]]:
    return [frame for frame in client.others if frame["type"] == kind]


def errors_for(client: RealtimeClient, client_msg_id: str) -> list[dict[str, Any]]:
    return [f for f in of_type(client, "error") if f.get("client_msg_id") == client_msg_id]


def seqs(client: RealtimeClient, channel_id: str) -> list[int]:
    return [event["seq"] for event in client.events.get(channel_id, [])]


async def wait_seq(
    client: RealtimeClient, channel_id: str, seq: int, timeout: float = WAIT
) -> None:
    """Wait until ``client`` has seen ``seq`` (or later) in ``channel_id``."""
    try:
        await client.wait_for(lambda: client.last_seq(channel_id) >= seq, timeout)
    except TimeoutError:
        raise AssertionError(
            f"waited {timeout}s for seq {seq} in {channel_id}; got {seqs(client, channel_id)}"
        ) from None


async def wait_frame(
    client: RealtimeClient, match: Callable[[dict[str, Any]], bool], timeout: float = WAIT
) -> dict[str, Any]:
    """The first non-event, non-ack frame matching ``match``, waiting for it if needed."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [frame for frame in client.others if match(frame)]
        return bool(found)

    try:
        await client.wait_for(seen, timeout)
    except TimeoutError:
        raise AssertionError(f"no matching frame within {timeout}s: {client.others}") from None
    return found[0]


async def round_trip(client: RealtimeClient) -> None:
    """Ping and wait for the pong: the socket is open and every earlier frame was handled."""
    pongs = len(of_type(client, "pong"))
    await client.send_frame({"type": "ping"})
    await client.wait_for(lambda: len(of_type(client, "pong")) > pongs, WAIT)
    assert client.close_code is None


async def send_and_ack(client: RealtimeClient, channel_id: str, body: str) -> dict[str, Any]:
    client_msg_id = await client.send_message(channel_id, body)
    await client.wait_for(
        lambda: client_msg_id in client.acks or bool(errors_for(client, client_msg_id)), WAIT
    )
    assert client_msg_id in client.acks, errors_for(client, client_msg_id)
    return client.acks[client_msg_id]


async def send_many(
    client: RealtimeClient, channel_id: str, bodies: Iterable[str], batch: int = 4
) -> list[dict[str, Any]]:
    """Send over the WebSocket, a few at a time, each batch acked before the next goes."""
    acks: list[dict[str, Any]] = []
    pending = list(bodies)
    while pending:
        now, pending = pending[:batch], pending[batch:]
        ids = [await client.send_message(channel_id, body) for body in now]
        await client.wait_for(lambda ids=ids: all(i in client.acks for i in ids), WAIT)
        acks.extend(client.acks[i] for i in ids)
    return acks


def highest(acks: Iterable[dict[str, Any]]) -> int:
    """The newest seq among acks (a batch commits in any order)."""
    return max(ack["seq"] for ack in acks)


async def post_message(node: Node, user: LiveUser, channel_id: str, body: str) -> dict[str, Any]:
    response = await api(
        node, user, "POST", f"/api/v1/channels/{channel_id}/messages", json={"body": body}
    )
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def history(node: Node, user: LiveUser, channel_id: str) -> list[dict[str, Any]]:
    """Every message of the channel over REST, in seq order."""
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await api(
            node,
            user,
            "GET",
            f"/api/v1/channels/{channel_id}/messages",
            params={"after_seq": after, "limit": 200},
        )
        assert response.status_code == 200, response.text
        page = response.json()["messages"]
        messages.extend(page)
        if len(page) < 200:
            return messages
        after = page[-1]["seq"]


async def channel_head(node: Node, user: LiveUser, channel_id: str) -> int:
    response = await api(node, user, "GET", f"/api/v1/channels/{channel_id}")
    assert response.status_code == 200, response.text
    head: int = response.json()["last_seq"]
    return head


async def metric(node: Node, sample: str) -> float:
    """One sample of the node's /metrics, e.g. 'ultrachat_ws_connections'; 0 if absent."""
    async with httpx.AsyncClient() as http:
        response = await http.get(node.http + "/metrics")
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0
