"""The hot read paths through the cache, on one app per backend: what is cached is served,
and every write is visible to the very next read (membership, history head, messages,
profiles), with hit and miss counters moving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from tests.auth.factories import account
from tests.chat.factories import (
    API,
    accounts,
    create,
    done,
    get_message,
    history,
    join,
    leave,
    post,
    remove,
    send,
)
from tests.support.backends import Backend
from tests.support.cli import ultrachat
from ultrachat.auth.service import grant_role
from ultrachat.cache.config import USER_PROFILES


def requests(resource: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_requests_total", {"resource": resource, "result": result}
    )
    return value or 0.0


class Counts:
    """Hit and miss deltas of one resource since creation."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.hits = requests(resource, "hit")
        self.misses = requests(resource, "miss")

    @property
    def delta(self) -> tuple[float, float]:
        return (
            requests(self.resource, "hit") - self.hits,
            requests(self.resource, "miss") - self.misses,
        )


async def test_sends_check_membership_in_their_transaction_not_the_cache(
    client: httpx.AsyncClient,
) -> None:
    # Under the channel lock a removal also takes: no send can land after a removal.
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    await send(client, bob, channel["id"], "warm")
    counts = Counts("channel-membership")
    for i in range(5):
        await send(client, bob, channel["id"], f"hello {i}")
    assert counts.delta == (0, 0)


async def test_history_reads_check_membership_from_the_cache(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "private", bob)
    await history(client, bob, channel["id"])
    counts = Counts("channel-membership")
    for _ in range(5):
        await history(client, bob, channel["id"])
    hits, misses = counts.delta
    assert misses == 0 and hits >= 5


async def test_a_refused_sender_who_joins_may_send_at_once(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public")
    assert (await post(client, bob, channel["id"])).status_code == 403  # cached: not a member
    await join(client, bob, channel["id"])
    await send(client, bob, channel["id"], "in")


async def test_a_removed_member_cannot_post_right_after_the_removal(
    client: httpx.AsyncClient,
) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "private", bob)
    await send(client, bob, channel["id"])  # bob's membership is cached now
    await history(client, bob, channel["id"])
    done(await remove(client, ann, channel["id"], bob))
    assert (await post(client, bob, channel["id"])).status_code == 404
    response = await client.get(f"{API}/channels/{channel['id']}/messages", headers=bob.headers)
    assert response.status_code == 404


