"""Presence: aggregated over a user's devices, pushed to channel peers, queryable over REST."""

from __future__ import annotations

from tests.realtime.helpers import LiveUser, api, channel_with, live_user
from tests.support.server import Node
from tests.support.wsclient import RealtimeClient


async def _presence_of(node: Node, viewer: LiveUser, user_id: str) -> str:
    response = await api(node, viewer, "GET", "/api/v1/presence", params={"user_ids": user_id})
    assert response.status_code == 200, response.text
    status: str = response.json()["presence"][user_id]
    return status


async def test_presence_follows_devices(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    await channel_with(node, ann, bob)
    watcher = RealtimeClient(node.ws, ann.token)
    await watcher.connect()
    await watcher.send_frame({"type": "presence_sub", "user_ids": [bob.id]})
    await watcher.wait_for(
        lambda: {"type": "presence_state", "presence": {bob.id: "offline"}} in watcher.others
    )
    assert await _presence_of(node, ann, bob.id) == "offline"

    phone, laptop = RealtimeClient(other.ws, bob.token), RealtimeClient(node.ws, bob.token)
    await phone.connect()
    await watcher.wait_for(
        lambda: {"type": "presence", "user_id": bob.id, "status": "online"} in watcher.others
    )
    await laptop.connect()
    assert await _presence_of(node, ann, bob.id) == "online"

    # One device away, the other still online: the user is online.
    await phone.send_frame({"type": "presence", "status": "away"})
    await laptop.send_frame({"type": "ping"})
    await laptop.wait_for(lambda: {"type": "pong"} in laptop.others)
    assert await _presence_of(node, ann, bob.id) == "online"

    await laptop.close()
    await watcher.wait_for(
        lambda: {"type": "presence", "user_id": bob.id, "status": "away"} in watcher.others
    )
    await phone.close()
    await watcher.wait_for(
        lambda: {"type": "presence", "user_id": bob.id, "status": "offline"} in watcher.others
    )
    assert await _presence_of(node, ann, bob.id) == "offline"
    await watcher.close()


async def test_presence_is_pushed_only_to_watchers(nodes: list[Node]) -> None:
    node = nodes[0]
    ann, bob, cat = await live_user(node), await live_user(node), await live_user(node)
    await channel_with(node, ann, bob, cat)
    watcher, bystander = RealtimeClient(node.ws, ann.token), RealtimeClient(node.ws, cat.token)
    await watcher.connect()
    await bystander.connect()
    await watcher.send_frame({"type": "presence_sub", "user_ids": [bob.id]})
    await watcher.wait_for(lambda: any(f["type"] == "presence_state" for f in watcher.others))
    bob_client = RealtimeClient(nodes[-1].ws, bob.token)
    await bob_client.connect()
    await watcher.wait_for(
        lambda: {"type": "presence", "user_id": bob.id, "status": "online"} in watcher.others
    )
    await bystander.send_frame({"type": "ping"})
    await bystander.wait_for(lambda: {"type": "pong"} in bystander.others)
    assert not [f for f in bystander.others if f["type"] == "presence"]
    for client in (watcher, bystander, bob_client):
        await client.close()


async def test_bad_presence_status_is_an_error_frame(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    client = RealtimeClient(nodes[0].ws, user.token)
    await client.connect()
    await client.send_frame({"type": "presence", "status": "invisible"})
    await client.wait_for(lambda: any(f.get("code") == "invalid_input" for f in client.others))
    assert client.close_code is None
    await client.close()


async def test_presence_query_bounds(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    response = await api(nodes[0], user, "GET", "/api/v1/presence", params={"user_ids": ","})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
