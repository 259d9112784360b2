"""Reactions, pins, read markers, unread counts and mentions."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.factories import Account, account, assert_error
from tests.chat.factories import (
    API,
    accounts,
    create,
    done,
    get_message,
    listed,
    patch_channel,
    send,
)
from ultrachat.chat.schemas import MAX_UNREAD_COUNT

THUMBS = "👍"


async def react(
    client: httpx.AsyncClient, user: Account, message_id: str, emoji: str, add: bool = True
) -> httpx.Response:
    method = "PUT" if add else "DELETE"
    return await client.request(
        method, f"{API}/messages/{message_id}/reactions/{emoji}", headers=user.headers
    )


async def pin(
    client: httpx.AsyncClient, user: Account, message_id: str, add: bool = True
) -> httpx.Response:
    method = "POST" if add else "DELETE"
    return await client.request(method, f"{API}/messages/{message_id}/pin", headers=user.headers)


async def pins(client: httpx.AsyncClient, user: Account, channel_id: str) -> list[str]:
    response = await client.get(f"{API}/channels/{channel_id}/pins", headers=user.headers)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["messages"]]


async def mark_read(
    client: httpx.AsyncClient, user: Account, channel_id: str, seq: int
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/channels/{channel_id}/read", json={"seq": seq}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# Reactions


async def test_reactions_are_idempotent_and_aggregated(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    message = await send(client, ann, channel["id"], "react to me")
    mid = message["id"]

    done(await react(client, ann, mid, THUMBS))
    done(await react(client, ann, mid, THUMBS))  # again: no change
    done(await react(client, bob, mid, THUMBS))
    done(await react(client, bob, mid, "tada"))
    assert (await get_message(client, ann, mid))["reactions"] == [
        {"emoji": THUMBS, "count": 2, "user_ids": [ann.id, bob.id]},
        {"emoji": "tada", "count": 1, "user_ids": [bob.id]},
    ]

    done(await react(client, ann, mid, THUMBS, add=False))
    done(await react(client, ann, mid, THUMBS, add=False))  # again: no change
    done(await react(client, bob, mid, "tada", add=False))
    assert (await get_message(client, bob, mid))["reactions"] == [
        {"emoji": THUMBS, "count": 1, "user_ids": [bob.id]}
    ]


async def test_reactions_need_membership_and_a_live_message(client: httpx.AsyncClient) -> None:
    ann, stranger = await accounts(client, 2)
    channel = await create(client, ann, "public")
    message = await send(client, ann, channel["id"])
    private = await create(client, ann, "private")
    secret = await send(client, ann, private["id"])

    assert_error(await react(client, stranger, message["id"], THUMBS), 403, "forbidden")
    assert_error(await react(client, stranger, secret["id"], THUMBS), 404, "not_found")
    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))
    assert_error(await react(client, ann, message["id"], THUMBS), 404, "not_found")


@pytest.mark.parametrize("emoji", ["a b", "x" * 65, "%00"])
async def test_reaction_emoji_must_be_one_printable_token(
    client: httpx.AsyncClient, emoji: str
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    message = await send(client, ann, channel["id"])
    assert_error(await react(client, ann, message["id"], emoji), 422, "invalid_input")
    assert (await get_message(client, ann, message["id"]))["reactions"] == []


async def test_archived_channel_refuses_reactions_and_pins(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    message = await send(client, ann, channel["id"])
    done(await patch_channel(client, ann, channel["id"], archived=True), 200)

    assert_error(await react(client, ann, message["id"], THUMBS), 403, "forbidden")
    assert_error(await pin(client, ann, message["id"]), 403, "forbidden")


# Pins


async def test_pin_and_unpin(client: httpx.AsyncClient) -> None:
    ann, bob, stranger = await accounts(client, 3)
    channel = await create(client, ann, "public", bob)
    cid = channel["id"]
    first = await send(client, ann, cid, "first")
    second = await send(client, bob, cid, "second")

    done(await pin(client, bob, second["id"]))
    done(await pin(client, ann, first["id"]))
    done(await pin(client, ann, first["id"]))  # again: no change
    assert await pins(client, stranger, cid) == [second["id"], first["id"]]  # in pin order
    assert (await get_message(client, ann, first["id"]))["pinned"] is True
    assert_error(await pin(client, stranger, first["id"], add=False), 403, "forbidden")

    done(await pin(client, bob, first["id"], add=False))
    done(await pin(client, bob, first["id"], add=False))  # again: no change
    assert await pins(client, ann, cid) == [second["id"]]
    assert (await get_message(client, ann, first["id"]))["pinned"] is False


async def test_deleting_a_message_unpins_it(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    message = await send(client, ann, channel["id"])
    done(await pin(client, ann, message["id"]))

    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))
    assert await pins(client, ann, channel["id"]) == []
    assert (await get_message(client, ann, message["id"]))["pinned"] is False


# Read markers, unread counts, mentions


async def test_read_marker_lowers_the_unread_count(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    cid = channel["id"]
    sent = [await send(client, ann, cid, f"m{i}") for i in range(3)]
    assert (await listed(client, bob, cid))["unread_count"] == 3

    assert await mark_read(client, bob, cid, sent[0]["seq"]) == {
        "channel_id": cid,
        "last_read_seq": sent[0]["seq"],
    }
    assert (await listed(client, bob, cid))["unread_count"] == 2
    # A marker never moves back, nor past the channel's last seq.
    assert (await mark_read(client, bob, cid, 0))["last_read_seq"] == sent[0]["seq"]
    assert (await mark_read(client, bob, cid, 10**9))["last_read_seq"] == sent[-1]["seq"]
    bob_view = await listed(client, bob, cid)
    assert (bob_view["unread_count"], bob_view["last_read_seq"]) == (0, sent[-1]["seq"])


async def test_the_unread_count_stops_at_its_cap(app: FastAPI, client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    cid = (await create(client, ann, "public", bob))["id"]
    # Sent through the service at once (one group commit), not 105 HTTP round trips.
    sent = await asyncio.gather(
        *(
            app.state.runtime.messages.send(ann.id, cid, f"m{i}", f"cap-{i}")
            for i in range(MAX_UNREAD_COUNT + 5)
        )
    )
    seqs = sorted(message["seq"] for message, _ in sent)
    assert (await listed(client, bob, cid))["unread_count"] == MAX_UNREAD_COUNT  # or more
    await mark_read(client, bob, cid, seqs[9])
    assert (await listed(client, bob, cid))["unread_count"] == MAX_UNREAD_COUNT - 5  # exact


async def test_deleted_messages_are_not_unread(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    message = await send(client, ann, channel["id"])
    await send(client, ann, channel["id"])
    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))
    assert (await listed(client, bob, channel["id"]))["unread_count"] == 1


async def test_read_marker_needs_membership_and_a_valid_seq(client: httpx.AsyncClient) -> None:
    ann, stranger = await accounts(client, 2)
    public = await create(client, ann, "public")
    private = await create(client, ann, "private")

    outside = await client.post(
        f"{API}/channels/{public['id']}/read", json={"seq": 1}, headers=stranger.headers
    )
    assert_error(outside, 403, "forbidden")
    hidden = await client.post(
        f"{API}/channels/{private['id']}/read", json={"seq": 1}, headers=stranger.headers
    )
    assert_error(hidden, 404, "not_found")
    for bad in (-1, "3", None):
        response = await client.post(
            f"{API}/channels/{public['id']}/read", json={"seq": bad}, headers=ann.headers
        )
        assert_error(response, 422, "invalid_input")


async def test_mentions_are_stored_and_counted_past_the_marker(
    client: httpx.AsyncClient,
) -> None:
    ann, bob, cat, outsider = await accounts(client, 4)
    channel = await create(client, ann, "public", bob, cat)
    cid = channel["id"]

    hello = await send(
        client,
        ann,
        cid,
        f"hi @{bob.username} and @{cat.username.upper()}, not @{outsider.username}"
        f" nor @nobody_at_all nor mail@{bob.username}",
    )
    assert hello["mentions"] == sorted([bob.id, cat.id])  # members only, by user id
    assert (await listed(client, bob, cid))["mention_count"] == 1
    assert (await listed(client, ann, cid))["mention_count"] == 0

    await send(client, ann, cid, f"@{bob.username} again.")
    await send(client, ann, cid, "no mention")
    assert (await listed(client, bob, cid))["mention_count"] == 2
    await mark_read(client, bob, cid, hello["seq"])
    bob_view = await listed(client, bob, cid)
    assert (bob_view["mention_count"], bob_view["unread_count"]) == (1, 2)
    # An edit that drops a mention drops it from the count.
    edited = await client.patch(
        f"{API}/messages/{hello['id']}", json={"body": "hi all"}, headers=ann.headers
    )
    assert edited.json()["mentions"] == []
    assert (await listed(client, cat, cid))["mention_count"] == 0
