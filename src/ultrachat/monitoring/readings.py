"""What this process has counted so far: one cheap read of its Prometheus series and psutil.

A ``Reading`` holds running totals (requests, errors, latency buckets, messages, deliveries,
cache lookups, CPU seconds) plus the values of the moment (connections, memory, disk, pools).
Figures for an interval are the difference of two readings (``figures.py``), so a reading
can be taken as often as wanted (the collector each minute, each live feed every 2 s)
without resetting anything another reader depends on.

Only API traffic counts: routes under ``/api/``, minus the streams, whose "duration" is how
long someone watched. Probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) and
requests that match no route (scanners) would otherwise dilute the error rate and the
latency of what users call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ultrachat.metrics.cache import CACHE_REQUESTS
from ultrachat.metrics.chat import EVENTS_COMMITTED, WS_DELIVERIES
from ultrachat.metrics.http import REQUEST_DURATION
from ultrachat.storage.pools import ResourcePool

API_PREFIX = "/api/"
STREAMING_ROUTES = frozenset({"/api/v1/admin/live"})
MESSAGE_CREATED = "message.created"


@dataclass(frozen=True, slots=True)
class PoolFigures:
    size: int  # the most connections the pool holds
    checked_out: int
    waiting: int


@dataclass(frozen=True, slots=True)
class Reading:
    monotonic: float  # seconds, time.monotonic(): intervals between readings
    # Running totals since the process started
    requests: float
    errors: float  # responses with a 5xx status
    latency: Mapping[float, float]  # cumulative count per bucket upper bound (inf included)
    messages_in: float
    deliveries_out: float
    cache: Mapping[str, tuple[float, float]]  # resource -> (hits, misses)
    process_cpu_seconds: float
    host_cpu_busy_seconds: float
    host_cpu_total_seconds: float
    # Values of the moment
    connections: int
    pools: Mapping[str, PoolFigures]
    process_rss_bytes: int
    host_memory_used_bytes: int
    host_memory_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int


def http_totals() -> tuple[float, float, dict[float, float]]:
    """API requests, 5xx responses, and the latency buckets summed over every label set."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for metric in REQUEST_DURATION.collect():
        for sample in metric.samples:
            route = sample.labels.get("route", "")
            if not route.startswith(API_PREFIX) or route in STREAMING_ROUTES:
                continue
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
    return requests, errors, buckets


def _counter_total(metric: Any, **labels: str) -> float:
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def cache_totals() -> dict[str, tuple[float, float]]:
    totals: dict[str, list[float]] = {}
    for family in CACHE_REQUESTS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            pair = totals.setdefault(sample.labels["resource"], [0.0, 0.0])
            pair[0 if sample.labels["result"] == "hit" else 1] += sample.value
    return {resource: (hits, misses) for resource, (hits, misses) in totals.items()}


def _existing(path: Path) -> Path:
    # data_dir may not exist (a PostgreSQL node writes nothing there): measure its parent's
    # file system, where it would be made.
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class Reader:
    """Takes readings of this process; holds the psutil handle so CPU times stay cheap."""

    def __init__(
        self,
        data_dir: Path,
        connections: Callable[[], int] = lambda: 0,
        pools: Sequence[ResourcePool[Any]] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._process = psutil.Process()
        self._disk_path = str(_existing(data_dir))
        self._connections = connections
        self._pools = pools
        self._clock = clock or time.monotonic

    def read(self) -> Reading:
        requests, errors, latency = http_totals()
        cpu = self._process.cpu_times()
        host = psutil.cpu_times()
        # As psutil's cpu_percent: guest time is already inside user time on Linux, and
        # iowait is time the CPU could have run something else.
        total = sum(host) - getattr(host, "guest", 0.0) - getattr(host, "guest_nice", 0.0)
        idle = host.idle + getattr(host, "iowait", 0.0)
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self._disk_path)
        pools: dict[str, PoolFigures] = {}
        for pool in self._pools:
            status = pool.status()
            pools[pool.name] = PoolFigures(status.total, status.in_use, status.waiting)
        return Reading(
            monotonic=self._clock(),
            requests=requests,
            errors=errors,
            latency=latency,
            messages_in=_counter_total(EVENTS_COMMITTED, kind=MESSAGE_CREATED),
            deliveries_out=_counter_total(WS_DELIVERIES),
            cache=cache_totals(),
            process_cpu_seconds=cpu.user + cpu.system,
            host_cpu_busy_seconds=max(total - idle, 0.0),
            host_cpu_total_seconds=total,
            connections=self._connections(),
            pools=pools,
            process_rss_bytes=int(self._process.memory_info().rss),
            host_memory_used_bytes=int(memory.total - memory.available),
            host_memory_total_bytes=int(memory.total),
            disk_used_bytes=int(disk.used),
            disk_total_bytes=int(disk.total),
        )
