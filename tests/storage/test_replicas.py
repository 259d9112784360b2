"""Read replicas against a real streaming replica that this module starts and stops.

tests/support/pg_cluster.py runs a private primary and a ``pg_basebackup -R`` hot standby on
loopback ports. The apps here read through ``Database.reader``; a read is proven to have
been served by the replica by ``pg_is_in_recovery()`` on the session the reader gives, and
by the ``ultrachat_db_reads_total`` counter for requests.

Every request and reader runs in a task with a fresh context: the in-process transport runs
the app in the caller's task, and a request's context variables (its user, its own writes)
must not leak into the next one, as they never do behind a real server.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import text

from tests.auth.factories import Account, account
from tests.support.app import FAST_HASHING, GENEROUS_LIMITS, TEST_MASTER_KEY, running_app
from tests.support.backends import REDIS_URL, redis_prefix
from tests.support.pg_cluster import PgServer, streaming_pair, wait_streaming
from ultrachat.config import SettingsError, load_settings
from ultrachat.gateway.runtime import Runtime
from ultrachat.storage import Database
from ultrachat.storage.replicas import PRIMARY_ONLY, RedisPositionStore, ReplicaSet

API = "/api/v1"
T = TypeVar("T")


def fresh(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``coro`` in its own task with empty context variables, like a server request."""
    return asyncio.create_task(coro, context=contextvars.Context())


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


def reads(target: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "ultrachat_db_reads_total", {"target": target, "reason": reason}
    )
    return value or 0.0


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[tuple[PgServer, PgServer]]:
    async with streaming_pair() as servers:
        yield servers


@asynccontextmanager
async def node(
    primary: PgServer, replica: PgServer, tmp: Path, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Runtime]]:
    settings = load_settings(
        database_url=primary.url,
        database_replica_urls=[replica.url],
        data_dir=str(tmp),
        rate_limit_api_max=0,
        master_key=TEST_MASTER_KEY,
        **FAST_HASHING,
        **GENEROUS_LIMITS,
        **overrides,
    )
    async with running_app(settings) as (app, client):
        runtime: Runtime = app.state.runtime
        assert runtime.replicas is not None
        yield app, client, runtime


async def on_replica(runtime: Runtime, user: Account) -> bool:
    """Whether a read by ``user`` right now is served by the replica."""

    async def probe() -> bool:
        async with runtime.db.reader(user.id) as session:
            return bool(await session.scalar(text("SELECT pg_is_in_recovery()")))

    return await fresh(probe())


async def get(client: httpx.AsyncClient, user: Account, path: str) -> httpx.Response:
    return await fresh(client.get(API + path, headers=user.headers))


