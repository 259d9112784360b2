"""The live view while a load test runs (rich): connections, msgs/s, p99 and errors.

Workers report cumulative counters and the last second's latency histograms once a second;
rates are the change since the previous refresh. Without a terminal the view stays silent.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ultrachat.loadtest.histogram import Histogram

COUNTERS = (
    "open",
    "connect_ok",
    "connect_failed",
    "sent",
    "acked",
    "delivered",
    "errors",
    "reconnects",
    "rest",
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


class Display:
    def __init__(self, console: Console, enabled: bool, target_connections: int) -> None:
        self.console = console
        self.enabled = enabled
        self.target = target_connections
        self.phase = "starting"
        self.detail = ""
        self.workers: dict[int, dict[str, Any]] = {}
        self.windows: dict[str, Histogram] = {}
        self.server: dict[str, float] = {}
        self.started = time.monotonic()
        self.t0: float | None = None
        self.duration = 0.0
        self._last: tuple[float, dict[str, float]] | None = None
        self._rates: dict[str, float] = {}
        self._p99: dict[str, float | None] = {}
        self._live: Live | None = None

    def __enter__(self) -> Display:
        if self.enabled:
            self._live = Live(
                self.render(),
                console=self.console,
                refresh_per_second=2,
                transient=False,
                get_renderable=self.render,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
            self._live = None

    # Updates

    def set_phase(self, phase: str, detail: str = "") -> None:
        self.phase, self.detail = phase, detail

    def setup_progress(self, stage: str, done: int, total: int) -> None:
        self.set_phase("setup", f"{stage} {done:,}/{total:,}")

    def sending(self, t0: float, duration: float) -> None:
        self.t0, self.duration = t0, duration
        self.set_phase("sending")

    def worker_stats(self, index: int, stats: dict[str, Any]) -> None:
        self.workers[index] = stats
        for name in ("e2e", "ack", "rest_window"):
            window = self.windows.setdefault(name, Histogram())
            window.merge(Histogram.from_wire(stats[name]))

    def totals(self) -> dict[str, float]:
        return {name: sum(w.get(name, 0) for w in self.workers.values()) for name in COUNTERS}

    # Rendering

    def render(self) -> Table:
        now = time.monotonic()
        totals = self.totals()
        if self._last is None or now - self._last[0] >= 1.0:
            if self._last is not None:
                elapsed = now - self._last[0]
                self._rates = {
                    name: (totals[name] - self._last[1].get(name, 0)) / elapsed
                    for name in ("sent", "acked", "delivered", "rest")
                }
                # p99 of what arrived since the previous refresh, then start afresh.
                self._p99 = {n: h.percentile(99) for n, h in self.windows.items()}
                self.windows = {}
            self._last = (now, totals)
        p99 = self._p99
        table = Table(title="ultrachat loadtest", show_header=False, min_width=72)
        table.add_column(style="bold")
        table.add_column()
        clock = ""
        if self.t0 is not None:
            clock = (
                f"  {min(max(time.time() - self.t0, 0.0), self.duration):.0f}/{self.duration:g} s"
            )
        table.add_row("phase", f"{self.phase}{clock}  {self.detail}".rstrip())
        table.add_row(
            "connections",
            f"{int(totals['open']):,} open of {self.target:,}  "
            f"({int(totals['connect_failed']):,} failed, {int(totals['reconnects']):,} reconnects)",
        )
        table.add_row(
            "messages/s",
            f"sent {self._rates.get('sent', 0):,.0f}  acked {self._rates.get('acked', 0):,.0f}  "
            f"delivered {self._rates.get('delivered', 0):,.0f}",
        )
        table.add_row(
            "totals",
            f"sent {int(totals['sent']):,}  acked {int(totals['acked']):,}  "
            f"delivered {int(totals['delivered']):,}",
        )
        table.add_row(
            "p99 (last s)",
            f"end-to-end {_ms(p99.get('e2e'))}  ack {_ms(p99.get('ack'))}  "
            f"REST {_ms(p99.get('rest_window'))} at {self._rates.get('rest', 0):,.0f} req/s",
        )
        table.add_row("errors", f"{int(totals['errors']):,}")
        if self.server:
            table.add_row(
                "server",
                f"CPU {self.server.get('cores', 0):.2f} cores  "
                f"{int(self.server.get('ws', 0)):,} sockets",
            )
        return table
