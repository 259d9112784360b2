"""Chat: channels, members, the event log, messages (partitioned in PostgreSQL) and more.

Revision ID: 0002_chat
Revises: 0001_auth
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ultrachat.storage.partitions import ensure_monthly_partitions
from ultrachat.storage.types import UTCDateTime

revision = "0002_chat"
down_revision = "0001_auth"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _messages_postgres() -> None:
    # Unique keys on a partitioned table must include the partition key (created_at).
    # (channel_id, seq) is still unique: seqs come from the locked channel row. (Until 0003
    # partitioned it too, channel_events' primary key (channel_id, seq) also enforced it.)
    op.execute(
        """
        CREATE TABLE messages (
            id varchar(36) NOT NULL,
            created_at timestamptz NOT NULL,
            channel_id varchar(36) NOT NULL,
            seq bigint NOT NULL,
            user_id varchar(36) NOT NULL,
            body text,
            thread_id varchar(36),
            edited_at timestamptz,
            deleted_at timestamptz,
            client_msg_id varchar(64),
            CONSTRAINT pk_messages PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at)
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX ix_messages_channel_id_seq ON messages (channel_id, seq, created_at)"
    )
    ensure_monthly_partitions(op.get_bind(), "messages")


def _messages_sqlite() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("seq", Seq, nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("thread_id", sa.String(36), nullable=True),
        sa.Column("edited_at", UTCDateTime(), nullable=True),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.Column("client_msg_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", "created_at", name="pk_messages"),
    )
    op.create_index("ix_messages_channel_id_seq", "messages", ["channel_id", "seq"], unique=True)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(80), nullable=True),
        sa.Column("topic", sa.String(250), nullable=False),
        sa.Column("dm_key", sa.String(400), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.Column("last_seq", Seq, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_channels"),
        sa.UniqueConstraint("dm_key", name="uq_channels_dm_key"),
    )
    op.create_table(
        "channel_members",
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("joined_at", UTCDateTime(), nullable=False),
        sa.Column("last_read_seq", Seq, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "user_id", name="pk_channel_members"),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name="fk_channel_members_channel_id_channels",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_channel_members_user_id", "channel_members", ["user_id"])
    op.create_table(
        "channel_events",
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("seq", Seq, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(36), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "seq", name="pk_channel_events"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _messages_postgres()
    else:
        _messages_sqlite()
    op.create_index("ix_messages_thread_id", "messages", ["thread_id"])
    op.create_index("ix_messages_user_id", "messages", ["user_id"])
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_table(
        "message_client_ids",
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("client_msg_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "channel_id", "user_id", "client_msg_id", name="pk_message_client_ids"
        ),
    )
    op.create_table(
        "reactions",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("emoji", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "user_id", "emoji", name="pk_reactions"),
    )
    op.create_table(
        "pins",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("pinned_by", sa.String(36), nullable=False),
        sa.Column("pinned_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_pins"),
    )
    op.create_index("ix_pins_channel_id", "pins", ["channel_id"])
    op.create_table(
        "mentions",
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("seq", Seq, nullable=False),
        sa.PrimaryKeyConstraint("message_id", "user_id", name="pk_mentions"),
    )
    op.create_index("ix_mentions_user_channel_seq", "mentions", ["user_id", "channel_id", "seq"])


def downgrade() -> None:
    for table in (
        "mentions",
        "pins",
        "reactions",
        "message_client_ids",
        "messages",
        "channel_events",
        "channel_members",
        "channels",
    ):
        op.drop_table(table)
