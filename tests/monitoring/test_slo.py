"""The SLO report: pass, fail and "no data", from the history of every node."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.auth.factories import Account, account, assert_error
from tests.monitoring.factories import hour_of, stored
from ultrachat.monitoring import history
from ultrachat.monitoring.slo import SloReport, slo_report, summarize

HOUR = timedelta(hours=1)
URL = "/api/v1/admin/slo"


def base_time() -> datetime:
    """A moment of this test's own: weeks ahead (no collector writes there), within the
    partitions PostgreSQL keeps ready."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(
        days=20, minutes=secrets.randbelow(20_000)
    )


def statuses(report: SloReport) -> dict[str, str]:
    return {line.name: line.status for line in report.lines}


def values(report: SloReport) -> dict[str, float | None]:
    return {line.name: line.value for line in report.lines}


def test_a_good_hour_passes() -> None:
    end = base_time()
    rows = hour_of(end, requests=10_000, latencies=[0.02] * 10_000, hits=95, lookups=100)
    report = summarize(rows, end - HOUR, end)
    assert statuses(report) == dict.fromkeys(
        ["api_latency_p99", "error_rate", "cache_hit_rate", "uptime"], "pass"
    )
    assert report.passed
    figures = values(report)
    assert figures["error_rate"] == 0.0
    assert figures["cache_hit_rate"] == 95.0
    assert figures["uptime"] == 100.0
    p99 = figures["api_latency_p99"]
    assert p99 is not None and 10 < p99 <= 25  # ms: the 20 ms bucket
    assert (report.requests, report.snapshots, report.nodes) == (600_000, 60, 1)
    assert [line.target for line in report.lines] == ["< 100 ms", "< 0.01%", "> 90%", ">= 99.99%"]


def test_a_bad_hour_fails_each_line_with_its_figure() -> None:
    end = base_time()
    slow = [0.01] * 970 + [0.3] * 30  # 3% of requests take 300 ms
    rows = hour_of(
        end, skip=range(20, 30), requests=1000, errors=1, latencies=slow, hits=80, lookups=100
    )
    report = summarize(rows, end - HOUR, end)
    assert statuses(report) == dict.fromkeys(
        ["api_latency_p99", "error_rate", "cache_hit_rate", "uptime"], "fail"
    )
    assert not report.passed
    figures = values(report)
    p99 = figures["api_latency_p99"]
    assert p99 is not None and 250 < p99 <= 500
    assert figures["error_rate"] == 0.1  # percent: 1 in 1000
    assert figures["cache_hit_rate"] == 80.0
    # Ten minutes without a snapshot are down: 49 of the 59 judged minutes are covered.
    uptime = figures["uptime"]
    assert uptime is not None and abs(uptime - 100 * 49 / 59) < 0.1


def test_a_node_not_ready_is_down() -> None:
    end = base_time()
    rows = hour_of(end, requests=10)
    rows[5] = (rows[5][0], "node-a:1", stored(at=rows[5][0], requests=10, ready=False))
    report = summarize(rows, end - HOUR, end)
    assert statuses(report)["uptime"] == "fail"


def test_nothing_recorded_is_no_data_and_does_not_pass() -> None:
    end = base_time()
    empty = summarize([], end - HOUR, end)
    assert statuses(empty) == dict.fromkeys(
        ["api_latency_p99", "error_rate", "cache_hit_rate", "uptime"], "no data"
    )
    assert [line.value for line in empty.lines] == [None] * 4
    assert not empty.passed
    # An idle but healthy hour: up, but nothing to say about latency, errors or the cache.
    idle = summarize(hour_of(end), end - HOUR, end)
    assert statuses(idle) == {
        "api_latency_p99": "no data",
        "error_rate": "no data",
        "cache_hit_rate": "no data",
        "uptime": "pass",
    }


def test_nodes_are_merged_by_counts_not_by_averaging() -> None:
    end = base_time()
    rows = []
    for minute in range(60):
        at = end - timedelta(minutes=minute)
        # Node a is fast and busy; node b slow and quiet, and collects only in the first half.
        rows.append((at, "a:1", stored(at=at, node="a:1", requests=1000, latencies=[0.004] * 1000)))
        if minute >= 30:
            rows.append((at, "b:1", stored(at=at, node="b:1", requests=1, latencies=[2.0])))
    report = summarize(rows, end - HOUR, end)
    p99 = values(report)["api_latency_p99"]
    assert p99 is not None and p99 <= 5  # ms: the merged p99, not the mean of 4 ms and 2 s
    assert report.nodes == 2 and report.requests == 60_030


async def test_report_reads_the_history_of_every_node(app: FastAPI) -> None:
    db = app.state.runtime.db
    end = base_time()
    for minute in range(60):
        at = end - timedelta(minutes=minute)
        node = "a:1" if minute % 2 else "b:2"  # each minute covered by one node or the other
        await history.append(db, at, node, stored(at=at, node=node, requests=100, errors=0))
    # Outside the window: ignored.
    late = end + timedelta(minutes=1)
    await history.append(db, late, "a:1", stored(at=late, requests=100, errors=100))

    report = await slo_report(db, HOUR, now=end)
    assert (report.snapshots, report.nodes, report.requests, report.errors) == (60, 2, 6000, 0)
    assert statuses(report)["uptime"] == "pass"
    assert statuses(report)["error_rate"] == "pass"


async def test_the_endpoint_is_for_admins(client: httpx.AsyncClient, admin: Account) -> None:
    assert_error(await client.get(URL), 401, "unauthorized")
    member = await account(client)
    assert_error(await client.get(URL, headers=member.headers), 403, "forbidden")
    for bad in ("10", "abc", str(91 * 86_400)):
        response = await client.get(URL, params={"window": bad}, headers=admin.headers)
        assert_error(response, 422, "invalid_input")

    response = await client.get(URL, params={"window": 1800}, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [line["name"] for line in body["lines"]] == [
        "api_latency_p99",
        "error_rate",
        "cache_hit_rate",
        "uptime",
    ]
    for line in body["lines"]:
        assert set(line) == {"name", "value", "unit", "target", "status"}
        assert line["status"] in ("pass", "fail", "no data")
    since = datetime.fromisoformat(body["since"])
    until = datetime.fromisoformat(body["until"])
    assert until - since == timedelta(seconds=1800)
    assert body["passed"] == all(line["status"] == "pass" for line in body["lines"])
