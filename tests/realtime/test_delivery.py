"""Sending over the WebSocket: acks after commit, error frames, typing, idempotency, fan-out."""

from __future__ import annotations

import asyncio

import orjson

from tests.realtime.helpers import channel_with, live_user
from tests.realtime.live import (
    connected,
    errors_for,
    history,
    of_type,
    round_trip,
    send_and_ack,
    seqs,
    wait_frame,
    wait_seq,
)
from tests.support.server import Node


async def test_ack_comes_after_commit_with_the_stored_seq(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann), (other, bob)) as (sender, receiver):
        ack = await send_and_ack(sender, channel_id, "durable")
        # The ack promises a commit: the message is readable at once, from any node.
        stored = await history(other, bob, channel_id)
        assert [(m["id"], m["seq"], m["body"]) for m in stored] == [
            (ack["message_id"], ack["seq"], "durable")
        ]
        assert ack["seq"] == 2  # seq 1 is channel.created
        await wait_seq(receiver, channel_id, ack["seq"])
        event = receiver.events[channel_id][-1]
        assert event["event"] == "message.created"
        assert event["data"]["id"] == ack["message_id"]
        assert event["seq"] == ack["seq"]


async def test_refused_send_is_an_error_frame_for_that_client_msg_id(nodes: list[Node]) -> None:
    node = nodes[0]
    ann, eve = await live_user(node), await live_user(node)
    private = await channel_with(node, ann, kind="private")
    async with connected((node, eve)) as (client,):
        await client.send_message(private, "let me in", client_msg_id="intruder-1")
        await client.send_message("no-such-channel", "hello?", client_msg_id="nowhere-1")
        for client_msg_id in ("intruder-1", "nowhere-1"):
            await client.wait_for(lambda i=client_msg_id: bool(errors_for(client, i)))
            (error,) = errors_for(client, client_msg_id)
            assert error["code"] in ("forbidden", "not_found"), error
            assert error["message"]
        assert not client.acks
        await round_trip(client)
    assert await history(node, ann, private) == []


async def test_invalid_frames_get_error_frames_and_the_connection_stays(
    nodes: list[Node],
) -> None:
    node = nodes[0]
    ann = await live_user(node)
    channel_id = await channel_with(node, ann)
    async with connected((node, ann)) as (client,):
        assert client.ws is not None
        cases: list[tuple[str | bytes, str]] = [
            ("this is not json", "invalid_frame"),
            ("[1, 2, 3]", "invalid_frame"),
            (b"\x00binary", "invalid_frame"),
            ('{"type": "shout"}', "unknown_type"),
            ('{"no_type": true}', "unknown_type"),
            (
                orjson.dumps({"type": "send", "channel_id": channel_id, "body": "x"}).decode(),
                "invalid_input",
            ),
            (
                orjson.dumps(
                    {
                        "type": "send",
                        "channel_id": channel_id,
                        "body": "",
                        "client_msg_id": "empty-body",
                    }
                ).decode(),
                "invalid_input",
            ),
            (
                orjson.dumps(
                    {
                        "type": "send",
                        "channel_id": channel_id,
                        "body": "y" * 4001,
                        "client_msg_id": "too-long",
                    }
                ).decode(),
                "invalid_input",
            ),
        ]
        for raw, code in cases:
            before = len(of_type(client, "error"))
            await client.ws.send(raw)
            await client.wait_for(lambda n=before: len(of_type(client, "error")) > n)
            error = of_type(client, "error")[-1]
            assert error["code"] == code, (raw, error)
            assert error["message"]
            await round_trip(client)  # still open, still answering
        missing = [e for e in of_type(client, "error") if e["code"] == "invalid_input"]
        assert missing[0]["client_msg_id"] is None
        assert {e.get("client_msg_id") for e in missing[1:]} == {"empty-body", "too-long"}
        assert not client.acks
    assert await history(node, ann, channel_id) == []


async def test_ping_gets_pong(nodes: list[Node]) -> None:
    user = await live_user(nodes[0])
    async with connected((nodes[0], user)) as (client,):
        for _ in range(3):
            await round_trip(client)
        assert len(of_type(client, "pong")) == 3
        assert of_type(client, "pong")[0] == {"type": "pong"}


