"""All of audit's SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.audit.chain import chain_hash, content
from ultrachat.audit.models import AuditHead, AuditRecord

HEAD_ID = 1


async def append(session: AsyncSession, record: AuditRecord) -> AuditRecord:
    """Chain ``record`` after the head and insert it, inside the caller's transaction.

    The first statement writes the head row: PostgreSQL locks that row until commit, SQLite
    takes its one write lock, so concurrent appends (any node, any process) take turns and the
    seqs they get are gap-free. ``seq``, ``prev_hash`` and ``hash`` are filled in here.
    """
    await session.execute(
        update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq + 1)
    )
    seq, prev_hash = (
        await session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID))
    ).one()
    record.seq = seq
    # Stamped under the lock, so time order follows seq order.
    record.created_at = datetime.now(UTC)
    record.prev_hash = prev_hash
    record.hash = chain_hash(prev_hash, record_content(record))
    session.add(record)
    await session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(hash=record.hash))
    await session.flush()
    return record


def record_content(record: AuditRecord) -> dict[str, object]:
    return content(
        id=record.id,
        seq=record.seq,
        created_at=record.created_at,
        event=record.event,
        actor_id=record.actor_id,
        target_type=record.target_type,
        target_id=record.target_id,
        ip=record.ip,
        request_id=record.request_id,
        details=record.details,
    )


async def head(session: AsyncSession) -> tuple[int, str]:
    row = (
        await session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID))
    ).one()
    return int(row[0]), str(row[1])


async def walk(
    session: AsyncSession, since: datetime | None = None, after: int = 0, page: int = 1000
) -> AsyncIterator[AuditRecord]:
    """Every record (from ``since``, after seq ``after``) in seq order, a page at a time."""
    while True:
        stmt = select(AuditRecord).where(AuditRecord.seq > after)
        if since is not None:
            stmt = stmt.where(AuditRecord.created_at >= since)
        rows = (await session.scalars(stmt.order_by(AuditRecord.seq).limit(page))).all()
        for row in rows:
            yield row
        if len(rows) < page:
            return
        after = rows[-1].seq
        session.expunge_all()


async def seq_with_hash(session: AsyncSession, hash_: str) -> int | None:
    found = await session.scalar(select(AuditRecord.seq).where(AuditRecord.hash == hash_).limit(1))
    return None if found is None else int(found)


async def query(
    session: AsyncSession,
    *,
    actor_id: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    ascending: bool = False,
) -> Sequence[AuditRecord]:
    stmt = select(AuditRecord)
    if actor_id:
        stmt = stmt.where(AuditRecord.actor_id == actor_id)
    if event:
        stmt = stmt.where(AuditRecord.event == event)
    if since is not None:
        stmt = stmt.where(AuditRecord.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.created_at < until)
    order = AuditRecord.seq.asc() if ascending else AuditRecord.seq.desc()
    return (await session.scalars(stmt.order_by(order).limit(limit))).all()
