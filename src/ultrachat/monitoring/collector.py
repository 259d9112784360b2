"""The plan's MetricsCollector: every ``ULTRACHAT_METRICS_INTERVAL_SECONDS``, on every node.

Each tick takes a reading of the process (readings.py), turns the difference from the
previous one into the interval's figures (figures.py, so rates are per interval, not since
boot), adds what is true now (readiness, active users, bus lag, business figures), sets the
``/metrics`` gauges (metrics/monitoring.py) and appends one row to ``metrics_history`` for
this node. The SLO report (slo.py) is computed from those rows.

Ticks are scheduled on a fixed grid from the start, not "sleep 60 s after the last one", so
collection never drifts and every stretch of time is covered by exactly one snapshot: the
uptime figure depends on that. Stopping takes one last snapshot, so a graceful restart costs
the SLO only the time the node was really down.

It is meant to be cheap on every node: the readings are a walk over this process's series,
and the database sees one insert, one small delete and the two business queries a minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ultrachat.bus import Bus
from ultrachat.cache import Cache
from ultrachat.metrics import monitoring as gauges
from ultrachat.monitoring import history
from ultrachat.monitoring.active_users import ActiveUsers
from ultrachat.monitoring.currency import major_units
from ultrachat.monitoring.figures import QUANTILES, figures
from ultrachat.monitoring.probe import BusProbe
from ultrachat.monitoring.readings import Reader, Reading
from ultrachat.monitoring.snapshot import Business, Snapshot
from ultrachat.storage import Database
from ultrachat.tasks import cancel_and_wait

log = logging.getLogger(__name__)
FINAL_TICK_SECONDS = 5.0


class BusinessFigures(Protocol):
    @property
    def active_subscriptions(self) -> int: ...

    @property
    def mrr_cents_by_currency(self) -> Mapping[str, int]: ...

    @property
    def churn_ratio(self) -> float | None: ...


class BusinessSource(Protocol):
    """The billing service (billing/service.py): figures counted by the database."""

    async def business_metrics(self) -> BusinessFigures: ...


def node_name() -> str:
    """This process, as the history names it: unique among live nodes, readable by people."""
    return f"{socket.gethostname()}:{os.getpid()}"


def readiness(
    db: Database, shared_state: Cache | None = None, bus: Bus | None = None
) -> Callable[[], Awaitable[bool]]:
    """The checks of ``/readyz`` (gateway/health.py): the database answers, and with Redis,
    the shared state answers and the bus is connected."""

    async def ready() -> bool:
        if not await db.ping():
            return False
        if shared_state is not None and not await shared_state.ping():
            return False
        return bus is None or bus.healthy

    return ready


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _gauge_value(value: float | None) -> float:
    return math.nan if value is None else value


class MetricsCollector:
    def __init__(
        self,
        db: Database,
        reader: Reader,
        active_users: ActiveUsers,
        probe: BusProbe,
        *,
        ready: Callable[[], Awaitable[bool]],
        billing: BusinessSource | None = None,
        node: str | None = None,
        interval: float = 60.0,
        retention_days: int = 30,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.db = db
        self.reader = reader
        self.active_users = active_users
        self.probe = probe
        self.billing = billing
        self.node = node or node_name()
        self.interval = interval
        self.retention_days = retention_days
        self._ready = ready
        self._clock = clock
        self._previous: Reading | None = None
        self._task: asyncio.Task[None] | None = None
        self._currencies: set[str] = set()
        self.last: Snapshot | None = None

    @property
    def baseline(self) -> Reading:
        """The reading the current interval started from (a live feed's first baseline)."""
        if self._previous is None:
            self._previous = self.reader.read()
        return self._previous

    async def start(self) -> None:
        self._previous = self.reader.read()
        await self.active_users.start()
        await self.probe.start()
        gauges.UP.set(1)
        self._task = asyncio.create_task(self._collect_forever(), name="metrics-collector")

    async def stop(self) -> None:
        if self._task is None:
            return
        await cancel_and_wait(self._task)
        self._task = None
        try:
            async with asyncio.timeout(FINAL_TICK_SECONDS):
                await self.tick()
        except Exception:
            log.warning("the final metrics snapshot was not written", exc_info=True)
        await self.probe.stop()
        await self.active_users.stop()
        gauges.UP.set(0)

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval
            await asyncio.sleep(max(due - loop.time(), 0.0))
            try:
                await self.tick()
            except Exception:
                log.warning("metrics collection failed; next in one interval", exc_info=True)
            if loop.time() > due + self.interval:
                due = loop.time()  # fell behind (a stalled loop): resume, don't burst

    async def tick(self) -> Snapshot:
        """Collect once: figures since the previous tick, gauges, one history row."""
        current = self.reader.read()
        interval = figures(self.baseline, current)
        self._previous = current
        snapshot = Snapshot(
            at=self._clock(),
            node=self.node,
            period=self.interval,
            figures=interval,
            ready=await self._is_ready(),
            active_users=self.active_users.count,
            bus=self.probe.drain(),
            business=await self._business(),
        )
        self.export(snapshot)
        await history.append(self.db, snapshot.at, self.node, snapshot.data())
        if self.retention_days:
            await history.prune(self.db, snapshot.at - timedelta(days=self.retention_days))
        self.last = snapshot
        return snapshot

    async def _is_ready(self) -> bool:
        try:
            return await self._ready()
        except Exception:
            return False

    async def _business(self) -> Business | None:
        if self.billing is None:
            return None
        try:
            found = await self.billing.business_metrics()
        except Exception:
            log.warning("business metrics unavailable this interval", exc_info=True)
            return None
        return Business(
            found.active_subscriptions, dict(found.mrr_cents_by_currency), found.churn_ratio
        )

    def export(self, snapshot: Snapshot) -> None:
        """Set every gauge from the snapshot (what ``/metrics`` shows until the next tick)."""
        f, now = snapshot.figures, snapshot.figures.now
        gauges.ACTIVE_USERS.set(snapshot.active_users)
        gauges.REQUESTS_PER_SECOND.set(f.requests_per_s)
        gauges.ERROR_RATIO.set(f.error_ratio or 0.0)
        for quantile in QUANTILES.values():
            gauges.API_LATENCY.labels(str(quantile)).set(_gauge_value(f.latency(quantile)))
        gauges.MESSAGES_IN.set(f.per_second(f.messages_in))
        gauges.DELIVERIES_OUT.set(f.per_second(f.deliveries_out))
        for resource, cache in f.cache.items():
            gauges.CACHE_HIT_RATIO.labels(resource).set(_gauge_value(cache.hit_ratio))
        gauges.BUS_LAG.set(_gauge_value(snapshot.bus.mean_seconds))
        gauges.PROCESS_CPU.set(f.process_cpu_percent)
        gauges.PROCESS_MEMORY.set(now.process_rss_bytes)
        gauges.HOST_CPU.set(f.host_cpu_percent)
        gauges.HOST_MEMORY_USED.set(now.host_memory_used_bytes)
        gauges.HOST_MEMORY_TOTAL.set(now.host_memory_total_bytes)
        gauges.DISK_USED.set(now.disk_used_bytes)
        gauges.DISK_TOTAL.set(now.disk_total_bytes)
        business = snapshot.business
        if business is not None:
            gauges.ACTIVE_SUBSCRIPTIONS.set(business.active_subscriptions)
            gauges.CHURN_RATIO.set(_gauge_value(business.churn_ratio))
            # A currency whose last subscription ended reads 0, rather than its old MRR.
            for currency in self._currencies - business.mrr_cents_by_currency.keys():
                gauges.MRR.labels(currency).set(0)
            for currency, cents in business.mrr_cents_by_currency.items():
                gauges.MRR.labels(currency).set(major_units(cents, currency))
            self._currencies |= business.mrr_cents_by_currency.keys()
