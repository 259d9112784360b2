"""A migrated PostgreSQL database of one's own, and rows placed in chosen months."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.app import migrate
from tests.support.backends import postgres_database
from ultrachat.config import load_settings
from ultrachat.storage import Database
from ultrachat.storage.ids import id_timestamp
from ultrachat.storage.partitions import create_month_partition, month_start


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[Database]:
    """A fresh, migrated PostgreSQL database (dropped afterwards)."""
    async with postgres_database() as url:
        await migrate(load_settings(database_url=url))
        db = Database(url, pool_size=2)
        try:
            yield db
        finally:
            await db.close()


def this_month(offset: int = 0) -> date:
    return month_start(datetime.now(UTC).date(), offset)


def id_at(moment: datetime) -> str:
    """A UUIDv7 whose timestamp is ``moment`` (as if the message was sent then)."""
    millis = int(moment.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | secrets.randbits(62)))


async def add_months(db: Database, table: str, *starts: date) -> None:
    def run(connection: Any) -> None:
        for start in starts:
            create_month_partition(connection, table, start)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def insert_message(
    db: Database, moment: datetime, channel_id: str, seq: int, thread_id: str | None = None
) -> str:
    message_id = id_at(moment)
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO messages (id, created_at, channel_id, seq, user_id, body, thread_id) "
                "VALUES (:id, :at, :channel, :seq, :user, 'hello', :thread)"
            ),
            {
                "id": message_id,
                "at": id_timestamp(message_id),
                "channel": channel_id,
                "seq": seq,
                "user": channel_id,
                "thread": thread_id,
            },
        )
        await conn.execute(
            text(
                "INSERT INTO channel_events "
                "(channel_id, seq, kind, actor_id, subject_id, data, created_at) "
                "VALUES (:channel, :seq, 'message.created', :channel, '', '{}', :at)"
            ),
            {"channel": channel_id, "seq": seq, "at": id_timestamp(message_id)},
        )
    return message_id


async def relations(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p')")
        )
        return {row[0] for row in result.all()}


async def count(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f'SELECT count(*) FROM "{table}"'))).scalar_one())


@contextmanager
def captured_selects(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements (and parameters) sent to the database meanwhile."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)


async def scanned_partitions(db: Database, statement: str, params: Any) -> tuple[set[str], str]:
    """The partitions PostgreSQL's plan for ``statement`` reads, and the plan itself."""
    async with db.engine.connect() as conn:
        result = await conn.exec_driver_sql("EXPLAIN " + statement, params)
        plan = "\n".join(row[0] for row in result.all())
    return set(re.findall(r" on ((?:messages|channel_events)_\w+)", plan)), plan
