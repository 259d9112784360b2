"""The audit log (a SHA-256 hash chain) and its one-row head; admin role needs no schema.

PostgreSQL partitions audit_log by month on created_at, like messages and channel_events; the
primary key therefore includes created_at. SQLite keeps a plain table.

Revision ID: 0005_audit_log
Revises: 0004_user_preferences
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from ultrachat.audit.chain import GENESIS
from ultrachat.storage.partitions import ensure_monthly_partitions
from ultrachat.storage.types import UTCDateTime

revision = "0005_audit_log"
down_revision = "0004_user_preferences"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    partitioning: dict[str, Any] = (
        {"postgresql_partition_by": "RANGE (created_at)"} if postgres else {}
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(48), nullable=False),
        sa.Column("actor_id", sa.String(36), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(128), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", "created_at", name="pk_audit_log"),
        **partitioning,
    )
    op.create_index("ix_audit_log_seq", "audit_log", ["seq"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor_id", "created_at"])
    op.create_index("ix_audit_log_event", "audit_log", ["event", "created_at"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    if postgres:
        ensure_monthly_partitions(bind, "audit_log")


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_log")  # and, in PostgreSQL, every partition with it
