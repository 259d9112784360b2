"""All of monitoring's SQL: append a snapshot, read a window of them, delete old ones.

Retention is two-layered. In PostgreSQL ``metrics_history`` is partitioned by month, so the
global ``ULTRACHAT_RETENTION_MONTHS`` drops whole months like every other time series. On
top of that, ``ULTRACHAT_METRICS_RETENTION_DAYS`` deletes rows older than that many days on
both backends, in small batches from each node's collector: metrics rarely need the months
that messages and the audit log keep, and SQLite has no partitions to drop. On PostgreSQL the
batch takes its rows with ``SKIP LOCKED``, so nodes pruning at once split the work instead
of queueing on each other's row locks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, select

from ultrachat.monitoring.models import MetricsSnapshot
from ultrachat.storage import Database, new_id

PRUNE_BATCH = 1000
PRUNE_MAX_BATCHES = 10  # per call: a backlog is worked off over several collections


async def append(db: Database, at: datetime, node: str, data: dict[str, Any]) -> None:
    row = MetricsSnapshot(id=new_id(), created_at=at, node=node, data=orjson.dumps(data).decode())
    async with db.transaction() as session:
        session.add(row)


async def window(
    db: Database, since: datetime, until: datetime
) -> AsyncIterator[tuple[datetime, str, dict[str, Any]]]:
    """(created_at, node, data) of every snapshot in ``(since, until]``, oldest first,
    streamed so that a week of a large cluster never sits in memory at once."""
    stmt = (
        select(MetricsSnapshot.created_at, MetricsSnapshot.node, MetricsSnapshot.data)
        .where(MetricsSnapshot.created_at > since, MetricsSnapshot.created_at <= until)
        .order_by(MetricsSnapshot.created_at)
        .execution_options(yield_per=500)
    )
    async with db.reader() as session:
        rows = await session.stream(stmt)
        async for created_at, node, data in rows:
            yield created_at, node, orjson.loads(data)


async def prune(
    db: Database,
    before: datetime,
    batch: int = PRUNE_BATCH,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> int:
    """Delete snapshots taken before ``before``; return how many went."""
    deleted = 0
    for _ in range(max_batches):
        oldest = (
            select(MetricsSnapshot.id)
            .where(MetricsSnapshot.created_at < before)
            .limit(batch)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer anyway
        )
        async with db.transaction() as session:
            result = await session.execute(
                delete(MetricsSnapshot)
                # The time bound again, so PostgreSQL touches only the old partitions.
                .where(MetricsSnapshot.created_at < before, MetricsSnapshot.id.in_(oldest))
                .execution_options(synchronize_session=False)
            )
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch:
            break
    return deleted
