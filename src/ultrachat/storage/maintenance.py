"""The server's hourly partition maintenance (PostgreSQL only).

Each run, on every node: create the partitions of this month and the next ``MONTHS_AHEAD``
(so a server that runs for years never writes into the DEFAULT partition), drop partitions
older than ``ULTRACHAT_RETENTION_MONTHS`` when it is set, and export the DEFAULT partitions'
row counts. Nodes take turns through an advisory lock; a node that finds it taken skips that
step, since another node is doing the same work.

It uses a connection of its own (no pool), so it never takes one from the requests, and its
DDL waits for locks at most ``DDL_LOCK_TIMEOUT_MS``: a partition that cannot be made now is
made an hour later, months before it is needed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ultrachat.metrics.storage import PARTITION_DEFAULT_ROWS
from ultrachat.storage.database import server_settings
from ultrachat.storage.partition_admin import default_rows, drop_older_than
from ultrachat.storage.partitions import PARTITIONED_TABLES, ensure_monthly_partitions
from ultrachat.tasks import cancel_and_wait

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 3600.0
DDL_LOCK_TIMEOUT_MS = 2000


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    default_rows: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # the steps that raised


class PartitionMaintenance:
    def __init__(
        self, url: str, retention_months: int = 0, interval: float = INTERVAL_SECONDS
    ) -> None:
        self.url = url
        self.retention_months = retention_months
        self.interval = interval
        self.enabled = url.startswith("postgresql")
        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_async_engine(
                self.url,
                poolclass=NullPool,
                connect_args={"server_settings": server_settings("ultrachat-maintenance")},
            )
        return self._engine

    async def start(self) -> None:
        if not self.enabled:
            if self.retention_months:
                log.warning("ULTRACHAT_RETENTION_MONTHS applies to PostgreSQL only; ignored")
            return
        self._task = asyncio.create_task(self._run_forever(), name="partition-maintenance")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def _run_forever(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    async def run_once(self, today: date | None = None) -> MaintenanceReport:
        """One round of maintenance; each step's failure is logged and the others still run."""
        report = MaintenanceReport()
        if not self.enabled:
            return report
        for table in PARTITIONED_TABLES:
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(text(f"SET LOCAL lock_timeout = {DDL_LOCK_TIMEOUT_MS}"))
                    report.created += await conn.run_sync(_ensure, table, today)
            except Exception:
                report.failed.append(f"create partitions of {table}")
                log.warning(
                    "creating partitions of %s failed; retrying in an hour", table, exc_info=True
                )
        if self.retention_months:
            try:
                report.dropped = await drop_older_than(
                    self.engine, self.retention_months, today=today, wait=False
                )
            except Exception:
                report.failed.append("retention")
                log.warning("dropping old partitions failed; retrying in an hour", exc_info=True)
        try:
            report.default_rows = await default_rows(self.engine)
        except Exception:
            report.failed.append("count default rows")
            log.warning("counting DEFAULT partition rows failed", exc_info=True)
        for table, rows in report.default_rows.items():
            PARTITION_DEFAULT_ROWS.labels(table).set(rows)
            if rows:
                log.warning(
                    "%d rows of %s are in its DEFAULT partition (outside every monthly one)",
                    rows,
                    table,
                )
        if report.created or report.dropped:
            log.info("partitions created: %s; dropped: %s", report.created, report.dropped)
        return report


def _ensure(connection: Connection, table: str, today: date | None) -> list[str]:
    return ensure_monthly_partitions(connection, table, today=today, wait=False)
