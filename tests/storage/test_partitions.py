"""PostgreSQL partitions: created ahead, kept topped up by maintenance, retired by retention,
and pruned by the queries by id and by channel. Each test has a database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from prometheus_client import REGISTRY
from sqlalchemy import text

from tests.storage.partitioning import (
    add_months,
    captured_selects,
    count,
    insert_message,
    migrated_postgres,
    relations,
    scanned_partitions,
    this_month,
)
from tests.support.backends import postgres_database
from ultrachat.chat import repository
from ultrachat.storage import Database, new_id
from ultrachat.storage.maintenance import PartitionMaintenance
from ultrachat.storage.migrate import _config, upgrade
from ultrachat.storage.partition_admin import drop_older_than, list_partitions, retention_cutoff
from ultrachat.storage.partitions import (
    MONTHS_AHEAD,
    PARTITIONED_TABLES,
    month_start,
    partition_name,
    utc_midnight,
)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with migrated_postgres() as database:
        yield database


@pytest.fixture
async def maintenance(db: Database) -> AsyncIterator[PartitionMaintenance]:
    worker = PartitionMaintenance(db.url)
    try:
        yield worker
    finally:
        await worker.stop()


def _months(first: int, last: int) -> list[date]:
    return [this_month(offset) for offset in range(first, last + 1)]


async def test_migrate_creates_this_month_and_three_ahead_and_a_default(db: Database) -> None:
    assert MONTHS_AHEAD == 3
    found = await list_partitions(db.engine)
    for table in PARTITIONED_TABLES:
        mine = [p for p in found if p.table == table]
        monthly = [(p.name, p.lower, p.upper) for p in mine if not p.is_default]
        assert monthly == [
            (partition_name(table, m), utc_midnight(m), utc_midnight(month_start(m, 1)))
            for m in _months(0, 3)
        ]
        [default] = [p for p in mine if p.is_default]
        assert default.name == f"{table}_default"
        assert all(p.rows == 0 and p.size_bytes > 0 for p in mine)


async def test_maintenance_recreates_a_missing_partition_and_keeps_ahead_of_time(
    db: Database, maintenance: PartitionMaintenance
) -> None:
    missing = partition_name("messages", this_month(3))
    async with db.engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE {missing}"))

    report = await maintenance.run_once()
    assert report.created == [missing]
    assert report.failed == []
    assert missing in await relations(db)

    # Five months later (a server that was never restarted), the next run tops up again.
    later = this_month(5)
    report = await maintenance.run_once(today=later)
    expected = [partition_name(t, m) for t in PARTITIONED_TABLES for m in _months(5, 8)]
    assert report.created == expected
    assert (await maintenance.run_once(today=later)).created == []


async def test_a_new_partition_takes_its_rows_from_the_default_one(
    db: Database, maintenance: PartitionMaintenance
) -> None:
    channel = new_id()
    far = utc_midnight(this_month(6)) + timedelta(days=2)
    message_id = await insert_message(db, far, channel, 1)
    assert await count(db, "messages_default") == 1

    report = await maintenance.run_once(today=this_month(4))
    assert partition_name("messages", this_month(6)) in report.created
    assert await count(db, "messages_default") == 0
    assert await count(db, partition_name("messages", this_month(6))) == 1
    async with db.sessions() as session:
        moved = await repository.get_message(session, message_id)
    assert moved is not None and moved.channel_id == channel


async def test_the_default_rows_gauge_counts_a_stray_row(
    db: Database, maintenance: PartitionMaintenance
) -> None:
    await insert_message(db, datetime(2001, 1, 1, tzinfo=UTC), new_id(), 1)

    report = await maintenance.run_once()
    assert report.default_rows == {
        "messages": 1,
        "channel_events": 1,
        "audit_log": 0,
        "metrics_history": 0,
    }

    def gauge(table: str) -> float | None:
        return REGISTRY.get_sample_value("ultrachat_partition_default_rows", {"table": table})

    assert gauge("messages") == 1
    assert gauge("channel_events") == 1


async def test_retention_drops_only_partitions_entirely_older_and_keeps_recent_rows(
    db: Database,
) -> None:
    for table in PARTITIONED_TABLES:
        await add_months(db, table, *_months(-6, -1))
    channel = new_id()
    kept = []
    for seq, offset in enumerate((-6, -5, -4, -3, -1, 0), start=1):
        message_id = await insert_message(
            db, utc_midnight(this_month(offset)) + timedelta(hours=1), channel, seq
        )
        if offset >= -3:
            kept.append(message_id)
    stray = await insert_message(db, datetime(2001, 1, 1, tzinfo=UTC), channel, 99)

    dropped = await drop_older_than(db.engine, 3)

    gone = [partition_name(t, m) for t in PARTITIONED_TABLES for m in _months(-6, -4)]
    assert dropped == gone
    remaining = await relations(db)
    assert not remaining & set(gone)
    for table in PARTITIONED_TABLES:
        assert {partition_name(table, m) for m in _months(-3, 3)} <= remaining
        assert f"{table}_default" in remaining
    async with db.sessions() as session:
        page = await repository.message_page(session, channel, None, None, 50)
        events = await repository.events_after(session, channel, 0, 50)
    assert [m.id for m in page] == [*kept, stray], "recent rows and the DEFAULT's stay"
    assert sorted(e.seq for e in events) == [4, 5, 6, 99]
    # Nothing left to drop: a second run is a no-op.
    assert await drop_older_than(db.engine, 3) == []


async def test_retention_never_drops_the_current_month_or_the_default(db: Database) -> None:
    for table in PARTITIONED_TABLES:
        await add_months(db, table, this_month(-1))
    dropped = await drop_older_than(db.engine, 1)
    assert dropped == [], "last month is not entirely older than one month yet"
    next_month = this_month(1)
    dropped = await drop_older_than(db.engine, 1, today=next_month)
    assert dropped == [partition_name(t, this_month(-1)) for t in PARTITIONED_TABLES]
    remaining = await relations(db)
    for table in PARTITIONED_TABLES:
        assert partition_name(table, this_month(0)) in remaining
        assert f"{table}_default" in remaining
    with pytest.raises(ValueError, match="at least 1"):
        await drop_older_than(db.engine, 0)


async def test_retention_finishes_a_run_that_stopped_between_detach_and_drop(
    db: Database,
) -> None:
    old = partition_name("messages", this_month(-4))
    await add_months(db, "messages", this_month(-4))
    async with db.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE messages DETACH PARTITION {old}"))
    assert await drop_older_than(db.engine, 2) == [old]
    assert old not in await relations(db)


async def test_retention_detaches_concurrently_when_there_is_no_default(db: Database) -> None:
    # DETACH ... CONCURRENTLY refuses tables with a DEFAULT partition and transaction blocks.
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE messages_default"))
    await add_months(db, "messages", this_month(-3))
    assert await drop_older_than(db.engine, 1) == [partition_name("messages", this_month(-3))]


async def test_maintenance_applies_the_retention_setting(db: Database) -> None:
    await add_months(db, "channel_events", this_month(-14), this_month(-12))
    worker = PartitionMaintenance(db.url, retention_months=12)
    try:
        report = await worker.run_once()
    finally:
        await worker.stop()
    assert report.dropped == [partition_name("channel_events", this_month(-14))]
    assert retention_cutoff(12) == utc_midnight(this_month(-12))


async def test_lookups_by_id_and_by_channel_prune_partitions(db: Database) -> None:
    for table in PARTITIONED_TABLES:
        await add_months(db, table, *_months(-3, -1))
    channel = new_id()
    two_months_ago = utc_midnight(this_month(-2)) + timedelta(days=3)
    old_root = await insert_message(db, two_months_ago, channel, 1)
    now = datetime.now(UTC)
    recent = [
        await insert_message(db, now - timedelta(minutes=60 - i), channel, i + 2, old_root)
        for i in range(55)
    ]
    here = partition_name("messages", this_month(0))
    older = {partition_name("messages", this_month(offset)) for offset in (-3, -2)}

    with captured_selects(db.engine) as selects:
        async with db.sessions() as session:
            assert (await repository.get_message(session, recent[-1])) is not None
            page = await repository.message_page(session, channel, None, None, 50)
            await repository.thread_replies(session, channel, old_root)
    assert [m.id for m in page] == recent[-50:]
    by_id, newest, thread = selects

    scanned, plan = await scanned_partitions(db, *by_id)
    assert scanned == {here}, plan
    scanned, plan = await scanned_partitions(db, *newest)
    assert here in scanned and not scanned & older, plan
    scanned, plan = await scanned_partitions(db, *thread)
    assert partition_name("messages", this_month(-3)) not in scanned, plan


async def test_migration_0003_partitions_existing_events_and_can_be_reversed() -> None:
    async with postgres_database() as url:
        db = Database(url)
        try:
            await upgrade(db, "0002_chat")
            channel = new_id()
            moments = [utc_midnight(this_month(offset)) + timedelta(days=1) for offset in (-5, 0)]
            async with db.engine.begin() as conn:
                for seq, moment in enumerate(moments, start=1):
                    await conn.execute(
                        text(
                            "INSERT INTO channel_events VALUES "
                            "(:c, :s, 'message.created', :c, '', '{}', :at)"
                        ),
                        {"c": channel, "s": seq, "at": moment},
                    )

            # Up to the last revision that keeps frames in plaintext (0006 seals them, and is
            # tested in tests/crypto/test_legacy_rows.py).
            await upgrade(db, "0005_audit_log")
            assert partition_name("channel_events", this_month(-5)) in await relations(db)
            async with db.sessions() as session:
                events = await repository.events_after(session, channel, 0, 10)
            assert [(e.seq, e.created_at) for e in events] == [(1, moments[0]), (2, moments[1])]

            def downgrade(connection: object) -> None:
                command.downgrade(_config(connection), "0002_chat")  # type: ignore[arg-type]

            async with db.engine.begin() as conn:
                await conn.run_sync(downgrade)
            assert "channel_events_default" not in await relations(db)
            assert await count(db, "channel_events") == 2
        finally:
            await db.close()
