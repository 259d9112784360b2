"""The SLO report: the plan's technical KPIs against what ``metrics_history`` recorded.

Over a window, across every node, counts are added up first and ratios taken last:

- API response time: the p99 of every API request in the window, from the merged latency
  buckets of every snapshot (never an average of per-node p99s). Target: under 100 ms. The
  histogram has a bucket bound at exactly 100 ms, so the verdict is exact at its resolution:
  it passes when 99% of requests fell in the buckets up to 100 ms (the estimate then shows at
  most 100.0).
- Error rate: 5xx responses / API responses. Target: under 0.01%.
- Cache hit rate: hits / lookups over every cached resource. Target: over 90%.
- Uptime: the share of the window covered by snapshots of a node that was ready (passed
  the ``/readyz`` checks). Each snapshot covers the interval it measured, up to 1.5 collection
  periods back; an interval no ready snapshot covers (every node down, not ready, or not
  collecting) counts as down. The window's last period is left out, since its collection is
  not due yet. Target: 99.99%, the plan's figure.

A line whose window holds nothing to measure (no request, no lookup, no snapshot) says
"no data": neither pass nor fail, and the report as a whole does not pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ultrachat.monitoring import history
from ultrachat.monitoring.figures import histogram_quantile, merge_buckets
from ultrachat.storage import Database

Status = Literal["pass", "fail", "no data"]
LATENCY_TARGET_SECONDS = 0.1
ERROR_RATE_TARGET = 0.0001
CACHE_HIT_TARGET = 0.9
UPTIME_TARGET = 0.9999
COVERAGE_PERIODS = 1.5  # how far back one snapshot vouches for its node, in periods
SLACK_SECONDS = 1.0  # the wall clock (created_at) and the interval (monotonic) differ by ms


@dataclass(frozen=True, slots=True)
class SloLine:
    name: str
    value: float | None  # in ``unit``; None: no data
    unit: str
    target: str
    status: Status


@dataclass(frozen=True, slots=True)
class SloReport:
    since: datetime
    until: datetime
    lines: list[SloLine]
    snapshots: int
    nodes: int
    requests: int
    errors: int
    cache_lookups: int
    cache_hits: int

    @property
    def passed(self) -> bool:
        return all(line.status == "pass" for line in self.lines)


def _line(name: str, value: float | None, unit: str, target: str, ok: bool) -> SloLine:
    if value is None:
        return SloLine(name, None, unit, target, "no data")
    return SloLine(name, value, unit, target, "pass" if ok else "fail")


def _covered(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of ``spans``."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


@dataclass
class Summary:
    """Counts added up over snapshots; ``report`` turns them into the lines."""

    since: datetime
    until: datetime
    snapshots: int = 0
    nodes: set[str] = field(default_factory=set)
    requests: int = 0
    errors: int = 0
    hits: int = 0
    lookups: int = 0
    period: float = 0.0  # the longest collection interval seen
    buckets: list[dict[float, float]] = field(default_factory=list)
    ready_spans: list[tuple[float, float]] = field(default_factory=list)

    def add(self, at: datetime, node: str, data: dict[str, Any]) -> None:
        if data.get("v") != 1:
            return  # a format this release does not know
        self.snapshots += 1
        self.nodes.add(node)
        http = data.get("http") or {}
        self.requests += int(http.get("requests", 0))
        self.errors += int(http.get("errors", 0))
        self.buckets.append({float(b): float(n) for b, n in (http.get("buckets") or {}).items()})
        for cache in (data.get("cache") or {}).values():
            self.hits += int(cache.get("hits", 0))
            self.lookups += int(cache.get("lookups", 0))
        period = float(data.get("period_s", 0))
        self.period = max(self.period, period)
        if data.get("ready"):
            reach = min(float(data.get("seconds", 0)) + SLACK_SECONDS, COVERAGE_PERIODS * period)
            self.ready_spans.append((at.timestamp() - reach, at.timestamp()))

    def report(self) -> SloReport:
        p99 = histogram_quantile(0.99, merge_buckets(self.buckets))
        error_rate = self.errors / self.requests if self.requests else None
        hit_rate = self.hits / self.lookups if self.lookups else None
        # The last period of the window is not due for collection yet: it is judged by the
        # next report, not counted as down in this one.
        start, end = self.since.timestamp(), self.until.timestamp() - self.period
        spans = [(max(a, start), min(b, end)) for a, b in self.ready_spans]
        uptime = (
            _covered([(a, b) for a, b in spans if b > a]) / (end - start)
            if self.snapshots and end > start
            else None
        )
        lines = [
            _line(
                "api_latency_p99",
                None if p99 is None else p99 * 1000,
                "ms",
                "< 100 ms",
                p99 is not None and p99 <= LATENCY_TARGET_SECONDS,
            ),
            _line(
                "error_rate",
                None if error_rate is None else error_rate * 100,
                "%",
                "< 0.01%",
                error_rate is not None and error_rate < ERROR_RATE_TARGET,
            ),
            _line(
                "cache_hit_rate",
                None if hit_rate is None else hit_rate * 100,
                "%",
                "> 90%",
                hit_rate is not None and hit_rate > CACHE_HIT_TARGET,
            ),
            _line(
                "uptime",
                None if uptime is None else uptime * 100,
                "%",
                ">= 99.99%",
                uptime is not None and uptime >= UPTIME_TARGET,
            ),
        ]
        return SloReport(
            since=self.since,
            until=self.until,
            lines=lines,
            snapshots=self.snapshots,
            nodes=len(self.nodes),
            requests=self.requests,
            errors=self.errors,
            cache_lookups=self.lookups,
            cache_hits=self.hits,
        )


def summarize(
    rows: Iterable[tuple[datetime, str, dict[str, Any]]], since: datetime, until: datetime
) -> SloReport:
    """The report over ``rows`` (created_at, node, data), for ``(since, until]``."""
    summary = Summary(since, until)
    for at, node, data in rows:
        summary.add(at, node, data)
    return summary.report()


async def slo_report(db: Database, window: timedelta, now: datetime | None = None) -> SloReport:
    """The report over the ``window`` that ends ``now`` (default: the present)."""
    until = now or datetime.now(UTC)
    summary = Summary(until - window, until)
    async for at, node, data in history.window(db, summary.since, until):
        summary.add(at, node, data)
    return summary.report()
