"""Monthly range partitions for PostgreSQL's time-series tables.

Partitions are named ``<table>_YYYYMM`` and cover [first of month, first of next month) in UTC.
They are created ahead (this month plus ``MONTHS_AHEAD``) by ``ultrachat migrate`` and by the
server's hourly maintenance (storage/maintenance.py); a DEFAULT partition catches anything
outside them so that a write never fails for want of one.

A new month is made the way that blocks the fewest queries: ``CREATE TABLE ... (LIKE parent)``
then ``ATTACH PARTITION``, which takes only SHARE UPDATE EXCLUSIVE on the parent (inserts go
on), where ``CREATE TABLE ... PARTITION OF`` would take ACCESS EXCLUSIVE. Rows the DEFAULT
partition holds for that month move into the new partition in the same transaction (PostgreSQL
refuses to attach a partition whose rows sit in the DEFAULT one).

Every change to partitions holds one advisory lock, so that nodes (and ``ultrachat
partitions``) take turns instead of racing to create or drop the same table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

MONTHS_AHEAD = 3
# Every time-series table that grows without bound (metrics history joins this list when it
# arrives); everything (migrate, maintenance, retention, the CLI, the
# metrics) reads it from here.
PARTITIONED_TABLES = ("messages", "channel_events", "audit_log", "metrics_history")
# pg_advisory_lock key for partition changes: "ucpart" in ASCII.
LOCK_KEY = 0x756370617274


def month_start(moment: date, offset: int = 0) -> date:
    index = moment.year * 12 + (moment.month - 1) + offset
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, start: date) -> str:
    return f"{table}_{start:%Y%m}"


def default_name(table: str) -> str:
    return f"{table}_default"


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _literal(day: date) -> str:
    # An explicit UTC offset: a bare date would be read in the session's TimeZone.
    return f"'{day.isoformat()} 00:00:00+00'"


def is_partitioned(connection: Connection, table: str) -> bool:
    """Whether ``table`` exists and is a partitioned table (False on SQLite)."""
    if connection.dialect.name != "postgresql":
        return False
    return bool(
        connection.execute(
            text(
                "SELECT EXISTS "
                "(SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t))"
            ),
            {"t": table},
        ).scalar()
    )


def _exists(connection: Connection, name: str) -> bool:
    return connection.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None


def lock_partitions(connection: Connection, *, wait: bool) -> bool:
    """Take the partition lock for this transaction; False if another session holds it."""
    if wait:
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        return True
    query = text("SELECT pg_try_advisory_xact_lock(:k)")
    return bool(connection.execute(query, {"k": LOCK_KEY}).scalar())


def create_month_partition(connection: Connection, table: str, start: date) -> str:
    """Create and attach the partition of the month starting on ``start``.

    Rows that the DEFAULT partition holds for that month move into it first.
    """
    name = partition_name(table, start)
    lower, upper = _literal(start), _literal(month_start(start, 1))
    connection.execute(
        text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING STORAGE)')
    )
    default = default_name(table)
    if _exists(connection, default):
        in_month = "WHERE created_at >= :lower AND created_at < :upper"
        bounds = {"lower": utc_midnight(start), "upper": utc_midnight(month_start(start, 1))}
        # Table names here are ours (PARTITIONED_TABLES), never input.
        move = f'INSERT INTO "{name}" SELECT * FROM "{default}" {in_month}'  # noqa: S608
        connection.execute(text(move), bounds)
        connection.execute(text(f'DELETE FROM "{default}" {in_month}'), bounds)  # noqa: S608
    connection.execute(
        text(
            f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" '
            f"FOR VALUES FROM ({lower}) TO ({upper})"
        )
    )
    return name


def ensure_monthly_partitions(
    connection: Connection,
    table: str,
    months_ahead: int = MONTHS_AHEAD,
    *,
    today: date | None = None,
    wait: bool = True,
) -> list[str]:
    """Create any missing partitions from this month to ``months_ahead``, and the DEFAULT one.

    Returns the partitions made. Does nothing on SQLite, for a table that is not partitioned
    (yet), or (with ``wait=False``) when another session is changing partitions right now.
    """
    if not is_partitioned(connection, table) or not lock_partitions(connection, wait=wait):
        return []
    created = []
    this_month = month_start(today or datetime.now(UTC).date())
    for offset in range(months_ahead + 1):
        start = month_start(this_month, offset)
        if not _exists(connection, partition_name(table, start)):
            created.append(create_month_partition(connection, table, start))
    default = default_name(table)
    if not _exists(connection, default):
        connection.execute(text(f'CREATE TABLE "{default}" PARTITION OF "{table}" DEFAULT'))
        created.append(default)
    return created
