"""A collector tick: one history row for this node, the gauges set, old rows pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import select

from tests.auth.factories import account
from tests.support.deployment import Deployment
from ultrachat.monitoring import history
from ultrachat.monitoring.currency import major_units
from ultrachat.monitoring.models import MetricsSnapshot


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def deployment_settings() -> dict[str, Any]:
    return {"metrics_retention_days": 1}


async def test_a_tick_writes_a_row_and_sets_the_gauges(deployment: Deployment) -> None:
    runtime, client = deployment.runtime, deployment.client
    collector = runtime.collector
    plan = await runtime.billing.create_plan("Team", 1234, "USD")
    await runtime.billing.create_subscription(plan.id, "acme")
    await runtime.billing.create_plan("Yen", 500, "JPY")
    member = await account(client)
    for _ in range(3):
        assert (await client.get("/api/v1/channels", headers=member.headers)).status_code == 200
    long_ago = datetime.now(UTC) - timedelta(days=3)
    await history.append(runtime.db, long_ago, "gone:1", {"v": 1})
    await collector.active_users.flush()

    snapshot = await collector.tick()
    # Read the gauges before anything else can run (other apps' collectors share them).
    assert gauge("ultrachat_up") == 1
    assert gauge("ultrachat_active_users") == snapshot.active_users == 1
    assert gauge("ultrachat_requests_per_second") == snapshot.figures.requests_per_s > 0
    assert gauge("ultrachat_error_ratio") == 0.0
    p99 = gauge("ultrachat_api_latency_seconds", quantile="0.99")
    assert p99 is not None and p99 == snapshot.figures.latency(0.99)
    assert gauge("ultrachat_active_subscriptions") == 1
    assert gauge("ultrachat_mrr", currency="USD") == 12.34
    assert (
        gauge("ultrachat_process_resident_memory_bytes") == snapshot.figures.now.process_rss_bytes
    )
    total = gauge("ultrachat_host_memory_total_bytes")
    assert total is not None and total > 0
    disk = gauge("ultrachat_disk_total_bytes")
    assert disk is not None and disk > 0

    async with runtime.db.sessions() as session:
        rows = (await session.scalars(select(MetricsSnapshot))).all()
    assert [row.node for row in rows] == [collector.node]  # the old row was pruned
    data = orjson.loads(rows[0].data)
    assert data == orjson.loads(orjson.dumps(snapshot.data()))
    assert data["ready"] is True
    # register, login, and the three lists: all API requests of this interval, none failed.
    assert data["http"]["requests"] >= 5 and data["http"]["errors"] == 0
    assert data["http"]["buckets"]["+Inf"] == data["http"]["requests"]
    assert data["active_users"] == 1
    assert data["pools"]["primary"]["size"] > 0
    assert data["bus"]["probes"] >= 1  # the probe sent at start came back
    assert data["business"] == {
        "active_subscriptions": 1,
        "mrr_cents_by_currency": {"USD": 1234},
        "churn_ratio": None,
    }

    # The next tick counts only what happened since this one.
    again = await collector.tick()
    assert again.figures.requests == 0

    exposition = generate_latest().decode()
    for name in (
        "ultrachat_active_users",
        "ultrachat_requests_per_second",
        "ultrachat_error_ratio",
        'ultrachat_api_latency_seconds{quantile="0.99"}',
        "ultrachat_messages_in_per_second",
        "ultrachat_deliveries_out_per_second",
        "ultrachat_bus_lag_seconds",
        "ultrachat_process_cpu_percent",
        "ultrachat_host_cpu_percent",
        "ultrachat_host_memory_used_bytes",
        "ultrachat_disk_used_bytes",
        "ultrachat_churn_ratio",
        "ultrachat_up",
    ):
        assert f"\n{name} " in exposition, name


async def test_stopping_writes_a_last_snapshot(deployment: Deployment) -> None:
    collector = deployment.runtime.collector
    await collector.stop()
    async with deployment.runtime.db.sessions() as session:
        nodes = (await session.scalars(select(MetricsSnapshot.node))).all()
    assert list(nodes) == [collector.node]
    assert gauge("ultrachat_up") == 0
    await collector.start()  # the deployment's own shutdown stops it again


def test_money_is_shown_in_currency_units() -> None:
    assert major_units(1234, "USD") == 12.34
    assert major_units(1234, "JPY") == 1234
    assert major_units(1234, "KWD") == 1.234
