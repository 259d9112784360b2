"""Idempotent sends: one (channel, sender, client_msg_id), one message, retries racing or not."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from tests.auth.factories import account, assert_error
from tests.chat.factories import (
    accounts,
    create,
    done,
    history,
    kinds,
    patch_channel,
    post,
    remove,
    send,
)


async def test_a_retry_returns_the_original_and_creates_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    original = await send(client, ann, channel["id"], "once", client_msg_id="c-1")

    retry = await post(client, ann, channel["id"], "once", client_msg_id="c-1")
    assert retry.status_code == 200, retry.text
    assert retry.json() == original
    # Even with another body: the first send wins.
    other_body = await post(client, ann, channel["id"], "changed my mind", client_msg_id="c-1")
    assert other_body.status_code == 200, other_body.text
    assert other_body.json() == original
    assert [m["id"] for m in await history(client, ann, channel["id"])] == [original["id"]]
    assert await kinds(app, channel["id"]) == ["channel.created", "message.created"]


async def test_a_retry_returns_the_message_as_it_is_now(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    original = await send(client, ann, channel["id"], "draft", client_msg_id="c-1")
    await client.patch(
        f"/api/v1/messages/{original['id']}", json={"body": "final"}, headers=ann.headers
    )

    retry = await post(client, ann, channel["id"], "draft", client_msg_id="c-1")
    assert retry.status_code == 200, retry.text
    assert (retry.json()["id"], retry.json()["body"]) == (original["id"], "final")


async def test_client_ids_are_scoped_to_sender_and_channel(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    here = await create(client, ann, "public", bob)
    there = await create(client, ann, "public")

    by_ann = await send(client, ann, here["id"], "ann", client_msg_id="same")
    by_bob = await send(client, bob, here["id"], "bob", client_msg_id="same")
    elsewhere = await send(client, ann, there["id"], "there", client_msg_id="same")
    assert len({by_ann["id"], by_bob["id"], elsewhere["id"]}) == 3
    assert [m["user_id"] for m in await history(client, ann, here["id"])] == [ann.id, bob.id]
    # Messages without a client id are never deduplicated.
    await send(client, ann, here["id"], "ann")
    await send(client, ann, here["id"], "ann")
    assert len(await history(client, ann, here["id"])) == 4


async def test_twenty_concurrent_retries_store_one_message(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")

    responses = await asyncio.gather(
        *[post(client, ann, channel["id"], "racing", client_msg_id="race") for _ in range(20)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.json()["seq"] for r in responses}) == 1
    [stored] = await history(client, ann, channel["id"])
    assert stored["id"] == responses[0].json()["id"]
    # The retries that lost the race gave their seq back: no gap, no stray event.
    assert await kinds(app, channel["id"]) == ["channel.created", "message.created"]
    assert (await send(client, ann, channel["id"], "next"))["seq"] == 3


async def test_a_retry_after_losing_access_is_refused(client: httpx.AsyncClient) -> None:
    owner, ann = await accounts(client, 2)
    channel = await create(client, owner, "private", ann)
    await send(client, ann, channel["id"], "before", client_msg_id="c-1")
    done(await remove(client, owner, channel["id"], ann))

    retry = await post(client, ann, channel["id"], "before", client_msg_id="c-1")
    assert_error(retry, 404, "not_found")


async def test_a_retry_in_an_archived_channel_still_returns_the_original(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    original = await send(client, ann, channel["id"], "just in time", client_msg_id="c-1")
    done(await patch_channel(client, ann, channel["id"], archived=True), 200)

    retry = await post(client, ann, channel["id"], "just in time", client_msg_id="c-1")
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == original["id"]
    assert_error(
        await post(client, ann, channel["id"], "new", client_msg_id="c-2"), 403, "forbidden"
    )
