"""Key rotation and the re-wrap job: online, resumable, one runner at a time."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.auth.factories import account
from tests.chat.factories import API, create, history, send
from tests.support.deployment import Deployment
from ultrachat.chat.log import ChannelLog
from ultrachat.crypto.columns import MESSAGE_BODY, SEALED_COLUMNS
from ultrachat.crypto.inventory import key_usage, retire
from ultrachat.crypto.models import DataKey, RewrapRun
from ultrachat.crypto.rewrap import RewrapJob
from ultrachat.crypto.setup import data_key_ring
from ultrachat.errors import Conflict


@pytest.fixture
def deployment_settings() -> dict[str, Any]:
    # Nodes follow a rotation within 0.2 s, so the job's grace period can be short.
    return {"data_key_refresh_seconds": 0.2, "cache_enabled": False}


async def rows_per_key(deployment: Deployment) -> dict[int, int]:
    return {k.id: k.total_rows for k in await key_usage(deployment.runtime.db)}


async def test_rotation_under_concurrent_reads_and_writes_fails_nothing(
    deployment: Deployment,
) -> None:
    client, runtime = deployment.client, deployment.runtime
    alice = await account(client)
    channel = await create(client, alice)
    expected: dict[str, str] = {}
    for i in range(40):
        sent = await send(client, alice, channel["id"], f"before {i}")
        expected[sent["id"]] = sent["body"]
    old_key = runtime.data_keys.primary_id
    failures: list[str] = []
    stop = asyncio.Event()
    log = ChannelLog(runtime.db, runtime.ledger.sealer)

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            response = await client.post(
                f"{API}/channels/{channel['id']}/messages",
                json={"body": f"during {n}"},
                headers=alice.headers,
            )
            if response.status_code != 201:
                failures.append(f"send {response.status_code}")
                continue
            expected[response.json()["id"]] = f"during {n}"
            target = random.choice(list(expected))
            edit = await client.patch(
                f"{API}/messages/{target}", json={"body": f"edit {n}"}, headers=alice.headers
            )
            if edit.status_code != 200:
                failures.append(f"edit {edit.status_code}")
            else:
                expected[target] = f"edit {n}"

    async def reader() -> None:
        while not stop.is_set():
            page = await client.get(
                f"{API}/channels/{channel['id']}/messages",
                params={"after_seq": 0, "limit": 200},
                headers=alice.headers,
            )
            if page.status_code != 200 or any(m["corrupt"] for m in page.json()["messages"]):
                failures.append(f"history {page.status_code}")
            replay = await log.after(channel["id"], 0, 1000)
            if any(e.kind == "event.corrupt" for e in replay):
                failures.append("replay")
            await asyncio.sleep(0)

    workers = [asyncio.create_task(w()) for w in (writer, reader, reader)]
    # Another process (the CLI) rotates; this node follows within the refresh interval.
    cli_ring = data_key_ring(runtime.settings, runtime.db)
    await cli_ring.start()
    new_key = await cli_ring.rotate("operator")
    job = RewrapJob(runtime.db, cli_ring, owner="cli", batch_size=7, grace=timedelta(seconds=1))
    await job.run()
    # The node re-wraps too, a refresh interval plus 2 s after the rotation, one runner per
    # column (a lease): on a slow machine it takes some columns before this job gets to
    # them, and this job reports those unfinished. Whoever runs it, the job must end.
    deadline = asyncio.get_running_loop().time() + 60
    while await job.pending():
        assert asyncio.get_running_loop().time() < deadline, "the re-wrap never finished"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)
    await cli_ring.stop()

    assert failures == []
    async with runtime.db.sessions() as session:
        runs = (await session.scalars(select(RewrapRun))).all()
    assert {r.column_name for r in runs} == {c.name for c in SEALED_COLUMNS}
    assert all(r.finished_at is not None and r.target_key_id == new_key for r in runs)
    assert sum(r.rewrapped for r in runs) >= 40
    usage = await rows_per_key(deployment)
    assert usage[old_key] == 0
    assert usage[new_key] > 0
    page = await history(client, alice, channel["id"], after_seq=0, limit=200)
    assert {m["id"]: m["body"] for m in page} == expected  # no edit was overwritten
    await retire(runtime.db, old_key)  # nothing uses it any more


async def messages_then_rotation(deployment: Deployment, count: int) -> int:
    """``count`` messages sealed under the first data key, then a new primary key: its id."""
    client = deployment.client
    alice = await account(client)
    channel = await create(client, alice)
    for i in range(count):
        await send(client, alice, channel["id"], f"m{i}")
    new_key: int = await deployment.runtime.data_keys.rotate("test")
    return new_key


async def test_the_job_resumes_after_a_crash(deployment: Deployment) -> None:
    runtime = deployment.runtime
    new_key = await messages_then_rotation(deployment, 30)
    crashed = RewrapJob(runtime.db, runtime.data_keys, owner="crashed", batch_size=5)
    await crashed.wait_for_grace()
    column = SEALED_COLUMNS[0]
    await crashed._claim(column, new_key)
    await crashed._step(column, new_key)
    await crashed._step(column, new_key)

    async with runtime.db.sessions() as session:
        run = await session.get(RewrapRun, column.name)
    assert run is not None and run.scanned == 10 and run.finished_at is None
    # While the lease holds, another runner stays off and reports where things stand.
    other = RewrapJob(runtime.db, runtime.data_keys, owner="other", batch_size=5)
    waiting = await other.run()
    assert waiting[0].runner == "crashed" and not waiting[0].finished
    # The lease expires; the next runner carries on from the cursor, not from the start.
    async with runtime.db.transaction() as session:
        await session.execute(
            update(RewrapRun).values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    done = await other.run()
    assert all(p.finished for p in done)
    assert done[0].column == MESSAGE_BODY.name
    assert done[0].scanned == 30  # 10 before the crash + 20 after: no row scanned twice
    assert (await rows_per_key(deployment)).get(new_key, 0) >= 30
    old = [k for k in await key_usage(runtime.db) if k.id != new_key]
    assert all(k.total_rows == 0 for k in old)


async def test_retire_refuses_while_rows_use_the_key(deployment: Deployment) -> None:
    client, runtime = deployment.client, deployment.runtime
    alice = await account(client)
    channel = await create(client, alice)
    await send(client, alice, channel["id"], "sealed under the first key")
    first = runtime.data_keys.primary_id
    with pytest.raises(Conflict, match="primary"):
        await retire(runtime.db, first)
    await runtime.data_keys.rotate("test")
    with pytest.raises(Conflict, match="still seals rows in"):
        await retire(runtime.db, first)
    await RewrapJob(runtime.db, runtime.data_keys, owner="t").run()
    await retire(runtime.db, first)
    async with runtime.db.sessions() as session:
        key = await session.get(DataKey, first)
    assert key is not None and key.state == "retired" and key.wrapped is None
    page = await history(client, alice, channel["id"], after_seq=0)
    assert page[0]["body"] == "sealed under the first key"


async def test_two_runners_at_once_share_the_work_without_error(deployment: Deployment) -> None:
    runtime = deployment.runtime
    new_key = await messages_then_rotation(deployment, 20)
    jobs = [
        RewrapJob(runtime.db, runtime.data_keys, owner=name, batch_size=3)
        for name in ("node-a", "node-b", "cli")
    ]
    # Each claims every column at the same moment: one gets each lease, none fails.
    results = await asyncio.gather(*(job.run() for job in jobs))
    assert all(len(r) == len(SEALED_COLUMNS) for r in results)
    while not all(p.finished for p in await jobs[0].run()):
        await asyncio.sleep(0.05)  # a column another runner still holds
    old = [k for k in await key_usage(runtime.db) if k.id != new_key]
    assert all(k.total_rows == 0 for k in old)
