"""The live feed behind ``GET /api/v1/admin/live``: this node's figures every few seconds.

Each stream keeps its own previous reading, so its rates cover exactly the time since its
own last event (its first event: since the collector's last tick); many viewers share
nothing but the SLO lines, computed from the history at most every ``SLO_TTL_SECONDS``
so that a room of dashboards costs the database one query per 10 s, not one per viewer.

A stream ends when its client goes away (the ASGI server cancels it) and when the server
shuts down. The second needs help: uvicorn waits for open responses to finish *before* it
runs the application's shutdown, and an endless stream never finishes; it would hold the
process for the whole graceful timeout and end in an error. So ``start`` chains onto the
exit signal handlers the server installed (only when one is installed: never in tests or
under a host that handles signals itself) and every stream returns as soon as one arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from ultrachat.monitoring.collector import MetricsCollector
from ultrachat.monitoring.figures import QUANTILES, Figures, figures
from ultrachat.monitoring.schemas import (
    CpuPercent,
    LatencyMs,
    LiveFrame,
    LiveSloLine,
    MemoryBytes,
)
from ultrachat.monitoring.slo import SloLine, slo_report

log = logging.getLogger(__name__)
SLO_WINDOW = timedelta(hours=1)
SLO_TTL_SECONDS = 10.0
SLO_TIMEOUT_SECONDS = 5.0
_EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def live_frame(interval: Figures, active_users: int, slo: list[SloLine], at: datetime) -> LiveFrame:
    """The wire event for one interval of this node (pure: tests feed it figures)."""
    now = interval.now
    latency = {name: _ms(interval.latency(q)) for name, q in QUANTILES.items()}
    return LiveFrame(
        at=at,
        connections=now.connections,
        active_users=active_users,
        requests_per_s=interval.requests_per_s,
        error_rate=interval.error_ratio or 0.0,
        messages_per_s=interval.per_second(interval.messages_in),
        deliveries_per_s=interval.per_second(interval.deliveries_out),
        latency_ms=LatencyMs(**latency),
        cache_hit_rate=interval.cache_hit_ratio,
        cpu_percent=CpuPercent(
            process=interval.process_cpu_percent, host=interval.host_cpu_percent
        ),
        memory_bytes=MemoryBytes(
            process=now.process_rss_bytes,
            host_used=now.host_memory_used_bytes,
            host_total=now.host_memory_total_bytes,
        ),
        slo=[
            LiveSloLine(name=s.name, value=s.value, target=s.target, status=s.status) for s in slo
        ],
    )


def chain_exit_signals(on_exit: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_exit`` before the installed SIGINT/SIGTERM handlers; returns the undo.

    Only handlers a server installed are chained: the interpreter's defaults are left alone,
    so that where nobody handles signals (tests, a plain script) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    installed: dict[int, tuple[Any, Any]] = {}
    for signum in _EXIT_SIGNALS:
        previous = signal.getsignal(signum)
        if not callable(previous) or previous is signal.default_int_handler:
            continue

        def handler(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
            on_exit()
            previous(sig, frame)

        signal.signal(signum, handler)
        installed[signum] = (handler, previous)

    def undo() -> None:
        for signum, (handler, previous) in installed.items():
            if signal.getsignal(signum) is handler:  # else someone chained after us
                signal.signal(signum, previous)

    return undo


class LiveFeed:
    def __init__(
        self,
        collector: MetricsCollector,
        interval: float,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._collector = collector
        self.interval = interval
        self._clock = clock
        self._closing = asyncio.Event()
        self._undo_signals: Callable[[], None] = lambda: None
        self._slo: list[SloLine] = []
        self._slo_at: float | None = None
        self._slo_lock = asyncio.Lock()

    async def start(self) -> None:
        self._closing.clear()
        loop = asyncio.get_running_loop()

        def closing() -> None:
            # In a signal handler: hand over to the loop, which may be mid-step.
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._closing.set)

        self._undo_signals = chain_exit_signals(closing)

    async def stop(self) -> None:
        self._closing.set()
        self._undo_signals()
        self._undo_signals = lambda: None

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    async def frames(self) -> AsyncIterator[LiveFrame]:
        """Events until the server shuts down: one now, then one every ``interval``."""
        collector = self._collector
        previous = collector.baseline
        while not self._closing.is_set():
            current = collector.reader.read()
            interval = figures(previous, current)
            previous = current
            slo = await self.slo_lines()
            yield live_frame(interval, collector.active_users.count, slo, self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._closing.wait()

    async def slo_lines(self) -> list[SloLine]:
        """The last hour's SLO lines, shared by every stream on this node for 10 s."""
        loop = asyncio.get_running_loop()
        if self._slo_at is not None and loop.time() - self._slo_at < SLO_TTL_SECONDS:
            return self._slo
        async with self._slo_lock:
            if self._slo_at is not None and loop.time() - self._slo_at < SLO_TTL_SECONDS:
                return self._slo  # another stream refreshed it while this one waited
            try:
                async with asyncio.timeout(SLO_TIMEOUT_SECONDS):
                    report = await slo_report(self._collector.db, SLO_WINDOW)
                self._slo = report.lines
            except Exception:
                log.warning("SLO lines unavailable; the live feed repeats the last ones")
            self._slo_at = loop.time()
        return self._slo
