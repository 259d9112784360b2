"""One collection: the interval's figures plus what was true at its end, as stored.

The stored JSON keeps the raw counts next to the rates (requests and errors, cache hits and
lookups, and the latency histogram's bucket deltas), because a report over many snapshots
must add counts up, never average ratios or percentiles: the p99 of an hour is the quantile
of the hour's merged buckets, not the mean of sixty p99s. Version 1 of the format:

    {"v": 1, "period_s", "seconds", "ready", "active_users", "ws_connections",
     "http": {"requests", "errors", "requests_per_s", "error_ratio",
              "latency_s": {"p50", "p95", "p99"}, "buckets": {"<le>": count, ..., "+Inf": n}},
     "messages": {"in", "in_per_s", "deliveries_out", "deliveries_per_s"},
     "cache": {"<resource>": {"hits", "lookups"}},
     "pools": {"<pool>": {"size", "checked_out", "waiting"}},
     "bus": {"lag_s_last", "lag_s_mean", "probes", "lost"},
     "system": {"process_cpu_percent", "process_rss_bytes", "host_cpu_percent",
                "host_memory_used_bytes", "host_memory_total_bytes",
                "disk_used_bytes", "disk_total_bytes"},
     "business": {"active_subscriptions", "mrr_cents_by_currency", "churn_ratio"} | null}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ultrachat.monitoring.figures import QUANTILES, Figures
from ultrachat.monitoring.probe import BusLag

FORMAT_VERSION = 1


def _bound(upper: float) -> str:
    # JSON has no infinity: bounds are keys, written as Prometheus writes its "le" labels.
    return "+Inf" if upper == math.inf else repr(upper)


@dataclass(frozen=True, slots=True)
class Business:
    active_subscriptions: int
    mrr_cents_by_currency: Mapping[str, int]
    churn_ratio: float | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: datetime
    node: str
    period: float  # the configured collection interval, seconds
    figures: Figures
    ready: bool  # the node passed its readiness checks at ``at``
    active_users: int
    bus: BusLag
    business: Business | None

    def data(self) -> dict[str, Any]:
        f, now = self.figures, self.figures.now
        return {
            "v": FORMAT_VERSION,
            "period_s": self.period,
            "seconds": round(f.seconds, 3),
            "ready": self.ready,
            "active_users": self.active_users,
            "ws_connections": now.connections,
            "http": {
                "requests": f.requests,
                "errors": f.errors,
                "requests_per_s": f.requests_per_s,
                "error_ratio": f.error_ratio,
                "latency_s": {name: f.latency(q) for name, q in QUANTILES.items()},
                "buckets": {_bound(b): n for b, n in sorted(f.latency_buckets.items())},
            },
            "messages": {
                "in": f.messages_in,
                "in_per_s": f.per_second(f.messages_in),
                "deliveries_out": f.deliveries_out,
                "deliveries_per_s": f.per_second(f.deliveries_out),
            },
            "cache": {r: {"hits": c.hits, "lookups": c.lookups} for r, c in f.cache.items()},
            "pools": {
                name: {"size": p.size, "checked_out": p.checked_out, "waiting": p.waiting}
                for name, p in now.pools.items()
            },
            "bus": {
                "lag_s_last": self.bus.last_seconds,
                "lag_s_mean": self.bus.mean_seconds,
                "probes": self.bus.received,
                "lost": self.bus.lost,
            },
            "system": {
                "process_cpu_percent": f.process_cpu_percent,
                "process_rss_bytes": now.process_rss_bytes,
                "host_cpu_percent": f.host_cpu_percent,
                "host_memory_used_bytes": now.host_memory_used_bytes,
                "host_memory_total_bytes": now.host_memory_total_bytes,
                "disk_used_bytes": now.disk_used_bytes,
                "disk_total_bytes": now.disk_total_bytes,
            },
            "business": None
            if self.business is None
            else {
                "active_subscriptions": self.business.active_subscriptions,
                "mrr_cents_by_currency": dict(self.business.mrr_cents_by_currency),
                "churn_ratio": self.business.churn_ratio,
            },
        }