async def test_typing_is_relayed_to_the_others_only(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob, eve = await live_user(node), await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    elsewhere = await channel_with(node, eve)
    async with connected((node, ann), (node, ann), (other, bob), (other, eve)) as clients:
        ann_1, ann_2, bob_c, eve_c = clients
        await ann_1.send_frame({"type": "typing", "channel_id": channel_id})
        relayed = await wait_frame(bob_c, lambda f: f["type"] == "typing")
        assert relayed == {"type": "typing", "channel_id": channel_id, "user_id": ann.id}
        # Bob answers; by the time Ann's devices see that, an echo of hers would have come.
        await bob_c.send_frame({"type": "typing", "channel_id": channel_id})
        for device in (ann_1, ann_2):
            await wait_frame(device, lambda f: f["type"] == "typing")
            assert of_type(device, "typing") == [
                {"type": "typing", "channel_id": channel_id, "user_id": bob.id}
            ]
        assert of_type(bob_c, "typing") == [relayed]
        # Typing is ephemeral: no seq, nothing stored, never an event.
        assert seqs(bob_c, channel_id) == []

        await eve_c.send_frame({"type": "typing", "channel_id": channel_id})
        error = await wait_frame(eve_c, lambda f: f["type"] == "error")
        assert error["code"] == "not_a_member"
        assert error["channel_id"] == channel_id
        await eve_c.send_frame({"type": "typing", "channel_id": elsewhere})  # hers: fine
        await round_trip(eve_c)
        assert len(of_type(eve_c, "error")) == 1
        # Nobody heard Eve type in Ann's channel.
        await round_trip(bob_c)
        assert of_type(bob_c, "typing") == [relayed]


async def test_send_retry_with_the_same_client_msg_id_is_one_message(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann), (other, ann), (other, bob)) as (first, second, receiver):
        # Racing retries on one socket, then on another device of the same user.
        await asyncio.gather(
            *(first.send_message(channel_id, "once", client_msg_id="retry-me") for _ in range(3))
        )
        await first.wait_for(lambda: len(first.ack_log) == 3)
        await second.send_message(channel_id, "once", client_msg_id="retry-me")
        await second.wait_for(lambda: len(second.ack_log) == 1)
        acks = first.ack_log + second.ack_log
        assert {(a["client_msg_id"], a["message_id"], a["seq"]) for a in acks} == {
            ("retry-me", acks[0]["message_id"], 2)
        }
        stored = await history(node, ann, channel_id)
        assert [(m["id"], m["body"]) for m in stored] == [(acks[0]["message_id"], "once")]
        # Exactly one event went out: the next message is seq 3 and nothing sits between.
        follow = await send_and_ack(first, channel_id, "next")
        assert follow["seq"] == 3
        await wait_seq(receiver, channel_id, 3)
        created = [e for e in receiver.events[channel_id] if e["event"] == "message.created"]
        assert [(e["seq"], e["data"]["body"]) for e in created] == [(2, "once"), (3, "next")]


async def test_every_connection_of_a_user_gets_the_events(nodes: list[Node]) -> None:
    node, other = nodes[0], nodes[-1]
    ann, bob = await live_user(node), await live_user(node)
    channel_id = await channel_with(node, ann, bob)
    async with connected((node, ann), (node, bob), (other, bob)) as (sender, phone, laptop):
        acks = [await send_and_ack(sender, channel_id, f"m{i}") for i in range(5)]
        last = acks[-1]["seq"]
        for device in (phone, laptop):
            await wait_seq(device, channel_id, last)
            assert seqs(device, channel_id) == list(range(2, last + 1))
        assert phone.events[channel_id] == laptop.events[channel_id]

        # User-targeted events reach every device too: a new channel Bob is added to.
        second = await channel_with(node, ann, bob)
        for device in (phone, laptop):
            added = await wait_frame(device, lambda f: f["type"] == "channel.added")
            assert added["channel"]["id"] == second
        ack = await send_and_ack(sender, second, "in the new one")
        for device in (phone, laptop):
            await wait_seq(device, second, ack["seq"])
            assert seqs(device, second) == [1, 2]  # channel.created, then the message
