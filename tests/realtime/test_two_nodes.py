"""Two server processes on PostgreSQL + Redis: clients on both see one conversation."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.auth.factories import PASSWORD
from tests.realtime.helpers import LiveUser, api, channel_with, live_user
from tests.realtime.live import (
    connected,
    highest,
    round_trip,
    send_and_ack,
    send_many,
    seqs,
    wait_frame,
    wait_seq,
)
from tests.support.server import Node


@pytest.fixture
def two(nodes: list[Node]) -> tuple[Node, Node]:
    if len(nodes) < 2:
        pytest.skip("two nodes need PostgreSQL + Redis; this backend runs one node")
    return nodes[0], nodes[1]


async def another_session(node: Node, user: LiveUser) -> LiveUser:
    """The same user signed in again: a second session with its own tokens."""
    async with httpx.AsyncClient(base_url=node.http) as http:
        response = await http.post(
            "/api/v1/auth/login", json={"username": user.username, "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return LiveUser(user.id, user.username, tokens["access_token"], tokens["refresh_token"])


async def test_clients_on_both_nodes_talk_both_ways(two: tuple[Node, Node]) -> None:
    a, b = two
    ann, bob = await live_user(a), await live_user(b)
    channel_id = await channel_with(a, ann, bob)
    async with connected((a, ann), (b, bob)) as (on_a, on_b):
        # Both talk at once, each from their own node.
        acks_a, acks_b = await asyncio.gather(
            send_many(on_a, channel_id, [f"ann {i}" for i in range(15)]),
            send_many(on_b, channel_id, [f"bob {i}" for i in range(15)]),
        )
        last = max(ack["seq"] for ack in acks_a + acks_b)
        assert sorted(ack["seq"] for ack in acks_a + acks_b) == list(range(2, last + 1))
        for client in (on_a, on_b):
            await wait_seq(client, channel_id, last)
            assert seqs(client, channel_id) == list(range(2, last + 1))
        assert on_a.events[channel_id] == on_b.events[channel_id]
        by_seq = {e["seq"]: e["data"]["body"] for e in on_a.events[channel_id]}
        assert [by_seq[ack["seq"]] for ack in acks_a] == [f"ann {i}" for i in range(15)]
        assert [by_seq[ack["seq"]] for ack in acks_b] == [f"bob {i}" for i in range(15)]


async def test_logout_on_one_node_closes_the_socket_on_the_other(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    bob = await live_user(a)
    laptop = await another_session(a, bob)
    async with connected((b, bob), (a, bob), (b, laptop)) as (phone_b, phone_a, laptop_b):
        response = await api(a, bob, "POST", "/api/v1/auth/logout")
        assert response.status_code == 204, response.text
        for revoked in (phone_b, phone_a):
            assert await revoked.wait_closed(timeout=5) == 4401
        # The other session is untouched, on either node.
        await round_trip(laptop_b)
        assert laptop_b.close_code is None


async def test_logout_all_closes_every_session_everywhere(two: tuple[Node, Node]) -> None:
    a, b = two
    bob = await live_user(a)
    laptop = await another_session(b, bob)
    carl = await live_user(b)
    async with connected((a, bob), (b, laptop), (b, carl)) as (first, second, bystander):
        response = await api(b, laptop, "POST", "/api/v1/auth/logout-all")
        assert response.status_code == 204, response.text
        for revoked in (first, second):
            assert await revoked.wait_closed(timeout=5) == 4401
        await round_trip(bystander)


async def test_invite_on_one_node_adds_the_channel_on_the_other(two: tuple[Node, Node]) -> None:
    a, b = two
    ann, bob = await live_user(a), await live_user(a)
    channel_id = await channel_with(a, ann, kind="private")
    async with connected((a, ann), (b, bob)) as (owner, guest):
        await send_and_ack(owner, channel_id, "before bob")
        invited = await api(
            a, ann, "POST", f"/api/v1/channels/{channel_id}/members", json={"user_id": bob.id}
        )
        assert invited.status_code == 200, invited.text
        added = await wait_frame(guest, lambda f: f["type"] == "channel.added")
        assert added["channel"]["id"] == channel_id
        joined_seq = added["seq"]
        await wait_seq(guest, channel_id, joined_seq)
        joined = guest.events[channel_id][0]
        assert (joined["seq"], joined["event"]) == (joined_seq, "member.joined")
        assert joined["data"]["user_id"] == bob.id

        acks = await send_many(owner, channel_id, [f"welcome {i}" for i in range(5)])
        await wait_seq(guest, channel_id, highest(acks))
        assert seqs(guest, channel_id) == list(range(joined_seq, highest(acks) + 1))
        # And Bob talks back from his node.
        reply = await send_and_ack(guest, channel_id, "thanks")
        await wait_seq(owner, channel_id, reply["seq"])
        assert owner.events[channel_id][-1]["data"]["body"] == "thanks"
