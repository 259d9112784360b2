"""Cache invalidation across two real server processes sharing PostgreSQL and Redis.

Each test warms node B's cache first (so B would answer from it), writes on node A, and
reads on B straight after A's response: B must already have forgotten what the write
changed. (On SQLite there is one process and no Redis: these tests skip.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.realtime.helpers import LiveUser, api, channel_with, live_user
from tests.support.backends import Backend
from tests.support.server import Node, cluster


@pytest.fixture(scope="module")
async def two(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Node, Node]]:
    if not backend.redis_url:
        pytest.skip("two nodes need PostgreSQL + Redis; this backend runs one node")
    async with cluster(backend, tmp_path_factory.mktemp("cache-nodes"), 2) as (a, b):
        yield a, b


async def post(node: Node, user: LiveUser, channel_id: str, body: str = "hi") -> int:
    response = await api(
        node, user, "POST", f"/api/v1/channels/{channel_id}/messages", json={"body": body}
    )
    return response.status_code


async def newest(node: Node, user: LiveUser, channel_id: str) -> list[dict[str, Any]]:
    response = await api(node, user, "GET", f"/api/v1/channels/{channel_id}/messages")
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def hits(node: Node, resource: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(node.http + "/metrics")).text
    line = f'ultrachat_cache_requests_total{{resource="{resource}",result="hit"}} '
    [value] = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
    return float(value)


async def ann_on_a_bob_on_b(two: tuple[Node, Node]) -> tuple[LiveUser, LiveUser, str]:
    """Ann signed up on node A, Bob on node B, and a channel of both made on A."""
    a, b = two
    ann, bob = await live_user(a), await live_user(b)
    return ann, bob, await channel_with(a, ann, bob)


async def test_a_member_removed_on_a_cannot_post_on_b_right_after(two: tuple[Node, Node]) -> None:
    a, b = two
    ann, bob = await live_user(a), await live_user(a)
    channel_id = await channel_with(a, ann, bob, kind="private")
    for round_ in range(5):
        assert await post(b, bob, channel_id, f"round {round_}") == 201
        await newest(b, bob, channel_id)  # B caches: member
        await newest(b, bob, channel_id)
        removed = await api(a, ann, "DELETE", f"/api/v1/channels/{channel_id}/members/{bob.id}")
        assert removed.status_code == 204, removed.text
        assert await post(b, bob, channel_id, "after removal") == 404
        gone = await api(b, bob, "GET", f"/api/v1/channels/{channel_id}/messages")
        assert gone.status_code == 404
        invited = await api(
            a, ann, "POST", f"/api/v1/channels/{channel_id}/members", json={"user_id": bob.id}
        )
        assert invited.status_code == 200, invited.text
        assert await post(b, bob, channel_id, "back") == 201
    assert await hits(b, "channel-membership") > 0


async def test_a_user_refused_on_b_who_joins_on_a_posts_on_b_at_once(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    ann, bob = await live_user(a), await live_user(a)
    channel_id = await channel_with(a, ann)
    assert await post(b, bob, channel_id) == 403  # B caches: not a member
    joined = await api(a, bob, "POST", f"/api/v1/channels/{channel_id}/join")
    assert joined.status_code == 200, joined.text
    assert await post(b, bob, channel_id) == 201


async def test_edits_and_deletes_on_a_are_never_served_stale_on_b(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    ann, bob, channel_id = await ann_on_a_bob_on_b(two)
    sent = await api(a, ann, "POST", f"/api/v1/channels/{channel_id}/messages", json={"body": "v0"})
    message_id = sent.json()["id"]
    for version in range(1, 6):
        assert (await newest(b, bob, channel_id))[-1]["body"] == f"v{version - 1}"
        await newest(b, bob, channel_id)  # served from B's cache
        single = await api(b, bob, "GET", f"/api/v1/messages/{message_id}")
        assert single.json()["body"] == f"v{version - 1}"
        edited = await api(
            a, ann, "PATCH", f"/api/v1/messages/{message_id}", json={"body": f"v{version}"}
        )
        assert edited.status_code == 200, edited.text
        assert (await newest(b, bob, channel_id))[-1]["body"] == f"v{version}"
        single = await api(b, bob, "GET", f"/api/v1/messages/{message_id}")
        assert single.json()["body"] == f"v{version}"
    deleted = await api(a, ann, "DELETE", f"/api/v1/messages/{message_id}")
    assert deleted.status_code == 204
    [last] = await newest(b, bob, channel_id)
    assert last["deleted"] is True and last["body"] is None
    single = await api(b, bob, "GET", f"/api/v1/messages/{message_id}")
    assert single.json()["deleted"] is True
    assert await hits(b, "channel-history-head") > 0


async def test_a_message_sent_on_a_reaches_the_history_head_on_b(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    ann, bob, channel_id = await ann_on_a_bob_on_b(two)
    for i in range(5):
        await newest(b, bob, channel_id)  # B caches the head
        assert await post(a, ann, channel_id, f"m{i}") == 201
        # New messages are invalidated without waiting for other nodes' acknowledgement
        # (docs/cache.md): allow the bus's delivery delay, bounded here by one second.
        for _ in range(100):
            if [m["body"] for m in await newest(b, bob, channel_id)][-1:] == [f"m{i}"]:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail(f"m{i} never reached B's history head")


async def test_concurrent_sends_on_both_nodes_leave_every_head_equal_to_the_database(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    ann, bob, channel_id = await ann_on_a_bob_on_b(two)
    hits_before = [await hits(node, "channel-history-head") for node in two]
    for round_ in range(5):
        await newest(a, ann, channel_id)  # both nodes hold the head
        await newest(b, bob, channel_id)
        mine = [f"a{round_}.{i}" for i in range(10)]
        theirs = [f"b{round_}.{i}" for i in range(10)]
        statuses = await asyncio.gather(
            *(post(a, ann, channel_id, body) for body in mine),
            *(post(b, bob, channel_id, body) for body in theirs),
        )
        assert set(statuses) == {201}
        # Each sender's own node shows every message it acknowledged, at once.
        for node, user, sent in ((a, ann, mine), (b, bob, theirs)):
            shown = {m["body"] for m in await newest(node, user, channel_id)}
            assert set(sent) <= shown
        fresh = await api(
            a, ann, "GET", f"/api/v1/channels/{channel_id}/messages?before_seq={2**63 - 1}"
        )
        truth = fresh.json()["messages"]
        # The other node's messages arrive within the bus's delivery delay (docs/cache.md).
        for node, user in ((a, ann), (b, bob)):
            for _ in range(100):
                if await newest(node, user, channel_id) == truth:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail(f"round {round_}: a node's head never matched the database")
    for node, before in zip(two, hits_before, strict=True):
        assert await hits(node, "channel-history-head") > before


async def test_preferences_written_on_a_are_read_back_on_b(two: tuple[Node, Node]) -> None:
    a, b = two
    user = await live_user(a)
    url = "/api/v1/users/me/preferences"
    for n in range(5):
        before = await api(b, user, "GET", url)  # B caches the current value
        assert before.status_code == 200
        written = await api(a, user, "PUT", url, content=orjson.dumps({"theme": f"t{n}"}))
        assert written.status_code == 200, written.text
        assert (await api(b, user, "GET", url)).json() == {"theme": f"t{n}"}
    assert await hits(b, "user-preferences") > 0
