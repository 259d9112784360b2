"""Figures for one interval: the difference of two readings, and quantiles from buckets.

Everything here is a pure function of its arguments, so tests feed it numbers. Rates are
per second of the interval; ratios are None when the interval has nothing to divide by (no
request, no lookup), so that "no traffic" never reads as "perfect".

Quantiles are estimated from histogram buckets as Prometheus' ``histogram_quantile`` does:
find the bucket holding the rank, then interpolate linearly inside it. The estimate is off
by at most that bucket's width; a rank in the +Inf bucket answers the highest finite bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ultrachat.monitoring.readings import Reading

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True, slots=True)
class CacheFigures:
    hits: int
    lookups: int

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True, slots=True)
class Figures:
    """What happened between two readings, and (``now``) the later reading's values."""

    seconds: float
    requests: int
    errors: int
    latency_buckets: Mapping[float, int]  # cumulative counts of the interval, per bound
    messages_in: int
    deliveries_out: int
    cache: Mapping[str, CacheFigures]
    process_cpu_percent: float
    host_cpu_percent: float
    now: Reading

    def per_second(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.per_second(self.requests)

    @property
    def error_ratio(self) -> float | None:
        """5xx responses / all responses: server errors only. A 4xx is the client's
        mistake (or a refusal working as intended: 401, 403, 404, 429), not a failure of
        the service."""
        return self.errors / self.requests if self.requests else None

    def latency(self, quantile: float) -> float | None:
        return histogram_quantile(quantile, self.latency_buckets)

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits / lookups over every resource."""
        lookups = sum(c.lookups for c in self.cache.values())
        return sum(c.hits for c in self.cache.values()) / lookups if lookups else None


def _delta(later: float, earlier: float) -> int:
    # Counters never go down within a process; clamp anyway so a bug elsewhere can never
    # produce a negative rate.
    return max(round(later - earlier), 0)


def figures(previous: Reading, current: Reading) -> Figures:
    """The interval from ``previous`` to ``current``: counts, rates, CPU use."""
    seconds = max(current.monotonic - previous.monotonic, 0.0)
    buckets = {
        bound: _delta(count, previous.latency.get(bound, 0.0))
        for bound, count in current.latency.items()
    }
    cache: dict[str, CacheFigures] = {}
    for resource, (hits, misses) in current.cache.items():
        before = previous.cache.get(resource, (0.0, 0.0))
        hit = _delta(hits, before[0])
        cache[resource] = CacheFigures(hit, hit + _delta(misses, before[1]))
    cpu = max(current.process_cpu_seconds - previous.process_cpu_seconds, 0.0)
    host_total = current.host_cpu_total_seconds - previous.host_cpu_total_seconds
    host_busy = current.host_cpu_busy_seconds - previous.host_cpu_busy_seconds
    return Figures(
        seconds=seconds,
        requests=_delta(current.requests, previous.requests),
        errors=_delta(current.errors, previous.errors),
        latency_buckets=buckets,
        messages_in=_delta(current.messages_in, previous.messages_in),
        deliveries_out=_delta(current.deliveries_out, previous.deliveries_out),
        cache=cache,
        process_cpu_percent=100.0 * cpu / seconds if seconds > 0 else 0.0,
        host_cpu_percent=(
            min(max(100.0 * host_busy / host_total, 0.0), 100.0) if host_total > 0 else 0.0
        ),
        now=current,
    )


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """The ``quantile`` (0..1) of cumulative ``buckets`` (upper bound -> count, +Inf
    included); None when they hold no observation."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return None
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for index, bound in enumerate(bounds):
        count = max(buckets[bound], below)  # as Prometheus: repair a non-monotonic bucket
        if count >= rank:
            if bound == math.inf:
                return bounds[-2] if len(bounds) > 1 else None
            if index == 0 and bound <= 0:
                return bound
            inside = count - below
            if inside <= 0:
                return lower
            return lower + (bound - lower) * (rank - below) / inside
        lower, below = bound, count
    return None  # unreachable: the +Inf bucket holds every observation


def merge_buckets(histograms: Iterable[Mapping[float, float]]) -> dict[float, float]:
    """Sum cumulative histograms; only bounds that every non-empty one has are kept (the
    buckets may have changed between releases), which stays correct, if coarser."""
    merged: dict[float, float] | None = None
    for histogram in histograms:
        if not histogram.get(math.inf):
            continue  # nothing observed: its bounds must not narrow the others
        if merged is None:
            merged = dict(histogram)
            continue
        merged = {b: merged[b] + histogram[b] for b in merged.keys() & histogram.keys()}
    return merged or {}
