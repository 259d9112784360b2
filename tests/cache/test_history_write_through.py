"""History heads written through on send, on one app per backend: after a send the newest page
is a cache hit, and it is exactly what a fresh database load shows, field by field; events
that change messages still reach it.

A "fresh load" is a bounded page (``before_seq``), which is never cached and is presented by
the same code as the head.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.cache.test_hot_paths import Counts
from tests.chat.factories import (
    API,
    accounts,
    create,
    done,
    get_channel,
    history,
    join,
    leave,
    patch_channel,
    send,
    set_role,
)
from ultrachat.cache.config import CHANNEL_HISTORY_HEAD
from ultrachat.cache.local import MISSING
from ultrachat.chat import repository
from ultrachat.chat.schemas import MAX_SEQ

Page = list[dict[str, Any]]


async def fresh(client: httpx.AsyncClient, user: Any, channel_id: str, limit: int = 50) -> Page:
    return await history(client, user, channel_id, before_seq=MAX_SEQ, limit=limit)


def assert_same_page(cached: Page, loaded: Page) -> None:
    assert [m["seq"] for m in cached] == [m["seq"] for m in loaded]
    for ours, theirs in zip(cached, loaded, strict=True):
        assert ours.keys() == theirs.keys()
        for field in theirs:
            assert ours[field] == theirs[field], (ours["seq"], field)


def cached_head(app: FastAPI, channel_id: str) -> Any:
    return app.state.runtime.cache.local.get(CHANNEL_HISTORY_HEAD, channel_id)


async def test_sends_are_appended_to_the_head_and_read_as_hits(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann, bob = await accounts(client, 2)
    channel_id = (await create(client, ann, "public", bob))["id"]
    root = await send(client, ann, channel_id, "root")
    # Older messages with reactions and a pin, so the head holds more than send's fields.
    done(
        await client.put(f"{API}/messages/{root['id']}/reactions/%F0%9F%91%8D", headers=bob.headers)
    )
    done(await client.post(f"{API}/messages/{root['id']}/pin", headers=ann.headers))
    await history(client, bob, channel_id)  # loads the head
    counts = Counts(CHANNEL_HISTORY_HEAD)
    sent = [
        await send(client, bob, channel_id, "plain"),
        await send(client, bob, channel_id, f"hi @{ann.username}"),  # a mention
        await send(client, ann, channel_id, "in the thread", thread_id=root["id"]),
        await send(client, bob, channel_id, "deeper", client_msg_id="c-1"),
    ]
    page = await history(client, ann, channel_id)
    assert counts.delta == (1, 0)
    assert [m["id"] for m in page[-4:]] == [m["id"] for m in sent]
    assert page[2]["mentions"] == [ann.id] and page[3]["thread_id"] == root["id"]
    assert_same_page(page, await fresh(client, ann, channel_id))
    # The head is current through the channel's last event.
    channel = await get_channel(client, ann, channel_id)
    assert cached_head(app, channel_id)["through"] == channel["last_seq"]


async def test_the_head_keeps_its_page_size(client: httpx.AsyncClient) -> None:
    (ann,) = await accounts(client, 1)
    channel_id = (await create(client, ann, "public"))["id"]
    for i in range(6):
        await send(client, ann, channel_id, f"m{i}")
    await history(client, ann, channel_id, limit=5)
    counts = Counts(CHANNEL_HISTORY_HEAD)
    for i in range(6, 9):
        await send(client, ann, channel_id, f"m{i}")
    page = await history(client, ann, channel_id, limit=5)
    assert [m["body"] for m in page] == [f"m{i}" for i in range(4, 9)]
    assert counts.delta == (1, 0)
    assert_same_page(page, await fresh(client, ann, channel_id, limit=5))
    await history(client, ann, channel_id, limit=6)  # longer than the head: a load
    assert counts.delta == (1, 1)


async def test_membership_and_channel_events_keep_the_head(client: httpx.AsyncClient) -> None:
    ann, bob, cat = await accounts(client, 3)
    channel_id = (await create(client, ann, "public", bob))["id"]
    await send(client, ann, channel_id, "first")
    await history(client, ann, channel_id)
    counts = Counts(CHANNEL_HISTORY_HEAD)
    await join(client, cat, channel_id)
    await send(client, cat, channel_id, "joined")
    done(await patch_channel(client, ann, channel_id, topic="news"), 200)
    await send(client, bob, channel_id, "after the topic")
    done(await set_role(client, ann, channel_id, bob, "admin"))
    done(await leave(client, cat, channel_id))
    await send(client, bob, channel_id, "after the leave")
    page = await history(client, ann, channel_id)
    assert counts.delta == (1, 0)  # each of those events moved the head on, none dropped it
    assert [m["body"] for m in page] == ["first", "joined", "after the topic", "after the leave"]
    assert_same_page(page, await fresh(client, ann, channel_id))


async def test_changes_to_messages_reach_a_written_through_head(
    client: httpx.AsyncClient,
) -> None:
    ann, bob = await accounts(client, 2)
    channel_id = (await create(client, ann, "public", bob))["id"]
    await history(client, bob, channel_id)
    first = await send(client, ann, channel_id, "one")
    second = await send(client, bob, channel_id, "two")
    await history(client, bob, channel_id)  # written through: a hit
    steps = [
        ("PATCH", f"{API}/messages/{first['id']}", {"body": "uno"}, 200),
        ("PUT", f"{API}/messages/{second['id']}/reactions/%F0%9F%91%8D", None, 204),
        ("POST", f"{API}/messages/{second['id']}/pin", None, 204),
        ("DELETE", f"{API}/messages/{first['id']}", None, 204),
        ("DELETE", f"{API}/messages/{second['id']}/reactions/%F0%9F%91%8D", None, 204),
        ("DELETE", f"{API}/messages/{second['id']}/pin", None, 204),
    ]
    for method, path, body, status in steps:
        response = await client.request(method, path, json=body, headers=ann.headers)
        assert response.status_code == status, response.text
        await send(client, bob, channel_id, f"after {method} {path}")  # on the new head
        page = await history(client, bob, channel_id)
        assert_same_page(page, await fresh(client, bob, channel_id))
    page = await history(client, bob, channel_id)
    assert page[0]["deleted"] is True and page[0]["body"] is None
    assert page[1]["reactions"] == [] and page[1]["pinned"] is False


async def test_reads_racing_sends_end_equal_to_the_database(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel_id = (await create(client, ann, "public", bob))["id"]
    await history(client, ann, channel_id)

    async def sends(user: Any, count: int) -> None:
        for i in range(count):
            await send(client, user, channel_id, f"{user.username} {i}")

    async def reads(count: int) -> None:
        for _ in range(count):
            await history(client, bob, channel_id)
            await asyncio.sleep(0)

    await asyncio.gather(sends(ann, 30), sends(bob, 30), reads(60), reads(60))
    settled = await fresh(client, ann, channel_id)
    assert len(settled) == 50
    assert_same_page(await history(client, ann, channel_id), settled)
    counts = Counts(CHANNEL_HISTORY_HEAD)
    assert_same_page(await history(client, bob, channel_id), settled)
    assert counts.delta == (1, 0)


async def test_without_a_cached_head_a_send_caches_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    (ann,) = await accounts(client, 1)
    channel_id = (await create(client, ann, "public"))["id"]
    await send(client, ann, channel_id, "nobody read the channel yet")
    assert cached_head(app, channel_id) is MISSING


async def test_a_head_read_while_an_event_commits_has_no_version(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ann,) = await accounts(client, 1)
    channel_id = (await create(client, ann, "public"))["id"]
    await send(client, ann, channel_id, "before")
    page_of = repository.message_page

    async def interleaved(*args: Any) -> Any:
        rows = await page_of(*args)
        await send(client, ann, channel_id, "while the page was read")  # committed meanwhile
        return rows

    monkeypatch.setattr(repository, "message_page", interleaved)
    messages = app.state.runtime.messages
    page, through = await messages._newest_page(channel_id, 50)
    assert [m["body"] for m in page] == ["before"] and through is None  # cannot tell
    # Through the cache: the send's write-through also fenced the load, which is not stored.
    await history(client, ann, channel_id)
    assert cached_head(app, channel_id) is MISSING
    monkeypatch.undo()
    page, through = await messages._newest_page(channel_id, 50)
    assert through == page[-1]["seq"] == (await get_channel(client, ann, channel_id))["last_seq"]
