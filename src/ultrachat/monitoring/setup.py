"""Monitoring's part of the composition root: the collector and the live feed of a Runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ultrachat.monitoring.active_users import (
    ActiveUsers,
    ActiveUserStore,
    MemoryActiveUsers,
    RedisActiveUsers,
)
from ultrachat.monitoring.collector import MetricsCollector, node_name, readiness
from ultrachat.monitoring.live import LiveFeed
from ultrachat.monitoring.probe import BusProbe
from ultrachat.monitoring.readings import Reader

if TYPE_CHECKING:
    from ultrachat.gateway.runtime import Runtime


def monitoring_for(runtime: Runtime) -> tuple[MetricsCollector, LiveFeed]:
    settings = runtime.settings
    node = node_name()
    store: ActiveUserStore = (
        RedisActiveUsers(runtime.redis, settings.redis_key_prefix)
        if runtime.redis is not None
        else MemoryActiveUsers()
    )
    hub = runtime.hub
    # Connected users come from the hub (one id per user, however many sockets).
    active_users = ActiveUsers(store, lambda: {c.user_id for c in hub.connections.values()})
    clustered = runtime.redis is not None
    collector = MetricsCollector(
        runtime.db,
        Reader(settings.data_dir, lambda: len(hub.connections), runtime.pools),
        active_users,
        BusProbe(runtime.bus, node),
        ready=readiness(
            runtime.db,
            runtime.shared_state if clustered else None,
            runtime.bus if clustered else None,
        ),
        billing=runtime.billing,
        node=node,
        interval=settings.metrics_interval_seconds,
        retention_days=settings.metrics_retention_days,
    )
    return collector, LiveFeed(collector, settings.metrics_live_interval_seconds)
