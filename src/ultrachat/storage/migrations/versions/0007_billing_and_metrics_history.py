"""Plans and subscriptions (business metrics), and the metrics snapshot history.

PostgreSQL partitions metrics_history by month on created_at, like the other time series.

Revision ID: 0007_billing_and_metrics_history
Revises: 0006_encryption_at_rest
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from ultrachat.storage.partitions import ensure_monthly_partitions
from ultrachat.storage.types import UTCDateTime

revision = "0007_billing_and_metrics_history"
down_revision = "0006_encryption_at_rest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "plans",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("monthly_price_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_plans"),
        sa.UniqueConstraint("name", name="uq_plans_name"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("customer", sa.String(120), nullable=False),
        sa.Column("monthly_price_cents", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name="fk_subscriptions_plan_id_plans"),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_started_at", "subscriptions", ["started_at"])
    op.create_index("ix_subscriptions_cancelled_at", "subscriptions", ["cancelled_at"])
    partitioning: dict[str, Any] = (
        {"postgresql_partition_by": "RANGE (created_at)"} if postgres else {}
    )
    op.create_table(
        "metrics_history",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", "created_at", name="pk_metrics_history"),
        **partitioning,
    )
    op.create_index("ix_metrics_history_created_at", "metrics_history", ["created_at"])
    if postgres:
        ensure_monthly_partitions(bind, "metrics_history")


def downgrade() -> None:
    op.drop_table("metrics_history")
    op.drop_table("subscriptions")
    op.drop_table("plans")
