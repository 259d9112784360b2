"""The re-wrap job: re-encrypt every sealed row to the primary data key, online.

It walks each sealed column in key order, a batch per transaction, and rewrites only the
rows whose header names another key. Each rewrite is a compare-and-set on the old
ciphertext, so a concurrent edit (already under the primary key) is never overwritten; reads
go on throughout, because every live key stays loaded until it is retired. The cursor and
counts commit with the batch, so after a crash the job resumes after its last batch.

One runner at a time, across nodes and the CLI: a lease on the column's progress row,
renewed by every batch. The job starts a grace period after the rotation (one key refresh
interval plus a margin), by when every node encrypts with the new key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Table, and_, bindparam, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.crypto.columns import SEALED_COLUMNS
from ultrachat.crypto.envelope import CorruptCiphertext, SealedColumn, key_id_of
from ultrachat.crypto.keyring import DataKeyRing
from ultrachat.crypto.models import ACTIVE, PRIMARY, DataKey, RewrapRun
from ultrachat.metrics.crypto import REWRAP_PROGRESS, REWRAP_ROWS
from ultrachat.storage import Database
from ultrachat.storage.base import Base

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Progress:
    column: str
    target_key_id: int
    scanned: int
    rewrapped: int
    corrupt: int
    total: int
    finished: bool
    runner: str


ProgressListener = Callable[[Progress], None]


def table_of(column: SealedColumn) -> Table:
    import ultrachat.models  # noqa: F401  (registers every table on the metadata)

    return Base.metadata.tables[column.table]


class RewrapJob:
    def __init__(
        self,
        db: Database,
        ring: DataKeyRing,
        *,
        owner: str,
        batch_size: int = 500,
        grace: timedelta = timedelta(seconds=0),
        on_progress: ProgressListener | None = None,
    ) -> None:
        self._db = db
        self._ring = ring
        self._owner = owner
        self._batch = batch_size
        self._grace = grace
        self._on_progress = on_progress
        self._corrupt: dict[str, int] = {}

    async def pending(self) -> bool:
        """Whether any row may still be under a key other than the primary."""
        async with self._db.sessions() as session:
            keys = (await session.execute(select(DataKey.id, DataKey.state))).all()
            runs = {r.column_name: r for r in (await session.scalars(select(RewrapRun))).all()}
        primary = next((k for k, state in keys if state == PRIMARY), None)
        if primary is None or not any(state == ACTIVE for _, state in keys):
            return False
        return any(
            (run := runs.get(c.name)) is None
            or run.target_key_id != primary
            or run.finished_at is None
            for c in SEALED_COLUMNS
        )

    async def run(self) -> list[Progress]:
        """Re-wrap every sealed column to the current primary; returns each one's progress.

        A column another runner holds is reported as it stands, unfinished; call again.
        """
        await self._ring.refresh()
        await self.wait_for_grace()
        return [await self._run_column(column) for column in SEALED_COLUMNS]

    async def wait_for_grace(self) -> None:
        """Sleep until every node encrypts with the primary (a refresh interval after it was
        made), so that no row is written under the old key behind the job's back."""
        async with self._db.sessions() as session:
            created = await session.scalar(
                select(DataKey.created_at).where(DataKey.id == self._ring.primary_id)
            )
        if created is not None:
            delay = (created + self._grace - datetime.now(UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _run_column(self, column: SealedColumn) -> Progress:
        target = self._ring.primary_id
        progress = await self._claim(column, target)
        while progress.runner == self._owner and not progress.finished:
            progress = await self._step(column, target)
        return progress

    async def _claim(self, column: SealedColumn, target: int) -> Progress:
        for _attempt in range(3):
            try:
                return await self._try_claim(column, target)
            except IntegrityError:
                continue  # another runner made the column's row just now: claim it anew
        raise RuntimeError(f"could not claim the re-wrap of {column.name}")

    async def _try_claim(self, column: SealedColumn, target: int) -> Progress:
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            await _write_lock(session, column)
            run = await session.get(RewrapRun, column.name, with_for_update=True)
            if run is None or run.target_key_id != target:
                total = await self._count(session, column)
                if run is None:
                    run = RewrapRun(column_name=column.name)
                    session.add(run)
                run.target_key_id, run.cursor, run.total = target, None, total
                run.scanned, run.rewrapped, run.started_at = 0, 0, now
                run.finished_at, run.lease_owner, run.lease_until = None, "", None
            free = run.lease_until is None or run.lease_until < now or run.lease_owner == ""
            if run.finished_at is None and (free or run.lease_owner == self._owner):
                run.lease_owner, run.lease_until = self._owner, now + LEASE
            return self._report(column, run)

    async def _step(self, column: SealedColumn, target: int) -> Progress:
        table = table_of(column)
        bound = column.row_keys
        async with self._db.transaction() as session:
            await _write_lock(session, column)
            run = await session.get(RewrapRun, column.name, with_for_update=True)
            if run is None or run.lease_owner != self._owner or run.target_key_id != target:
                # The lease passed to another runner, or a newer rotation reset the run.
                return Progress(column.name, target, 0, 0, 0, 0, False, "")
            query = select(*(table.c[k] for k in column.key_columns), table.c[column.column])
            if run.cursor is not None:
                after = orjson.loads(run.cursor)
                query = query.where(tuple_(*(table.c[k] for k in bound)) > tuple_(*after))
            order = [table.c[k] for k in bound]
            rows = (await session.execute(query.order_by(*order).limit(self._batch))).all()
            await self._ring.ensure_loaded(r[-1] for r in rows if r[-1] is not None)
            changes = self._rewrap(column, target, rows)
            if changes:
                await self._write(session, table, column, changes)
            run.scanned += len(rows)
            run.rewrapped += len(changes)
            if rows:
                run.cursor = orjson.dumps(list(rows[-1][: len(bound)])).decode()
            if len(rows) < self._batch:
                run.finished_at, run.lease_owner, run.lease_until = datetime.now(UTC), "", None
            else:
                run.lease_until = datetime.now(UTC) + LEASE
            progress = self._report(column, run)
        REWRAP_ROWS.labels(column.name, "scanned").inc(len(rows))
        REWRAP_ROWS.labels(column.name, "rewrapped").inc(len(changes))
        return progress

    def _rewrap(self, column: SealedColumn, target: int, rows: Any) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        for row in rows:
            blob: bytes | None = row[-1]
            if blob is None:
                continue
            key = tuple(row[:-1])
            row_id = column.row_id(key)
            try:
                if key_id_of(column, row_id, blob) == target:
                    continue
                plaintext = self._ring.decrypt(column, row_id, blob)
            except CorruptCiphertext:
                # Left as it is, and counted: re-encrypting would launder the damage.
                self._corrupt[column.name] = self._corrupt.get(column.name, 0) + 1
                continue
            new = self._ring.encrypt(column, row_id, plaintext)
            change = {
                f"k_{name}": value for name, value in zip(column.key_columns, key, strict=True)
            }
            changes.append({**change, "old": blob, "new": new})
        return changes

    async def _write(
        self,
        session: AsyncSession,
        table: Table,
        column: SealedColumn,
        changes: list[dict[str, Any]],
    ) -> None:
        value = table.c[column.column]
        condition = and_(
            *(table.c[k] == bindparam(f"k_{k}") for k in column.key_columns),
            value == bindparam("old"),  # compare-and-set: a concurrent edit wins
        )
        statement = update(table).where(condition).values({column.column: bindparam("new")})
        connection = await session.connection()
        await connection.execute(statement.execution_options(synchronize_session=False), changes)

    async def _count(self, session: AsyncSession, column: SealedColumn) -> int:
        table = table_of(column)
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)

    def _report(self, column: SealedColumn, run: RewrapRun) -> Progress:
        done = run.finished_at is not None
        ratio = 1.0 if done else min(1.0, run.scanned / run.total) if run.total else 0.0
        REWRAP_PROGRESS.labels(column.name).set(ratio)
        progress = Progress(
            column.name,
            run.target_key_id,
            run.scanned,
            run.rewrapped,
            self._corrupt.get(column.name, 0),
            max(run.total, run.scanned),
            done,
            run.lease_owner if not done else "",
        )
        if self._on_progress is not None:
            self._on_progress(progress)
        return progress


async def _write_lock(session: AsyncSession, column: SealedColumn) -> None:
    """On SQLite, take the database's write lock before reading the run row.

    ``FOR UPDATE`` means nothing there: two runners would both read a free lease (or no row)
    and both write. A no-op write first makes the second wait for the first to commit, then
    read what it wrote. PostgreSQL's row lock (and, for a missing row, the primary key) does
    this already.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(RewrapRun)
            .where(RewrapRun.column_name == column.name)
            .values(column_name=RewrapRun.column_name)
        )
