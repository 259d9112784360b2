"""Resume: exactly the missed events, in order, once; live from there. Reset when too far."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from pathlib import Path

import orjson
import pytest
import websockets

from tests.realtime.helpers import api, channel_with, live_user
from tests.realtime.live import (
    channel_head,
    connected,
    highest,
    metric,
    post_message,
    round_trip,
    send_and_ack,
    send_many,
    seqs,
    wait_frame,
    wait_seq,
)
from tests.support.backends import Backend
from tests.support.server import Node, cluster
from tests.support.wsclient import RealtimeClient

log = logging.getLogger(__name__)
RECEIVERS = 6
MESSAGES = 150


@pytest.mark.parametrize("how", ["drop", "close"])
async def test_resume_replays_exactly_what_was_missed(nodes: list[Node], how: str) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann), (other, bob)) as (sender, receiver):
        first = await send_many(sender, channel_id, ["a", "b", "c"])
        await wait_seq(receiver, channel_id, highest(first))
        await (receiver.drop() if how == "drop" else receiver.close())
        assert receiver.close_code is not None

        missed = await send_many(sender, channel_id, [f"missed {i}" for i in range(7)])
        await receiver.resume()
        await wait_seq(receiver, channel_id, highest(missed))
        later = await send_and_ack(sender, channel_id, "live again")
        for client in (receiver, sender):
            await wait_seq(client, channel_id, later["seq"])

        assert seqs(receiver, channel_id) == list(range(2, later["seq"] + 1))
        assert receiver.events[channel_id] == sender.events[channel_id]
        sent = {ack["message_id"]: ack["seq"] for ack in [*first, *missed, later]}
        got = {e["data"]["id"]: e["seq"] for e in receiver.events[channel_id]}
        assert got == sent


async def test_channel_left_out_of_resume_starts_live(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    resumed, skipped = await channel_with(node, ann, bob), await channel_with(node, ann, bob)
    for channel_id in (resumed, skipped):
        await post_message(node, ann, channel_id, "while away")
    async with connected((node, ann)) as (sender,):
        client = RealtimeClient(other.ws, bob.token)
        try:
            await client.connect(resume={resumed: 1})
            await wait_seq(client, resumed, 2)
            now = await send_and_ack(sender, skipped, "after connecting")
            await wait_seq(client, skipped, now["seq"])
            assert seqs(client, resumed) == [2]
            assert seqs(client, skipped) == [now["seq"]]  # nothing replayed, live only
            assert now["seq"] == await channel_head(node, ann, skipped)
        finally:
            await client.close()


async def test_a_member_who_left_and_came_back_resumes_through_the_leave(
    nodes: list[Node],
) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)  # seq 1 created (bob a member)
    await post_message(node, ann, channel_id, "before")
    left = await api(node, bob, "POST", f"/api/v1/channels/{channel_id}/leave")
    assert left.status_code == 204, left.text
    await post_message(node, ann, channel_id, "while bob was away")
    joined = await api(node, bob, "POST", f"/api/v1/channels/{channel_id}/join")
    assert joined.status_code == 200, joined.text
    last = await post_message(node, ann, channel_id, "after he came back")
    async with connected((node, ann)) as (sender,):
        client = RealtimeClient(other.ws, bob.token)
        try:
            await client.connect(resume={channel_id: 0})
            await wait_seq(client, channel_id, last["seq"])
            live = await send_and_ack(sender, channel_id, "live")
            await wait_seq(client, channel_id, live["seq"])
            # The old leave did not end delivery: everything, then live.
            assert seqs(client, channel_id) == list(range(1, live["seq"] + 1))
        finally:
            await client.close()


async def test_resume_entry_for_a_foreign_channel_is_refused(nodes: list[Node]) -> None:
    node = nodes[0]
    ann, eve = await live_user(node), await live_user(node)
    private = await channel_with(node, ann, kind="private")
    own = await channel_with(node, eve)
    for i in range(3):
        await post_message(node, ann, private, f"secret {i}")
    async with (
        connected((node, ann)) as (sender,),
        connected((node, eve), resume={private: 0, own: 0}) as (client,),
    ):
        error = await wait_frame(client, lambda f: f["type"] == "error")
        assert error["code"] == "not_a_member"
        assert error["channel_id"] == private
        await wait_seq(client, own, 1)  # her own channel is replayed as asked
        await send_and_ack(sender, private, "still secret")
        await round_trip(client)
        await round_trip(sender)
        assert private not in client.events
        assert [e["code"] for e in client.others if e["type"] == "error"] == ["not_a_member"]


async def test_too_far_behind_gets_a_reset_then_live(backend: Backend, tmp_path: Path) -> None:
    async with cluster(backend, tmp_path, 1, ws_max_behind=20) as (node,):
        ann, bob = await live_user(node), await live_user(node)
        channel_id = await channel_with(node, ann, bob)
        async with connected((node, ann)) as (sender,):
            await send_many(sender, channel_id, [f"m{i}" for i in range(30)])
            head = await channel_head(node, ann, channel_id)
            assert head == 31
            await wait_seq(sender, channel_id, head)  # the node has delivered them all
            async with connected((node, bob), resume={channel_id: 0}) as (client,):
                reset = await wait_frame(client, lambda f: f["type"] == "reset")
                assert reset == {"type": "reset", "channel_id": channel_id, "seq": head}
                assert seqs(client, channel_id) == []  # no replay at all
                acks = await send_many(sender, channel_id, ["after", "the reset"])
                await wait_seq(client, channel_id, highest(acks))
                assert seqs(client, channel_id) == [head + 1, head + 2]
            # Within the limit, the same cluster replays instead.
            async with connected((node, bob), resume={channel_id: head - 5}) as (client,):
                await wait_seq(client, channel_id, head + 2)
                assert seqs(client, channel_id) == list(range(head - 4, head + 3))
                assert not [f for f in client.others if f["type"] == "reset"]


async def test_events_committed_during_a_replay_arrive_exactly_once(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob, carl = await live_user(node), await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob, carl)
    async with connected((node, ann), (other, carl)) as (sender, second_sender):
        backlog = await send_many(sender, channel_id, [f"old {i}" for i in range(300)], batch=8)
        client = RealtimeClient(other.ws, bob.token)
        try:
            # Connect with a long replay ahead while two senders, on both nodes, commit more.
            during = await asyncio.gather(
                send_many(sender, channel_id, [f"new a{i}" for i in range(20)], batch=2),
                send_many(second_sender, channel_id, [f"new b{i}" for i in range(20)], batch=2),
                client.connect(resume={channel_id: 1}),
            )
            last = max(ack["seq"] for acks in during[:2] for ack in acks)
            assert last == highest(backlog) + 40
            await wait_seq(client, channel_id, last, timeout=20)
            assert seqs(client, channel_id) == list(range(2, last + 1))
        finally:
            await client.close()


async def test_events_committed_while_a_replay_is_held_up_arrive_once(tight_node: Node) -> None:
    """The replay is paced by the client's queue (10 frames here): a client that pauses
    reading holds its replay up midway, for certain, while new events are committed."""
    node = tight_node
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann)) as (sender,):
        # More than loopback socket buffers hold: ~16 KB frames (4-byte characters). Every
        # fifth is shorter: frames of more than 8 KB waiting in the socket's buffer must keep
        # their own lengths (picows once framed them with a header it went on to reuse).
        bodies = ["\U0001f4da" * (3998 if i % 5 == 4 else 4000) for i in range(400)]
        backlog = await send_many(sender, channel_id, bodies)
        replayed = await metric(node, "ultrachat_ws_replayed_events_total")
        reader = await websockets.connect(node.ws, max_queue=1, compression=None)
        try:
            hello = {"type": "hello", "token": bob.token, "resume": {channel_id: 1}}
            await reader.send(orjson.dumps(hello).decode())
            assert orjson.loads(await asyncio.wait_for(reader.recv(), 5))["type"] == "ready"
            # The reader reads nothing more for now: its socket fills, the replay waits.
            during = await send_many(sender, channel_id, [f"during {i}" for i in range(20)])
            held_up = await metric(node, "ultrachat_ws_replayed_events_total") - replayed
            assert held_up < len(backlog), "the replay was not held up; send bigger frames"
            last = highest(during)
            got: list[int] = []

            async def read_all() -> None:
                while not got or got[-1] < last:
                    frame = orjson.loads(await reader.recv())
                    if frame["type"] == "event":
                        got.append(frame["seq"])

            await asyncio.wait_for(read_all(), 20)
            assert got == list(range(2, last + 1))
        finally:
            await reader.close()


async def test_resume_under_chaos(nodes: list[Node]) -> None:
    """Receivers vanish at random points and come back (to any node) while messages flow,
    sometimes in the middle of their own replay: 0 lost, 0 duplicated, in order."""
    seed = int(os.environ.get("ULTRACHAT_TEST_CHAOS_SEED") or random.randrange(2**32))
    log.warning("resume chaos seed: %d (ULTRACHAT_TEST_CHAOS_SEED=%d reruns it)", seed, seed)
    rng = random.Random(seed)
    node = nodes[0]
    ann = await live_user(node)
    users = [await live_user(node) for _ in range(RECEIVERS)]
    channel_id = await channel_with(node, ann, *users)
    receivers = [RealtimeClient(nodes[i % len(nodes)].ws, u.token) for i, u in enumerate(users)]
    last = MESSAGES + 1
    outages: list[list[str]] = [[] for _ in range(RECEIVERS)]

    async def chaos(index: int, client: RealtimeClient, chance: random.Random) -> None:
        # Vanish right after seeing each of a few random seqs, for a random short while.
        for point in sorted(chance.sample(range(2, last), chance.randint(3, 5))):
            await wait_seq(client, channel_id, point, timeout=15)
            how = chance.choice(["drop", "close"])
            await (client.drop() if how == "drop" else client.close())
            outages[index].append(f"{how}@{client.last_seq(channel_id)}")
            await asyncio.sleep(chance.uniform(0.0, 0.15))
            client.url = nodes[chance.randrange(len(nodes))].ws  # a load balancer's choice
            await client.connect(resume={channel_id: client.last_seq(channel_id)})

    async with connected((node, ann)) as (sender,):
        try:
            for client in receivers:
                await client.connect()
            tasks = [
                asyncio.create_task(chaos(i, c, random.Random(rng.random())))
                for i, c in enumerate(receivers)
            ]
            try:
                acks = await send_many(
                    sender, channel_id, [f"m{i}" for i in range(MESSAGES)], batch=5
                )
                assert highest(acks) == last
            finally:
                await asyncio.gather(*tasks)
            for index, client in enumerate(receivers):
                await wait_seq(client, channel_id, last, timeout=15)
                got = seqs(client, channel_id)
                context = f"seed {seed}, receiver {index}, outages {outages[index]}: {got}"
                assert len(got) == len(set(got)), f"duplicated; {context}"
                assert got == sorted(got), f"out of order; {context}"
                assert [s for s in got if s > 1] == list(range(2, last + 1)), f"lost; {context}"
        finally:
            await asyncio.gather(*(c.close() for c in receivers), return_exceptions=True)
