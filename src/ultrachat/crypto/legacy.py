"""Seal rows written before encryption at rest existed (run once, by migration 0006).

The migration turns the sealed columns into binary ones; if the database already holds rows,
this encrypts them in place, in the migration's transaction, under a first data key made
here. A database upgraded this way holds no plaintext of a sealed column afterwards.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    ColumnClause,
    Connection,
    LargeBinary,
    and_,
    bindparam,
    column,
    func,
    select,
    table,
)

from ultrachat.crypto.columns import SEALED_COLUMNS
from ultrachat.crypto.envelope import NONCE_BYTES, SealedColumn, header
from ultrachat.crypto.master import KeyProvider
from ultrachat.storage.types import UTCDateTime

_BATCH = 1000


def rows_to_seal(connection: Connection) -> int:
    total = 0
    for sealed in SEALED_COLUMNS:
        value: ColumnClause[Any] = column(sealed.column)
        query = select(func.count()).select_from(table(sealed.table, value))
        total += int(connection.scalar(query.where(value.is_not(None))) or 0)
    return total


def seal_existing_rows(connection: Connection, provider: KeyProvider) -> int:
    """Encrypt every non-null sealed value under a new primary data key; returns the count."""
    total = rows_to_seal(connection)
    if not total:
        return 0
    keys = table(
        "data_keys",
        column("id"),
        column("state"),
        column("kek_id"),
        column("wrapped", LargeBinary),
        column("uses"),
        column("created_at", UTCDateTime()),
    )
    now = datetime.now(UTC)
    key_id = connection.execute(
        keys.insert()
        .values(state="primary", kek_id=provider.key_id, uses=total, created_at=now)
        .returning(keys.c.id)
    ).scalar_one()
    raw = AESGCM.generate_key(256)
    connection.execute(
        keys.update()
        .where(keys.c.id == key_id)
        .values(wrapped=provider.wrap(raw, f"ultrachat data key {key_id}".encode()))
    )
    aead, prefix = AESGCM(raw), header(key_id)
    for sealed in SEALED_COLUMNS:
        _seal_column(connection, sealed, aead, prefix)
    return total


def _seal_column(connection: Connection, sealed: SealedColumn, aead: AESGCM, prefix: bytes) -> None:
    keys: list[ColumnClause[Any]] = [column(name) for name in sealed.key_columns]
    value = column(sealed.column, LargeBinary)
    target = table(sealed.table, *keys, value)
    rows = connection.execute(select(*keys, column(sealed.column)).select_from(target)).all()
    statement = (
        target.update()
        .where(and_(*(k == bindparam(f"k_{k.name}") for k in keys)))
        .values({sealed.column: bindparam("sealed")})
    )
    for start in range(0, len(rows), _BATCH):
        params: list[dict[str, Any]] = []
        for row in rows[start : start + _BATCH]:
            plaintext = row[-1]
            if plaintext is None:
                continue
            if isinstance(plaintext, str):
                plaintext = plaintext.encode()
            row_id = sealed.row_id(tuple(row[:-1]))
            nonce = os.urandom(NONCE_BYTES)
            ciphertext = aead.encrypt(nonce, bytes(plaintext), prefix + sealed.binding(row_id))
            params.append(
                {
                    **{f"k_{k.name}": v for k, v in zip(keys, row[:-1], strict=True)},
                    "sealed": prefix + nonce + ciphertext,
                }
            )
        if params:
            connection.execute(statement, params)
