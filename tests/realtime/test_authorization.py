"""Only members receive a channel's events; a removed member stops at their own removal.

Negative checks use a marker: after the events that must not arrive, something that must
arrive is sent on a channel the client shares; once it is there (plus a short grace
period), anything wrongly delivered before it would have arrived too.
"""

from __future__ import annotations

import asyncio

from tests.realtime.helpers import api, channel_with, live_user
from tests.realtime.live import (
    connected,
    highest,
    of_type,
    send_and_ack,
    send_many,
    seqs,
    wait_frame,
    wait_seq,
)
from tests.support.server import Node
from tests.support.wsclient import RealtimeClient

GRACE = 0.3  # extra time for a wrongly delivered event to show up, after the marker


async def marker(sender: RealtimeClient, receiver: RealtimeClient, channel_id: str) -> None:
    ack = await send_and_ack(sender, channel_id, "marker")
    await wait_seq(receiver, channel_id, ack["seq"])
    await asyncio.sleep(GRACE)


async def test_non_members_get_nothing_from_a_private_channel(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob, eve = await live_user(node), await live_user(node), await live_user(node)
    private = await channel_with(node, ann, bob, kind="private")
    shared = await channel_with(node, ann, eve)
    async with connected((node, ann), (other, bob), (other, eve), (node, eve)) as clients:
        sender, member, outsider, outsider_2 = clients
        acks = await send_many(sender, private, [f"secret {i}" for i in range(5)])
        typing = {"type": "typing", "channel_id": private}
        await sender.send_frame(typing)
        await wait_seq(member, private, highest(acks))
        await wait_frame(member, lambda f: f == {**typing, "user_id": ann.id})
        for client in (outsider, outsider_2):
            await marker(sender, client, shared)
            assert private not in client.events
            assert not of_type(client, "typing")
            assert not [f for f in client.others if f.get("channel_id") == private]


async def test_removed_member_gets_their_removal_and_nothing_after(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob, carl = await live_user(node), await live_user(node), await live_user(node)
    private = await channel_with(node, ann, bob, carl, kind="private")
    shared = await channel_with(node, ann, bob)
    pairs = [(node, ann), (other, bob), (node, bob), (other, carl)]
    async with connected(*pairs) as (owner, bob_1, bob_2, stays):
        before = await send_and_ack(owner, private, "before")
        removed = await api(node, ann, "DELETE", f"/api/v1/channels/{private}/members/{bob.id}")
        assert removed.status_code == 204, removed.text
        after = await send_many(owner, private, [f"after {i}" for i in range(5)])
        await owner.send_frame({"type": "typing", "channel_id": private})

        last = highest(after)
        await wait_seq(stays, private, last)
        assert seqs(stays, private) == list(range(before["seq"], last + 1))
        for device in (bob_1, bob_2):
            await marker(owner, device, shared)
            left = device.events[private][-1]
            assert left["event"] == "member.left"
            assert left["data"]["user_id"] == bob.id
            assert left["data"]["reason"] == "removed"
            assert seqs(device, private) == [before["seq"], left["seq"]]
            gone = await wait_frame(device, lambda f: f["type"] == "channel.removed")
            assert gone == {"type": "channel.removed", "channel_id": private, "seq": left["seq"]}
            assert not of_type(device, "typing")
            # Typing there is refused now: the connection left the channel.
            await device.send_frame({"type": "typing", "channel_id": private})
            error = await wait_frame(device, lambda f: f["type"] == "error")
            assert (error["code"], error["channel_id"]) == ("not_a_member", private)

    # Coming back with a resume from before the removal: refused, nothing replayed.
    async with connected((other, bob), resume={private: before["seq"] - 1}) as (back,):
        error = await wait_frame(back, lambda f: f["type"] == "error")
        assert (error["code"], error["channel_id"]) == ("not_a_member", private)
        assert private not in back.events


async def test_a_member_who_leaves_gets_channel_removed(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann), (other, bob), (node, bob)) as (owner, bob_1, bob_2):
        left = await api(other, bob, "POST", f"/api/v1/channels/{channel_id}/leave")
        assert left.status_code == 204, left.text
        await wait_seq(owner, channel_id, 2)
        leave_event = owner.events[channel_id][-1]
        assert leave_event["event"] == "member.left"
        assert leave_event["data"]["reason"] == "left"
        for device in (bob_1, bob_2):
            gone = await wait_frame(device, lambda f: f["type"] == "channel.removed")
            assert gone == {"type": "channel.removed", "channel_id": channel_id, "seq": 2}
            await wait_seq(device, channel_id, 2)
            assert seqs(device, channel_id) == [2]  # their own leaving, then nothing
        await send_many(owner, channel_id, ["you missed this", "and this"])
        await wait_seq(owner, channel_id, 4)
        # Joining again (public channel) brings the channel back, from the join on.
        joined = await api(other, bob, "POST", f"/api/v1/channels/{channel_id}/join")
        assert joined.status_code == 200, joined.text
        for device in (bob_1, bob_2):
            added = await wait_frame(device, lambda f: f["type"] == "channel.added")
            assert added["seq"] == 5
        ack = await send_and_ack(owner, channel_id, "welcome back")
        for device in (bob_1, bob_2):
            await wait_seq(device, channel_id, ack["seq"])
            assert seqs(device, channel_id) == [2, 5, ack["seq"]]
