"""Partition channel_events by month on created_at (PostgreSQL); SQLite keeps its plain table.

The event log grows with every message, edit and reaction, and retention must be able to drop
a month of it at once, as it does for messages. A partitioned table's unique keys must include
the partition key, so the primary key becomes (channel_id, seq, created_at): (channel_id, seq)
stays unique because seqs come from the locked channel row (see chat/repository.next_seq).

PostgreSQL cannot partition a table in place: the rows are copied into a new partitioned
table (one partition per month they span, plus this month + 3 ahead and DEFAULT) inside the
migration's transaction, which holds the table's lock until it commits.

Revision ID: 0003_channel_events_partitions
Revises: 0002_chat
Create Date: 2026-11-26
"""

from __future__ import annotations

from datetime import date

from alembic import op
from sqlalchemy import text

from ultrachat.storage.partitions import create_month_partition, ensure_monthly_partitions

revision = "0003_channel_events_partitions"
down_revision = "0002_chat"
branch_labels = None
depends_on = None

COLUMNS = "channel_id, seq, kind, actor_id, subject_id, data, created_at"


def _create(name: str, key: str, partitioned: bool) -> None:
    op.execute(
        f"""
        CREATE TABLE {name} (
            channel_id varchar(36) NOT NULL,
            seq bigint NOT NULL,
            kind varchar(32) NOT NULL,
            actor_id varchar(36) NOT NULL,
            subject_id varchar(36) NOT NULL,
            data text NOT NULL,
            created_at timestamptz NOT NULL,
            CONSTRAINT pk_{name} PRIMARY KEY ({key})
        ){" PARTITION BY RANGE (created_at)" if partitioned else ""}
        """
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE channel_events RENAME TO channel_events_unpartitioned")
    op.execute(
        "ALTER TABLE channel_events_unpartitioned "
        "RENAME CONSTRAINT pk_channel_events TO pk_channel_events_unpartitioned"
    )
    _create("channel_events", "channel_id, seq, created_at", partitioned=True)
    months: list[date] = list(
        bind.execute(
            text(
                "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date "
                "FROM channel_events_unpartitioned"
            )
        ).scalars()
    )
    for month in sorted(months):
        create_month_partition(bind, "channel_events", month)
    ensure_monthly_partitions(bind, "channel_events")
    op.execute(
        f"INSERT INTO channel_events ({COLUMNS}) SELECT {COLUMNS} FROM channel_events_unpartitioned"  # noqa: S608
    )
    op.execute("DROP TABLE channel_events_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _create("channel_events_unpartitioned", "channel_id, seq", partitioned=False)
    op.execute(
        f"INSERT INTO channel_events_unpartitioned ({COLUMNS}) SELECT {COLUMNS} FROM channel_events"  # noqa: S608
    )
    op.execute("DROP TABLE channel_events")  # and every partition with it
    op.execute("ALTER TABLE channel_events_unpartitioned RENAME TO channel_events")
    op.execute(
        "ALTER TABLE channel_events "
        "RENAME CONSTRAINT pk_channel_events_unpartitioned TO pk_channel_events"
    )