async def post(
    client: httpx.AsyncClient, user: Account, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await fresh(client.post(API + path, json=body, headers=user.headers))


async def public_channel(client: httpx.AsyncClient, owner: Account) -> str:
    response = await post(client, owner, "/channels", {"kind": "public", "name": "replicated"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def send(client: httpx.AsyncClient, user: Account, channel_id: str, body: str) -> None:
    response = await post(client, user, f"/channels/{channel_id}/messages", {"body": body})
    assert response.status_code == 201, response.text


async def bodies(client: httpx.AsyncClient, user: Account, channel_id: str) -> list[str]:
    """The channel's history through the uncached path (``after_seq``): a reader session."""
    response = await get(client, user, f"/channels/{channel_id}/messages?after_seq=0")
    assert response.status_code == 200, response.text
    return [m["body"] for m in response.json()["messages"]]


async def readyz(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await fresh(client.get("/readyz"))
    assert response.status_code == 200, response.text  # a replica never makes it unready
    body: dict[str, Any] = response.json()
    return body


async def metric_line(client: httpx.AsyncClient, name: str) -> float:
    text_body = (await fresh(client.get("/metrics"))).text
    prefix = f'{name}{{replica="0"}} '
    [line] = [line for line in text_body.splitlines() if line.startswith(prefix)]
    return float(line[len(prefix) :])


@asynccontextmanager
async def replay_paused(primary: PgServer, replica: PgServer) -> AsyncIterator[None]:
    await replica.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await wait_streaming(primary, replica)


# Settings and the embedded default


def test_replica_settings_are_validated() -> None:
    pg = "postgresql+asyncpg://u@127.0.0.1:5432/db"
    settings = load_settings(
        database_url=pg, database_replica_urls=f" {pg}, {pg.replace('5432', '5433')} "
    )
    assert settings.database_replica_urls == [pg, pg.replace("5432", "5433")]
    assert settings.replica_max_lag_seconds == 5.0
    assert load_settings().database_replica_urls == []
    with pytest.raises(SettingsError, match=r"ULTRACHAT_DATABASE_REPLICA_URLS.*PostgreSQL"):
        load_settings(database_replica_urls=pg)  # the primary is the embedded SQLite
    with pytest.raises(SettingsError, match="ULTRACHAT_DATABASE_REPLICA_URLS"):
        load_settings(database_url=pg, database_replica_urls="mysql://u@h/db")
    with pytest.raises(SettingsError, match="ULTRACHAT_REPLICA_MAX_LAG_SECONDS"):
        load_settings(replica_max_lag_seconds=0)


async def test_without_replicas_the_reader_is_the_primary(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    try:
        assert db.replicas is None
        async with db.reader("anyone") as session:
            assert await session.scalar(text("SELECT 42")) == 42
        await db.wrote("anyone")  # a no-op
    finally:
        await db.close()


# The replica


async def test_reads_are_routed_to_the_replica(
    pair: tuple[PgServer, PgServer], tmp_path: Path
) -> None:
    primary, replica = pair
    async with node(primary, replica, tmp_path) as (_, client, runtime):
        replicas = runtime.replicas
        assert replicas is not None

        async def in_rotation() -> bool:
            return bool(replicas.readiness()["status"] == "ok")

        await eventually(in_rotation, "the replica in rotation")
        ann = await fresh(account(client))
        channel_id = await public_channel(client, ann)
        await send(client, ann, channel_id, "hello replica")
        # Ann's own writes hold her on the primary until the replica has replayed them.
        await eventually(lambda: on_replica(runtime, ann), "ann's reads go to the replica")

        before = reads("replica", "replica")
        assert await bodies(client, ann, channel_id) == ["hello replica"]
        listed = await get(client, ann, "/channels")
        assert [c["id"] for c in listed.json()["channels"]] == [channel_id]
        members = await get(client, ann, f"/channels/{channel_id}/members")
        assert [m["user_id"] for m in members.json()["members"]] == [ann.id]
        assert (await get(client, ann, f"/channels/{channel_id}")).json()["name"] == "replicated"
        assert reads("replica", "replica") - before >= 4

        body = await readyz(client)
        assert body["status"] == "ready" and "degraded" not in body
        check = body["checks"]["replicas"]
        assert check["status"] == "ok" and check["in_rotation"] == 1
        assert check["members"][0]["in_rotation"] is True
        assert await metric_line(client, "ultrachat_db_replica_up") == 1.0
        assert await metric_line(client, "ultrachat_db_replica_in_rotation") == 1.0

    # The same database without replicas configured: the reader is the primary's session.
    plain = Database(primary.url)
    try:
        async with plain.reader(ann.id) as session:
            assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
    finally:
        await plain.close()


async def test_a_user_reads_their_own_writes_while_the_replica_is_behind(
    pair: tuple[PgServer, PgServer], tmp_path: Path
) -> None:
    primary, replica = pair
    # A generous bound: the paused replica stays in rotation, only behind.
    async with node(primary, replica, tmp_path, replica_max_lag_seconds=60) as (_, client, rt):
        ann, bob, carl = [await fresh(account(client)) for _ in range(3)]
        channel_id = await public_channel(client, ann)
        assert (await post(client, bob, f"/channels/{channel_id}/join")).status_code == 200
        await send(client, ann, channel_id, "before")
        for user in (ann, bob, carl):
            await eventually(lambda user=user: on_replica(rt, user), f"{user.username} on replica")

        async with replay_paused(primary, replica):
            # A send, committed by the group committer's task: Bob sees it at once, his
            # reads go to the primary...
            ryw = reads("primary", "read_your_writes")
            await send(client, bob, channel_id, "mine")
            assert await bodies(client, bob, channel_id) == ["before", "mine"]
            assert reads("primary", "read_your_writes") > ryw
            assert not await on_replica(rt, bob)
            # ...while Ann's go to the replica, which has not replayed it.
            assert await on_replica(rt, ann)
            assert await bodies(client, ann, channel_id) == ["before"]

            # A write in the request's own transaction: the next request sees it too.
            second = await public_channel(client, ann)
            listed = await get(client, ann, "/channels")
            assert second in [c["id"] for c in listed.json()["channels"]]
            assert not await on_replica(rt, ann)
            # Someone else's new channel: the replica says "not found", the primary confirms
            # it is there, and Carl gets it.
            assert await on_replica(rt, carl)
            confirmed = reads("primary", "confirm")
            response = await get(client, carl, f"/channels/{second}")
            assert response.status_code == 200, response.text
            assert reads("primary", "confirm") > confirmed
            # A genuinely missing channel is still a 404.
            missing = await get(client, carl, "/channels/01890a5d-ac96-774b-bcce-b302099a8057")
            assert missing.status_code == 404

        # Replayed: their reads go back to the replica, which now has both writes.
        await eventually(lambda: on_replica(rt, ann), "ann back on the replica")
        await eventually(lambda: on_replica(rt, bob), "bob back on the replica")
        assert await bodies(client, ann, channel_id) == ["before", "mine"]


async def test_read_your_writes_holds_across_nodes(
    pair: tuple[PgServer, PgServer], tmp_path: Path
) -> None:
    primary, replica = pair
    async with redis_prefix() as prefix:
        shared = {"redis_url": REDIS_URL, "redis_key_prefix": prefix}
        lag = {"replica_max_lag_seconds": 60}
        async with (
            node(primary, replica, tmp_path / "a", **shared, **lag) as (_, one, rt_one),
            node(primary, replica, tmp_path / "b", **shared, **lag) as (_, two, rt_two),
        ):
            ann = await fresh(account(one))
            channel_id = await public_channel(one, ann)
            await eventually(lambda: on_replica(rt_two, ann), "ann on the replica (node two)")
            async with replay_paused(primary, replica):
                await send(client=one, user=ann, channel_id=channel_id, body="written on one")
                # Read on the other node: it learned Ann's position from Redis.
                assert await bodies(two, ann, channel_id) == ["written on one"]
                assert not await on_replica(rt_two, ann)

            # The position is kept atomically: a lower one never replaces a higher one.
            assert rt_one.redis is not None
            store = RedisPositionStore(rt_one.redis, prefix)
            await store.raise_to("someone", 200, 5)
            await store.raise_to("someone", 100, 5)
            assert await store.get("someone") == 200
            await store.raise_to("someone", PRIMARY_ONLY, 5)
            assert await store.get("someone") == PRIMARY_ONLY


async def test_a_stopped_replica_fails_over_to_the_primary_and_comes_back(
    pair: tuple[PgServer, PgServer], tmp_path: Path
) -> None:
    primary, replica = pair
    async with node(primary, replica, tmp_path) as (_, client, runtime):
        replicas = runtime.replicas
        assert replicas is not None
        ann = await fresh(account(client))
        channel_id = await public_channel(client, ann)
        await send(client, ann, channel_id, "survives")
        await eventually(lambda: on_replica(runtime, ann), "ann on the replica")
        try:
            await replica.stop()
            # Still in rotation as far as the last check knows: the read's probe fails, the
            # replica leaves rotation, and the read is served by the primary, without error.
            assert await bodies(client, ann, channel_id) == ["survives"]
            assert (await get(client, ann, "/channels")).status_code == 200
            assert not await on_replica(runtime, ann)

            async def reported_down() -> bool:
                replicas_check = (await readyz(client))["checks"]["replicas"]
                return bool(replicas_check["members"][0]["status"] == "down")

            await eventually(reported_down, "/readyz reports the replica down")
            body = await readyz(client)
            assert body["status"] == "ready" and body["degraded"] == ["replicas"]
            assert body["checks"]["database"] == "ok"
            check = body["checks"]["replicas"]
            assert check["status"] == "degraded" and check["in_rotation"] == 0
            assert "primary" in check["detail"]
            assert check["members"][0]["in_rotation"] is False
            assert await metric_line(client, "ultrachat_db_replica_up") == 0.0
            assert await metric_line(client, "ultrachat_db_replica_in_rotation") == 0.0
            assert await bodies(client, ann, channel_id) == ["survives"]
        finally:
            await replica.start()
        await wait_streaming(primary, replica)

        async def back() -> bool:
            return bool((await readyz(client))["checks"]["replicas"]["status"] == "ok")

        await eventually(back, "the replica back in rotation")
        assert await metric_line(client, "ultrachat_db_replica_up") == 1.0
        await eventually(lambda: on_replica(runtime, ann), "ann on the replica again")
        assert await bodies(client, ann, channel_id) == ["survives"]


async def test_a_replica_lagging_past_the_bound_leaves_rotation(
    pair: tuple[PgServer, PgServer], tmp_path: Path
) -> None:
    primary, replica = pair
    async with node(primary, replica, tmp_path, replica_max_lag_seconds=1) as (_, client, rt):
        ann = await fresh(account(client))
        channel_id = await public_channel(client, ann)
        await eventually(lambda: on_replica(rt, ann), "ann on the replica")
        async with replay_paused(primary, replica):
            await send(client, ann, channel_id, "while paused")

            async def lagging() -> bool:
                member = (await readyz(client))["checks"]["replicas"]["members"][0]
                return bool(member["status"] == "lagging")

            await eventually(lagging, "the replica leaves rotation for lag")
            member = (await readyz(client))["checks"]["replicas"]["members"][0]
            assert member["in_rotation"] is False
            assert member["lag_seconds"] > 1 and member["lag_bytes"] > 0
            assert await metric_line(client, "ultrachat_db_replica_lag_seconds") > 1
            assert await metric_line(client, "ultrachat_db_replica_lag_bytes") > 0
            assert await metric_line(client, "ultrachat_db_replica_in_rotation") == 0.0
            # Nobody reads from it now, whoever they are.
            no_replica = reads("primary", "no_replica")
            stranger = await fresh(account(client))
            assert not await on_replica(rt, stranger)
            assert reads("primary", "no_replica") > no_replica
            assert await bodies(client, stranger, channel_id) == ["while paused"]

        async def back() -> bool:
            member = (await readyz(client))["checks"]["replicas"]["members"][0]
            return bool(member["status"] == "ok")

        await eventually(back, "the replica back in rotation once it caught up")
        assert await metric_line(client, "ultrachat_db_replica_lag_seconds") == 0.0
        await eventually(lambda: on_replica(rt, ann), "ann on the replica again")


def test_the_replica_set_is_named_by_position() -> None:
    # Labels and /readyz name replicas by their index in ULTRACHAT_DATABASE_REPLICA_URLS,
    # never by URL (which may hold a password).
    secret = secrets.token_hex(4)
    db = Database("postgresql+asyncpg://u@127.0.0.1:1/none")
    url = f"postgresql+asyncpg://u:{secret}@127.0.0.1:1/none"

    class NoStore:
        async def get(self, user_id: str) -> int:
            return 0

        async def raise_to(self, user_id: str, lsn: int, ttl_seconds: float) -> None:
            return None

    replicas = ReplicaSet(db, [url, url], max_lag_seconds=5, store=NoStore())
    body = replicas.readiness()
    assert [m["replica"] for m in body["members"]] == ["0", "1"]
    assert body["status"] == "degraded"  # never checked: not in rotation
    assert secret not in str(body)


async def test_a_removed_member_reads_nothing_even_from_a_lagging_replica(
    pair: tuple[PgServer, PgServer], tmp_path: Path
) -> None:
    primary, replica = pair
    async with node(primary, replica, tmp_path, replica_max_lag_seconds=60) as (_, client, rt):
        ann, bob = [await fresh(account(client)) for _ in range(2)]
        response = await post(
            client, ann, "/channels", {"kind": "private", "name": "secret", "member_ids": [bob.id]}
        )
        assert response.status_code == 201, response.text
        channel_id = str(response.json()["id"])
        await send(client, ann, channel_id, "for members")
        await eventually(lambda: on_replica(rt, bob), "bob on the replica")
        assert await bodies(client, bob, channel_id) == ["for members"]

        async with replay_paused(primary, replica):
            # The replica still lists Bob as a member; permission must not come from it.
            removed = await fresh(
                client.delete(f"{API}/channels/{channel_id}/members/{bob.id}", headers=ann.headers)
            )
            assert removed.status_code == 204, removed.text
            assert await on_replica(rt, bob)
            for path in (
                f"/channels/{channel_id}/messages?after_seq=0",
                f"/channels/{channel_id}/members",
                f"/channels/{channel_id}",
                f"/channels/{channel_id}/pins",
            ):
                denied = await get(client, bob, path)
                assert denied.status_code == 404, (path, denied.text)
