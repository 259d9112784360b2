"""Look at partitions and retire old ones: ``ultrachat partitions`` and the maintenance task.

Retention detaches a month's partition and then drops the detached table, so it never holds
a lock on the parent while data is deleted. ``DETACH PARTITION ... CONCURRENTLY`` would take
no blocking lock at all, but PostgreSQL refuses it while the table has a DEFAULT partition,
and ours always have one. So it is used only on a table without a DEFAULT partition; otherwise
the plain DETACH, which holds ACCESS EXCLUSIVE on the parent for a catalog update (about a
millisecond), runs under a short ``lock_timeout`` and is retried: queued behind a long query it
gives up instead of making every write queue behind it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ultrachat.storage.partitions import (
    LOCK_KEY,
    PARTITIONED_TABLES,
    default_name,
    month_start,
    utc_midnight,
)

LOCK_TIMEOUT_MS = 500
DETACH_ATTEMPTS = 5
_LOCK_NOT_AVAILABLE = "55P03"
_RANGE = r"FROM \('([^']+)'\) TO \('([^']+)'\)"
_MONTH_SUFFIX = re.compile(r"_(\d{4})(\d{2})$")


class PartitionError(Exception):
    """A partition operation could not be done; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    table: str
    name: str
    lower: datetime | None  # None for the DEFAULT partition
    upper: datetime | None
    is_default: bool
    detach_pending: bool
    rows: int | None  # None: not counted and never analyzed
    size_bytes: int


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _count(conn: AsyncConnection, name: str) -> int:
    # ``name`` comes from the catalog (a partition of one of our tables), quoted.
    query = text(f"SELECT count(*) FROM {_q(name)}")  # noqa: S608
    return int((await conn.execute(query)).scalar_one())


def retention_cutoff(months: int, today: date | None = None) -> datetime:
    """Partitions ending on or before this moment are entirely older than ``months`` months."""
    if months < 1:
        raise ValueError("months must be at least 1")
    this_month = month_start(today or datetime.now(UTC).date())
    return utc_midnight(month_start(this_month, -months))


async def _partitions(conn: AsyncConnection, table: str, count: bool) -> list[PartitionInfo]:
    result = await conn.execute(
        text(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid), :range))[1]::timestamptz,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid), :range))[2]::timestamptz,
                   i.inhdetachpending, c.reltuples::bigint,
                   pg_total_relation_size(c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass(:table)
            ORDER BY 3 NULLS LAST, 1
            """
        ),
        {"table": table, "range": _RANGE},
    )
    found = []
    for name, is_default, lower, upper, pending, estimate, size in result.all():
        rows: int | None = int(estimate) if estimate >= 0 else None
        if count:
            rows = await _count(conn, name)
        found.append(
            PartitionInfo(table, name, lower, upper, bool(is_default), pending, rows, int(size))
        )
    return found


async def list_partitions(engine: AsyncEngine, *, exact: bool = True) -> list[PartitionInfo]:
    """Every partition of every partitioned table, oldest first, DEFAULT last in each table.

    ``exact`` counts rows (a scan per partition); otherwise the planner's estimate is shown.
    """
    async with engine.connect() as conn:
        found = []
        for table in PARTITIONED_TABLES:
            found.extend(await _partitions(conn, table, exact))
        return found


async def default_rows(engine: AsyncEngine) -> dict[str, int]:
    """Rows in each table's DEFAULT partition: rows that fell outside every monthly partition."""
    counts = {}
    async with engine.connect() as conn:
        for table in PARTITIONED_TABLES:
            name = default_name(table)
            if (await conn.execute(text("SELECT to_regclass(:n)"), {"n": name})).scalar():
                counts[table] = await _count(conn, name)
    return counts


async def drop_older_than(
    engine: AsyncEngine, months: int, *, today: date | None = None, wait: bool = True
) -> list[str]:
    """Detach and drop every partition entirely older than ``months`` months; the names dropped.

    The current month's partition, later ones and the DEFAULT partition are never dropped.
    With ``wait=False`` it returns [] at once when another session is changing partitions.
    """
    cutoff = retention_cutoff(months, today)  # at most the start of last month
    dropped: list[str] = []
    async with engine.connect() as conn:
        # DETACH ... CONCURRENTLY cannot run inside a transaction block.
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        lock = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        locked = (await conn.execute(text(f"SELECT {lock}(:k)"), {"k": LOCK_KEY})).scalar()
        if locked is False:
            return []
        try:
            for table in PARTITIONED_TABLES:
                partitions = await _partitions(conn, table, count=False)
                has_default = any(p.is_default for p in partitions)
                for p in partitions:
                    if p.is_default or p.upper is None or p.upper > cutoff:
                        continue
                    if p.detach_pending:  # an interrupted DETACH ... CONCURRENTLY
                        await conn.execute(
                            text(f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(p.name)} FINALIZE")
                        )
                    else:
                        await _detach(conn, table, p.name, concurrently=not has_default)
                    await conn.execute(text(f"DROP TABLE {_q(p.name)}"))
                    dropped.append(p.name)
                for name in await _detached_leftovers(conn, table, cutoff):
                    await conn.execute(text(f"DROP TABLE {_q(name)}"))
                    dropped.append(name)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
    return dropped


async def _detach(conn: AsyncConnection, table: str, name: str, *, concurrently: bool) -> None:
    if concurrently:
        await conn.execute(
            text(f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(name)} CONCURRENTLY")
        )
        return
    await conn.execute(text(f"SET lock_timeout = {LOCK_TIMEOUT_MS}"))
    try:
        for attempt in range(DETACH_ATTEMPTS):
            try:
                await conn.execute(text(f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(name)}"))
                return
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                await conn.rollback()
            await asyncio.sleep(0.25 * 2**attempt)
    finally:
        await conn.execute(text("RESET lock_timeout"))
    raise PartitionError(
        f"could not detach {name}: {table} stayed locked by other sessions "
        f"({DETACH_ATTEMPTS} tries of {LOCK_TIMEOUT_MS} ms); retry later"
    )


async def _detached_leftovers(conn: AsyncConnection, table: str, cutoff: datetime) -> list[str]:
    """Tables named like ``table``'s partitions but attached to nothing: a run that stopped
    between DETACH and DROP left them. Returns those entirely older than ``cutoff``."""
    result = await conn.execute(
        text(
            "SELECT relname FROM pg_class "
            "WHERE relkind = 'r' AND NOT relispartition AND relname ~ :pattern "
            "AND relnamespace = current_schema()::regnamespace"
        ),
        {"pattern": f"^{re.escape(table)}_[0-9]{{6}}$"},
    )
    old = []
    for (name,) in result.all():
        match = _MONTH_SUFFIX.search(name)
        if match and 1 <= int(match[2]) <= 12:
            start = date(int(match[1]), int(match[2]), 1)
            if utc_midnight(month_start(start, 1)) <= cutoff:
                old.append(name)
    return old