async def test_leaving_and_rejoining_a_public_channel(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    await send(client, bob, channel["id"])
    done(await leave(client, bob, channel["id"]))
    assert (await post(client, bob, channel["id"])).status_code == 403
    await join(client, bob, channel["id"])
    await send(client, bob, channel["id"])


async def test_the_newest_page_is_cached_and_never_stale(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel_id = (await create(client, ann, "public", bob))["id"]
    first = await send(client, ann, channel_id, "one")
    await history(client, bob, channel_id)
    counts = Counts("channel-history-head")
    page = await history(client, bob, channel_id)
    assert [m["body"] for m in page] == ["one"]
    assert counts.delta == (1, 0)

    # Each change is in the very next read: new message, edit, reaction, pin, delete.
    second = await send(client, bob, channel_id, "two")
    assert [m["body"] for m in await history(client, ann, channel_id)] == ["one", "two"]
    edited = await client.patch(
        f"{API}/messages/{first['id']}", json={"body": "uno"}, headers=ann.headers
    )
    assert edited.status_code == 200, edited.text
    assert [m["body"] for m in await history(client, bob, channel_id)] == ["uno", "two"]
    done(
        await client.put(
            f"{API}/messages/{second['id']}/reactions/%F0%9F%91%8D", headers=ann.headers
        )
    )
    assert (await history(client, bob, channel_id))[1]["reactions"][0]["count"] == 1
    done(await client.post(f"{API}/messages/{second['id']}/pin", headers=ann.headers))
    assert (await history(client, bob, channel_id))[1]["pinned"] is True
    done(await client.delete(f"{API}/messages/{first['id']}", headers=ann.headers))
    page = await history(client, bob, channel_id)
    assert page[0]["deleted"] is True and page[0]["body"] is None


async def test_page_sizes_share_one_cached_head(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel_id = (await create(client, ann, "public"))["id"]
    bodies = [(await send(client, ann, channel_id, f"m{i}"))["body"] for i in range(12)]
    everything = await history(client, ann, channel_id, limit=50)
    assert [m["body"] for m in everything] == bodies
    counts = Counts("channel-history-head")
    assert [m["body"] for m in await history(client, ann, channel_id, limit=5)] == bodies[-5:]
    assert [m["body"] for m in await history(client, ann, channel_id, limit=200)] == bodies
    assert counts.delta == (2, 0)  # the channel holds fewer than 50: the head is all of it
    # The bounded pages are not cached and agree with the head.
    bounded = await history(client, ann, channel_id, before_seq=10_000, limit=5)
    assert bounded == (await history(client, ann, channel_id, limit=5))


async def test_a_longer_page_than_cached_is_loaded(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel_id = (await create(client, ann, "public"))["id"]
    for i in range(8):
        await send(client, ann, channel_id, f"m{i}")
    assert len(await history(client, ann, channel_id, limit=3)) == 3
    counts = Counts("channel-history-head")
    assert [m["body"] for m in await history(client, ann, channel_id, limit=6)] == [
        f"m{i}" for i in range(2, 8)
    ]
    assert counts.delta == (0, 1)
    assert len(await history(client, ann, channel_id, limit=4)) == 4
    assert counts.delta == (1, 1)


async def test_single_messages_are_cached_and_never_stale(client: httpx.AsyncClient) -> None:
    ann, bob, eve = await accounts(client, 3)
    channel_id = (await create(client, ann, "private", bob))["id"]
    message = await send(client, ann, channel_id, "before")
    await get_message(client, bob, message["id"])
    counts = Counts("chat-messages")
    assert (await get_message(client, bob, message["id"]))["body"] == "before"
    assert counts.delta == (1, 0)
    # Visibility is still checked per reader.
    response = await client.get(f"{API}/messages/{message['id']}", headers=eve.headers)
    assert response.status_code == 404
    await client.patch(
        f"{API}/messages/{message['id']}", json={"body": "after"}, headers=ann.headers
    )
    assert (await get_message(client, bob, message["id"]))["body"] == "after"
    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))
    assert (await get_message(client, bob, message["id"]))["deleted"] is True


async def test_subscribing_reads_the_users_channels_from_the_cache(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ann, bob = await accounts(client, 2)
        channels = app.state.runtime.channels
        assert await channels.member_channel_ids(bob.id) == []
        channel_id = (await create(client, ann, "public"))["id"]
        await join(client, bob, channel_id)
        counts = Counts("user-channels")
        assert await channels.member_channel_ids(bob.id) == [channel_id]
        assert await channels.member_channel_ids(bob.id) == [channel_id]
        assert counts.delta == (1, 1)
        dm = (await create(client, bob, "dm", ann))["id"]
        assert sorted(await channels.member_channel_ids(bob.id)) == sorted([channel_id, dm])
        done(await leave(client, bob, channel_id))
        assert await channels.member_channel_ids(bob.id) == [dm]


async def test_profiles_are_cached(client: httpx.AsyncClient) -> None:
    user = await account(client)
    first = (await client.get(f"{API}/users/me", headers=user.headers)).json()
    counts = Counts("user-profiles")
    for _ in range(3):
        assert (await client.get(f"{API}/users/me", headers=user.headers)).json() == first
    assert counts.delta == (3, 0)
    assert first["id"] == user.id and first["username"] == user.username


def warms(resource: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_cache_warms_total", {"resource": resource, "result": result}
    )
    return value or 0.0


async def test_signing_in_and_refreshing_have_the_profile_ready(app: FastAPI) -> None:
    # A client's first request after signing in (or after starting up with a refresh
    # token) is its own profile: that read is a hit, and the warm is not counted as one.
    transport = httpx.ASGITransport(app=app, client=("203.0.113.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        loaded = warms("user-profiles", "loaded")
        counts = Counts("user-profiles")
        user = await account(client)
        assert warms("user-profiles", "loaded") == loaded + 1
        assert counts.delta == (0, 0)
        me = (await client.get(f"{API}/users/me", headers=user.headers)).json()
        assert me["id"] == user.id and me["role"] == "member"
        assert counts.delta == (1, 0)

        # A role change forgets it; the next refresh loads it again, with the new role.
        runtime = app.state.runtime
        await grant_role(runtime.db, user.username, "admin")
        await runtime.auth.profile_changed(user.id)
        response = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": user.refresh_token}
        )
        assert response.status_code == 200, response.text
        assert warms("user-profiles", "loaded") == loaded + 2
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        assert (await client.get(f"{API}/users/me", headers=headers)).json()["role"] == "admin"
        assert counts.delta == (2, 0)


async def test_a_role_granted_from_the_cli_reaches_every_nodes_cached_profile(
    app: FastAPI, backend: Backend, tmp_path: Path
) -> None:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.11", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        user = await account(client)  # signing in cached the profile, role "member"
        cache = app.state.runtime.cache
        assert cache.local.get(USER_PROFILES, user.id)["role"] == "member"
        # In a thread: this node must stay free to acknowledge the command's invalidation.
        granted = await asyncio.to_thread(
            ultrachat,
            tmp_path,
            "users",
            "grant-admin",
            user.username,
            database_url=backend.database_url,
            redis_url=backend.redis_url,
            redis_key_prefix=backend.redis_prefix,
        )
        assert granted.returncode == 0, granted.stderr
        assert "is now an admin (was member)" in granted.stdout
        me = await client.get(f"{API}/users/me", headers=user.headers)
        if backend.redis_url:
            assert granted.stderr == ""
            assert me.json()["role"] == "admin"
        else:
            # The embedded server's cache is in its own process: the command says so.
            assert granted.stderr == (
                "note: running servers may show the old role in /users/me for up to 3600 s:"
                " no Redis is configured, and the server's cache is in its own process\n"
            )


async def test_the_counters_are_on_the_metrics_endpoint(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for resource in (
        "user-preferences",
        "chat-messages",
        "channel-membership",
        "user-channels",
        "user-profiles",
        "channel-history-head",
        "session-revocation",
    ):
        for result in ("hit", "miss"):
            assert (
                f'ultrachat_cache_requests_total{{resource="{resource}",result="{result}"}}'
            ) in text
    assert "ultrachat_cache_entries" in text
