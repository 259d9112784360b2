"""Storage metrics: connection pools (read at each scrape) and the DEFAULT partitions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ultrachat.storage.pools import ResourcePool

PARTITION_DEFAULT_ROWS = Gauge(
    "ultrachat_partition_default_rows",
    "Rows in a partitioned table's DEFAULT partition: rows outside every monthly partition "
    "(should stay 0; updated by the hourly partition maintenance).",
    ["table"],
)


class PoolCollector(Collector):
    """``ultrachat_pool_{available,total,waiting}{pool}`` from the tracked pools' status.

    Pools sharing a name (several apps in one process, as in tests) are summed, so each
    series appears once.
    """

    def __init__(self) -> None:
        self._pools: list[ResourcePool[Any]] = []

    def track(self, *pools: ResourcePool[Any]) -> None:
        self._pools.extend(pools)

    def untrack(self, *pools: ResourcePool[Any]) -> None:
        self._pools = [p for p in self._pools if not any(p is q for q in pools)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self.families(self._pools)

    @staticmethod
    def families(pools: Iterable[ResourcePool[Any]]) -> Iterator[GaugeMetricFamily]:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for pool in pools:
            status = pool.status()
            total = sums[pool.name]
            total[0] += status.available
            total[1] += status.total
            total[2] += status.waiting
        for index, (field, help_text) in enumerate(
            (
                ("available", "Connections a caller can take from the pool without waiting."),
                ("total", "The most connections the pool holds."),
                ("waiting", "Callers waiting for a connection from the pool."),
            )
        ):
            family = GaugeMetricFamily(f"ultrachat_pool_{field}", help_text, labels=["pool"])
            for name, values in sorted(sums.items()):
                family.add_metric([name], values[index])
            yield family


POOLS = PoolCollector()
REGISTRY.register(POOLS)
