"""The collector's figures match known activity: counts, rates and quantiles per interval."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Response

from tests.monitoring.factories import BOUNDS, ZERO, add, cumulative
from ultrachat.gateway.middleware import EdgeMiddleware
from ultrachat.monitoring.figures import figures, histogram_quantile, merge_buckets
from ultrachat.monitoring.readings import Reader


def tiny_app() -> FastAPI:
    """Routes with known answers behind the real edge middleware (which observes them)."""
    app = FastAPI()

    @app.get("/api/test/ok")
    async def ok() -> Response:
        return Response(status_code=200)

    @app.get("/api/test/status/{code}")
    async def status(code: int) -> Response:
        return Response(status_code=code)

    @app.get("/api/v1/admin/live")  # stands in for the stream: excluded from API figures
    async def live() -> Response:
        return Response(status_code=200)

    @app.get("/healthz")  # not an API route: excluded
    async def healthz() -> Response:
        return Response(status_code=503)

    app.add_middleware(EdgeMiddleware, max_body_bytes=1024)
    return app


async def test_n_requests_with_m_server_errors_give_m_over_n(tmp_path: Path) -> None:
    reader = Reader(tmp_path)
    transport = httpx.ASGITransport(app=tiny_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        before = reader.read()
        for _ in range(40):
            assert (await client.get("/api/test/ok")).status_code == 200
        for code in (500, 503, 502):  # M = 3 server errors
            assert (await client.get(f"/api/test/status/{code}")).status_code == code
        for code in (404, 429, 401, 403):  # client errors: requests, not errors
            await client.get(f"/api/test/status/{code}")
        await client.get("/api/test/nowhere")  # matches no route: not API traffic
        await client.get("/healthz")
        await client.get("/api/v1/admin/live")
        after = reader.read()

    interval = figures(before, after)
    assert interval.requests == 47
    assert interval.errors == 3
    assert interval.error_ratio == 3 / 47
    assert interval.latency_buckets[math.inf] == 47
    assert interval.requests_per_s == pytest.approx(47 / interval.seconds)


def test_figures_are_deltas_not_totals() -> None:
    # Since boot: 1000 requests, 10 errors. In this interval: 100 requests, 1 error.
    old = replace(
        ZERO,
        requests=1000,
        errors=10,
        latency=cumulative([0.2] * 1000),
        messages_in=5000,
        deliveries_out=20_000,
        cache={"chat-messages": (900.0, 100.0)},
        process_cpu_seconds=50.0,
        host_cpu_busy_seconds=400.0,
        host_cpu_total_seconds=1000.0,
    )
    new = replace(
        old,
        monotonic=old.monotonic + 10,
        requests=1100,
        errors=11,
        latency=add(old.latency, cumulative([0.004] * 100)),
        messages_in=5050,
        deliveries_out=20_400,
        cache={"chat-messages": (990.0, 110.0), "user-profiles": (3.0, 1.0)},
        process_cpu_seconds=55.0,
        host_cpu_busy_seconds=410.0,
        host_cpu_total_seconds=1040.0,
        connections=7,
    )
    interval = figures(old, new)
    assert (interval.seconds, interval.requests, interval.errors) == (10, 100, 1)
    assert interval.error_ratio == 0.01
    assert interval.requests_per_s == 10.0
    assert interval.per_second(interval.messages_in) == 5.0
    assert interval.per_second(interval.deliveries_out) == 40.0
    # Only this interval's requests (all 4 ms), not the 200 ms ones from before.
    p99 = interval.latency(0.99)
    assert p99 is not None and 0.0025 < p99 <= 0.005
    assert interval.cache["chat-messages"].hit_ratio == 0.9  # 90 of 100 lookups
    assert interval.cache["user-profiles"].hit_ratio == 0.75
    assert interval.cache_hit_ratio == 93 / 104
    assert interval.process_cpu_percent == 50.0  # 5 s of CPU in 10 s
    assert interval.host_cpu_percent == 25.0  # 10 busy of 40
    assert interval.now.connections == 7


def test_an_interval_without_traffic_has_no_ratios() -> None:
    interval = figures(ZERO, replace(ZERO, monotonic=ZERO.monotonic + 60))
    assert interval.error_ratio is None
    assert interval.latency(0.99) is None
    assert interval.cache_hit_ratio is None
    assert interval.requests_per_s == 0.0


def test_percentiles_land_in_the_right_bucket() -> None:
    # 90 fast requests (3 ms), 9 at 60 ms, 1 slow (300 ms).
    buckets = cumulative([0.003] * 90 + [0.06] * 9 + [0.3])
    p50, p95, p99 = (histogram_quantile(q, buckets) for q in (0.5, 0.95, 0.99))
    assert p50 is not None and 0.0025 < p50 <= 0.005
    assert p95 is not None and 0.05 < p95 <= 0.075
    assert p99 is not None and 0.05 < p99 <= 0.075  # rank 99 is the last 60 ms request
    # Linear interpolation inside the bucket, as Prometheus' histogram_quantile.
    assert p50 == pytest.approx(0.0025 + (0.005 - 0.0025) * 50 / 90)
    assert histogram_quantile(0.999, buckets) == pytest.approx(0.25 + 0.25 * (99.9 - 99))


def test_quantile_edges() -> None:
    assert histogram_quantile(0.99, {}) is None
    assert histogram_quantile(0.99, cumulative([])) is None
    # Beyond the last finite bound: the highest finite bound, as Prometheus answers.
    assert histogram_quantile(0.99, cumulative([30.0] * 10)) == 5.0
    assert histogram_quantile(0.5, {math.inf: 4.0}) is None


def test_merging_adds_counts_and_keeps_common_bounds() -> None:
    a, b = cumulative([0.003] * 10), cumulative([0.3] * 10)
    merged = merge_buckets([a, {}, b])
    assert merged[math.inf] == 20 and merged[0.005] == 10
    coarse = {0.1: 1.0, 1.0: 2.0, math.inf: 2.0}
    assert set(merge_buckets([a, coarse])) == {0.1, 1.0, math.inf}
    assert set(BOUNDS) == set(a)
