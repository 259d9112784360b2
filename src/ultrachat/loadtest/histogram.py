"""A latency histogram with log-spaced buckets: 1% wide, mergeable across processes.

Each worker records into its own; the coordinator adds them up (``merge``) and reads the
percentiles. A percentile is within 1% of the exact one (the bucket's geometric middle,
clamped to the exact min and max), whatever the number of samples, and a histogram is at
most about 2,100 counters however many samples it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

GROWTH = 1.01  # each bucket is 1% wider than the one below
_LOG_GROWTH = math.log(GROWTH)
MAX_BUCKET = 2100  # 1.01**2100 µs is over 1,000 s: anything slower lands in the last bucket


def bucket_of(micros: float) -> int:
    if micros < 1.0:
        return 0
    return min(MAX_BUCKET, 1 + int(math.log(micros) / _LOG_GROWTH))


def bucket_value(index: int) -> float:
    """The middle (geometric) of a bucket, in microseconds."""
    if index == 0:
        return 0.5
    return float(GROWTH ** (index - 1) * math.sqrt(GROWTH))


@dataclass
class Histogram:
    """Samples in microseconds; percentiles in milliseconds."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = 0.0

    def record(self, micros: float) -> None:
        micros = max(micros, 0.0)
        index = bucket_of(micros)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total += micros
        if micros < self.low:
            self.low = micros
        if micros > self.high:
            self.high = micros

    def record_ns(self, nanos: int) -> None:
        self.record(nanos / 1000.0)

    def merge(self, other: Histogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in milliseconds; None without samples."""
        if not self.count:
            return None
        if q >= 100:
            return self.high / 1000.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                value = min(max(bucket_value(index), self.low), self.high)
                return value / 1000.0
        return self.high / 1000.0

    def summary(self) -> dict[str, Any]:
        """count, mean, p50, p95, p99, max (milliseconds, rounded to 0.01)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value, 2)

        return {
            "count": self.count,
            "mean_ms": ms(self.total / self.count / 1000.0) if self.count else None,
            "p50_ms": ms(self.percentile(50)),
            "p95_ms": ms(self.percentile(95)),
            "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(self.high / 1000.0) if self.count else None,
        }

    def to_wire(self) -> dict[str, Any]:
        """Plain values, cheap to pickle between processes."""
        return {"c": self.counts, "n": self.count, "t": self.total, "lo": self.low, "hi": self.high}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Histogram:
        return cls(dict(data["c"]), data["n"], data["t"], data["lo"], data["hi"])

    def take(self) -> Histogram:
        """This histogram's samples so far, leaving it empty (for per-second views)."""
        taken = Histogram(self.counts, self.count, self.total, self.low, self.high)
        self.counts, self.count, self.total, self.low, self.high = {}, 0, 0.0, math.inf, 0.0
        return taken
