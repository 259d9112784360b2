"""EXPLAIN the chat queries on a database with several months of partitions (docs/database.md).

Fills a scratch database with seven months of messages and events (the six past months get
partitions of their own), runs the real repository functions, and prints PostgreSQL's plan
(EXPLAIN ANALYZE, costs and timings off) of each SELECT they sent, with its parameters.

    ULTRACHAT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/uc_explain \\
        uv run python bench/partition_explain.py --fill

The database must exist; --fill migrates it and adds the rows (run it once).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.chat import repository
from ultrachat.config import load_settings
from ultrachat.storage import Database
from ultrachat.storage.migrate import upgrade
from ultrachat.storage.partitions import PARTITIONED_TABLES, create_month_partition, month_start

CHANNELS = 100
PER_MONTH = 500  # messages per channel per month
PAST_MONTHS = 6

# A UUIDv7 whose time is ``ts`` (to the millisecond), as ultrachat.storage.ids makes them.
_FILL = """
INSERT INTO {table}
SELECT {columns}
FROM (
    SELECT c.id AS channel_id, c.n, m.k, i,
           date_trunc('milliseconds', m.start + (m.stop - m.start) * (i::float / :per)) AS ts,
           md5(random()::text) AS r
    FROM (SELECT n, lpad(to_hex(n), 8, '0') || '-0000-7000-8000-000000000000' AS id
          FROM generate_series(1, :channels) n) c
    CROSS JOIN (
        SELECT k, date_trunc('month', now()) - make_interval(months => k) AS start,
               least(date_trunc('month', now()) - make_interval(months => k - 1), now()) AS stop
        FROM generate_series(0, :past) k) m
    CROSS JOIN generate_series(0, :per - 1) i
) s,
LATERAL (SELECT lpad(to_hex((extract(epoch FROM s.ts) * 1000)::bigint), 12, '0') AS h) t
"""
_MESSAGE = (
    "substr(t.h, 1, 8) || '-' || substr(t.h, 9, 4) || '-7' || substr(s.r, 1, 3) || '-8' "
    "|| substr(s.r, 4, 3) || '-' || substr(s.r, 7, 12), s.ts, s.channel_id, "
    "(:past - s.k) * :per + s.i + 1, s.channel_id, 'hello', NULL, NULL, NULL, NULL"
)
_EVENT = (
    "s.channel_id, (:past - s.k) * :per + s.i + 1, 'message.created', s.channel_id, '', '{}', s.ts"
)


async def fill(db: Database) -> None:
    await upgrade(db)
    this_month = month_start(datetime.now(UTC).date())

    def months(connection: Any) -> None:
        for table in PARTITIONED_TABLES:
            for offset in range(PAST_MONTHS, 0, -1):
                create_month_partition(connection, table, month_start(this_month, -offset))

    params = {"channels": CHANNELS, "per": PER_MONTH, "past": PAST_MONTHS}
    async with db.engine.begin() as conn:
        await conn.run_sync(months)
        for table, columns in (("messages", _MESSAGE), ("channel_events", _EVENT)):
            await conn.execute(text(_FILL.format(table=table, columns=columns)), params)
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE messages"))
        await conn.execute(text("VACUUM ANALYZE channel_events"))


async def explain(
    db: Database, title: str, call: Callable[[AsyncSession], Awaitable[object]]
) -> None:
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with db.sessions() as session:
            await call(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    for statement, params in seen:
        async with db.engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, params
            )
            plan = "\n".join(row[0] for row in result.all())
        print(f"### {title}\n\n```sql\n{' '.join(statement.split())}\n-- {params}\n```\n")
        print(f"```\n{plan}\n```\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", action="store_true", help="migrate and add the rows first")
    args = parser.parse_args()
    db = Database(load_settings().effective_database_url)
    try:
        if args.fill:
            await fill(db)
        channel = f"{7:08x}-0000-7000-8000-000000000000"
        async with db.engine.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        text(
                            "SELECT id FROM messages WHERE channel_id = :c AND seq IN (:a, :b, :z)"
                        ),
                        {"c": channel, "a": 10, "b": 1600, "z": (PAST_MONTHS + 1) * PER_MONTH},
                    )
                )
                .scalars()
                .all()
            )
        newest_id, root_id = max(ids), sorted(ids)[1]

        await explain(db, "A message by id", lambda s: repository.get_message(s, newest_id))
        await explain(db, "Messages by id (batch)", lambda s: repository.messages_by_id(s, ids))
        await explain(
            db,
            "The newest page of a channel",
            lambda s: repository.message_page(s, channel, None, None, 50),
        )
        await explain(
            db,
            "A page before a seq (scrolling back)",
            lambda s: repository.message_page(s, channel, None, 1000, 50),
        )
        await explain(
            db,
            "A page after a seq (catching up)",
            lambda s: repository.message_page(s, channel, 3000, None, 50),
        )
        await explain(
            db, "A thread's replies", lambda s: repository.thread_replies(s, channel, root_id)
        )
        await explain(db, "Event replay", lambda s: repository.events_after(s, channel, 3000, 100))
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
