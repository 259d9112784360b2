"""Monthly range partitions for PostgreSQL's time-series tables.

Partitions are named ``<table>_YYYYMM`` and cover [first of month, first of next month).
They are created ahead (this month plus ``MONTHS_AHEAD``) by ``ultrachat migrate``; a
DEFAULT partition catches anything outside them so that a write never fails for want of one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

MONTHS_AHEAD = 3
PARTITIONED_TABLES = ("messages",)


def month_start(moment: date, offset: int = 0) -> date:
    index = moment.year * 12 + (moment.month - 1) + offset
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, start: date) -> str:
    return f"{table}_{start:%Y%m}"


def ensure_monthly_partitions(
    connection: Connection, table: str, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Create any missing partitions from this month to ``months_ahead``; returns those made."""
    if connection.dialect.name != "postgresql":
        return []
    created = []
    this_month = month_start(datetime.now(UTC).date())
    for offset in range(months_ahead + 1):
        start = month_start(this_month, offset)
        end = month_start(this_month, offset + 1)
        name = partition_name(table, start)
        exists = connection.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
        if exists is None:
            connection.execute(
                text(
                    f'CREATE TABLE "{name}" PARTITION OF "{table}" '
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
            )
            created.append(name)
    default = f"{table}_default"
    if connection.execute(text("SELECT to_regclass(:n)"), {"n": default}).scalar() is None:
        connection.execute(text(f'CREATE TABLE "{default}" PARTITION OF "{table}" DEFAULT'))
        created.append(default)
    return created
