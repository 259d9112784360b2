"""Which data keys exist, how many rows each one seals, and retiring a key with none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from ultrachat.crypto.columns import SEALED_COLUMNS
from ultrachat.crypto.envelope import HEADER
from ultrachat.crypto.models import PRIMARY, RETIRED, DataKey
from ultrachat.crypto.rewrap import table_of
from ultrachat.errors import Conflict, NotFound
from ultrachat.storage import Database


@dataclass(slots=True)
class KeyUsage:
    id: int
    state: str
    created_at: datetime
    uses: int
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _key_bytes(key_id: int) -> bytes:
    return key_id.to_bytes(4, "big")


async def key_usage(db: Database) -> list[KeyUsage]:
    """Every data key with its row count per sealed column (one scan of each column)."""
    async with db.sessions() as session:
        keys = (await session.scalars(select(DataKey).order_by(DataKey.id))).all()
        usage = {k.id: KeyUsage(k.id, k.state, k.created_at, k.uses) for k in keys}
        for column in SEALED_COLUMNS:
            table = table_of(column)
            # The header's 4 key-id bytes (after the version byte), read without decrypting.
            key_bytes = func.substr(table.c[column.column], 2, HEADER.size - 1)
            query = (
                select(key_bytes, func.count())
                .where(table.c[column.column].is_not(None))
                .group_by(key_bytes)
            )
            for raw, count in (await session.execute(query)).all():
                key_id = int.from_bytes(bytes(raw), "big")
                if key_id in usage:
                    usage[key_id].rows[column.name] = int(count)
    return list(usage.values())


async def rows_under(db: Database, key_id: int) -> dict[str, int]:
    """How many rows of each sealed column still use ``key_id`` (stops at the first hit)."""
    found: dict[str, int] = {}
    async with db.sessions() as session:
        for column in SEALED_COLUMNS:
            table = table_of(column)
            value = table.c[column.column]
            query = select(func.count()).select_from(
                select(value)
                .where(func.substr(value, 2, HEADER.size - 1) == _key_bytes(key_id))
                .limit(1)
                .subquery()
            )
            if count := int(await session.scalar(query) or 0):
                found[column.name] = count
    return found


async def retire(db: Database, key_id: int, grace: timedelta = timedelta(0)) -> None:
    """Erase a data key for good; refused while it is primary, while a node may still be
    encrypting with it (``grace``: the key refresh interval plus a margin after its successor
    took over), or while any row uses it."""
    async with db.sessions() as session:
        key = await session.get(DataKey, key_id)
        successor = await session.scalar(
            select(func.min(DataKey.created_at)).where(DataKey.id > key_id)
        )
    if key is None or key.state == RETIRED:
        raise NotFound(f"no live data key {key_id}")
    if key.state == PRIMARY:
        raise Conflict(f"data key {key_id} is the primary key; rotate first (keys rotate-data)")
    if successor is not None and datetime.now(UTC) - successor < grace:
        wait = (successor + grace - datetime.now(UTC)).total_seconds()
        raise Conflict(
            f"data key {key_id} was primary until moments ago and nodes may still use it;"
            f" try again in {wait:.0f} s"
        )
    in_use = await rows_under(db, key_id)
    if in_use:
        where = ", ".join(sorted(in_use))
        raise Conflict(
            f"data key {key_id} still seals rows in {where}; run `ultrachat keys rewrap` first"
        )
    async with db.transaction() as session:
        key = await session.get(DataKey, key_id, with_for_update=True)
        if key is None or key.state == PRIMARY:
            raise Conflict(f"data key {key_id} changed meanwhile; try again")
        key.state, key.wrapped, key.retired_at = RETIRED, None, datetime.now(UTC)
