"""The group committer's SQL (chat/group_commit.py): one statement per batch, not per message.

The same caller-owns-the-transaction rule as ``repository.py``; these live apart because they
are written for batches (arrays, COPY) and for both dialects at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.chat.models import Channel, ChannelMember, Message, MessageClientId
from ultrachat.chat.repository import by_id
from ultrachat.storage.base import Base
from ultrachat.storage.ids import is_id
from ultrachat.storage.types import UTCDateTime


async def lock_channels(
    session: AsyncSession, channel_ids: Sequence[str]
) -> dict[str, tuple[int, str, datetime | None]]:
    """Lock the channels' rows for this transaction; (last_seq, kind, archived_at) by id.

    Rows are locked in id order, the same order every batch uses, so two nodes committing
    batches that share channels wait for each other instead of deadlocking. On SQLite a
    no-op write takes the database's single write lock first, before any read.
    """
    ids = sorted({c for c in channel_ids if is_id(c)})
    if not ids:
        return {}
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(Channel).where(Channel.id.in_(ids)).values(last_seq=Channel.last_seq)
        )
        query = select(Channel.id, Channel.last_seq, Channel.kind, Channel.archived_at)
        result = await session.execute(query.where(Channel.id.in_(ids)))
    else:
        result = await session.execute(_LOCK_CHANNELS_PG, {"ids": ids})
    return {row[0]: (int(row[1]), row[2], row[3]) for row in result.all()}


# PostgreSQL forms of the batch lookups: arrays keep the statement text the same whatever the
# batch size, so it is prepared once; an IN list of N tuples would be a new statement to parse
# and plan for every batch.
_LOCK_CHANNELS_PG = text(
    "SELECT id, last_seq, kind, archived_at FROM channels"
    " WHERE id = ANY(CAST(:ids AS varchar[])) ORDER BY id FOR UPDATE"
).columns(archived_at=UTCDateTime())
_MEMBERSHIPS_PG = text(
    "SELECT m.channel_id, m.user_id FROM channel_members m"
    " JOIN unnest(CAST(:channels AS varchar[]), CAST(:users AS varchar[])) AS w(c, u)"
    " ON m.channel_id = w.c AND m.user_id = w.u"
)
_CLIENT_MSGS_PG = text(
    "SELECT k.channel_id, k.user_id, k.client_msg_id, k.message_id FROM message_client_ids k"
    " JOIN unnest(CAST(:channels AS varchar[]), CAST(:users AS varchar[]),"
    " CAST(:keys AS varchar[])) AS w(c, u, k)"
    " ON k.channel_id = w.c AND k.user_id = w.u AND k.client_msg_id = w.k"
)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def memberships(
    session: AsyncSession, pairs: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (channel_id, user_id) pairs are memberships."""
    wanted = [(c, u) for c, u in set(pairs) if is_id(c) and is_id(u)]
    if not wanted:
        return set()
    if _is_postgres(session):
        channels, users = zip(*wanted, strict=True)
        rows = await session.execute(
            _MEMBERSHIPS_PG, {"channels": list(channels), "users": list(users)}
        )
        return {(row[0], row[1]) for row in rows.all()}
    result = await session.execute(
        select(ChannelMember.channel_id, ChannelMember.user_id).where(
            tuple_(ChannelMember.channel_id, ChannelMember.user_id).in_(wanted)
        )
    )
    return {(row[0], row[1]) for row in result.all()}


async def client_msgs(
    session: AsyncSession, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """Message ids already sent under (channel_id, user_id, client_msg_id)."""
    wanted = [k for k in set(keys) if is_id(k[0])]
    if not wanted:
        return {}
    if _is_postgres(session):
        channels, users, client_ids = zip(*wanted, strict=True)
        rows = await session.execute(
            _CLIENT_MSGS_PG,
            {"channels": list(channels), "users": list(users), "keys": list(client_ids)},
        )
        return {(row[0], row[1], row[2]): row[3] for row in rows.all()}
    result = await session.execute(
        select(
            MessageClientId.channel_id,
            MessageClientId.user_id,
            MessageClientId.client_msg_id,
            MessageClientId.message_id,
        ).where(
            tuple_(
                MessageClientId.channel_id, MessageClientId.user_id, MessageClientId.client_msg_id
            ).in_(wanted)
        )
    )
    return {(row[0], row[1], row[2]): row[3] for row in result.all()}


async def messages_by_id(session: AsyncSession, message_ids: Sequence[str]) -> dict[str, Message]:
    ids = [m for m in set(message_ids) if is_id(m)]
    if not ids:
        return {}
    condition = or_(*(by_id(m) for m in ids))  # type: ignore[arg-type]
    result = await session.scalars(select(Message).where(condition))
    return {m.id: m for m in result.all()}


async def set_last_seqs(session: AsyncSession, last_seqs: dict[str, int]) -> None:
    """Store each channel's new last seq: one executemany, not a round trip per channel."""
    if not last_seqs:
        return
    table = cast(Table, Channel.__table__)
    statement = (
        update(table).where(table.c.id == bindparam("channel")).values(last_seq=bindparam("seq"))
    )
    connection = await session.connection()
    await connection.execute(
        statement, [{"channel": c, "seq": s} for c, s in sorted(last_seqs.items())]
    )


async def insert_rows(session: AsyncSession, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Write many rows at once: COPY on PostgreSQL, a multi-row INSERT on SQLite.

    COPY streams the rows in one command inside the current transaction; it is what lets a
    group-commit batch of hundreds of messages cost about as much as a handful.
    """
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await session.execute(insert(model), rows)
        return
    table = cast(Table, model.__table__)
    columns = [column.name for column in table.columns]
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table.name,
        records=[tuple(row.get(name) for name in columns) for row in rows],
        columns=columns,
    )
