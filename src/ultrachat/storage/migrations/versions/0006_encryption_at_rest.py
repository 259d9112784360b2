"""Encryption at rest: data keys, re-wrap progress, and binary sealed columns.

messages.body, channel_events.data and signing_keys.private_pem now hold ciphertext
(crypto/envelope.py). PostgreSQL changes their type to bytea; SQLite stores BLOBs in the
existing columns as they are. Rows already present are encrypted here (crypto/legacy.py),
which needs the master key: ``ultrachat migrate`` provides it.

Revision ID: 0006_encryption_at_rest
Revises: 0005_audit_log
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from ultrachat.crypto.legacy import rows_to_seal, seal_existing_rows
from ultrachat.storage.types import UTCDateTime

revision = "0006_encryption_at_rest"
down_revision = "0005_audit_log"
branch_labels = None
depends_on = None

_SEALED = (("messages", "body"), ("channel_events", "data"), ("signing_keys", "private_pem"))


def upgrade() -> None:
    bind = op.get_bind()
    # Checked before any DDL: SQLite's driver commits DDL as it goes, so a refusal after it
    # would leave a half-migrated schema.
    provider = None
    if rows_to_seal(bind):
        provider_factory = context.config.attributes.get("key_provider")
        if provider_factory is None:
            raise RuntimeError(
                "existing rows must be encrypted with the master key: run `ultrachat migrate`"
            )
        provider = provider_factory()
    op.create_table(
        "data_keys",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("uses", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_data_keys"),
    )
    op.create_index(
        "uq_data_keys_one_primary",
        "data_keys",
        ["state"],
        unique=True,
        postgresql_where=sa.text("state = 'primary'"),
        sqlite_where=sa.text("state = 'primary'"),
    )
    op.create_table(
        "rewrap_runs",
        sa.Column("column_name", sa.String(64), nullable=False),
        sa.Column("target_key_id", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.String(400), nullable=True),
        sa.Column("scanned", sa.BigInteger(), nullable=False),
        sa.Column("rewrapped", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("column_name", name="pk_rewrap_runs"),
    )
    if bind.dialect.name == "postgresql":
        for table, column in _SEALED:
            op.execute(
                f"ALTER TABLE {table} ALTER COLUMN {column} TYPE bytea"
                f" USING convert_to({column}, 'UTF8')"
            )
    if provider is not None:
        seal_existing_rows(bind, provider)


def downgrade() -> None:
    raise NotImplementedError("encrypted columns cannot be turned back into plaintext")
