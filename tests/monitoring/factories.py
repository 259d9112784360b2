"""Readings and stored snapshots with chosen figures, built through the real code paths."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ultrachat.monitoring.figures import figures
from ultrachat.monitoring.probe import BusLag
from ultrachat.monitoring.readings import Reading
from ultrachat.monitoring.snapshot import Snapshot

# The request-duration histogram's bounds (metrics/http.py).
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)

ZERO = Reading(
    monotonic=1000.0,
    requests=0,
    errors=0,
    latency={},
    messages_in=0,
    deliveries_out=0,
    cache={},
    process_cpu_seconds=0,
    host_cpu_busy_seconds=0,
    host_cpu_total_seconds=0,
    connections=0,
    pools={},
    process_rss_bytes=0,
    host_memory_used_bytes=0,
    host_memory_total_bytes=0,
    disk_used_bytes=0,
    disk_total_bytes=0,
)


def cumulative(latencies: Iterable[float], bounds: Iterable[float] = BOUNDS) -> dict[float, float]:
    """Cumulative bucket counts of ``latencies``, as the histogram would hold them."""
    values = list(latencies)
    return {b: float(sum(1 for v in values if v <= b)) for b in bounds}


def add(a: Mapping[float, float], b: Mapping[float, float]) -> dict[float, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in a.keys() | b.keys()}


def stored(
    *,
    requests: int = 0,
    errors: int = 0,
    latencies: Iterable[float] = (),
    hits: int = 0,
    lookups: int = 0,
    ready: bool = True,
    seconds: float = 60.0,
    period: float = 60.0,
    at: datetime,
    node: str = "node-a:1",
) -> dict[str, Any]:
    """The JSON a collector would store for an interval with these figures."""
    latency = list(latencies) or [0.01] * requests
    assert len(latency) == requests
    later = replace(
        ZERO,
        monotonic=ZERO.monotonic + seconds,
        requests=requests,
        errors=errors,
        latency=cumulative(latency) if requests else {},
        cache={"chat-messages": (float(hits), float(lookups - hits))} if lookups else {},
    )
    snapshot = Snapshot(
        at=at,
        node=node,
        period=period,
        figures=figures(ZERO, later),
        ready=ready,
        active_users=0,
        bus=BusLag(None, None, 0, 0),
        business=None,
    )
    return snapshot.data()


def hour_of(
    end: datetime, skip: range = range(0), **figures: Any
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """One snapshot a minute for the hour before ``end`` (minus the minutes in ``skip``)."""
    rows = []
    for minute in range(60):
        if minute in skip:
            continue
        at = end - timedelta(minutes=minute)
        rows.append((at, "node-a:1", stored(at=at, **figures)))
    return rows
