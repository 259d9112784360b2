"""The live feed: server-sent events with the dashboard's keys, ending cleanly.

httpx's ASGI transport gathers a whole response before returning it, so in process the
stream is read by driving the ASGI app directly; a real server (tests/support/server.py)
shows it over a socket and shows that it ends when the server shuts down.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.auth.factories import Account, account, assert_error
from tests.monitoring.conftest import admin_account
from tests.support.backends import Backend, provision
from tests.support.server import cluster
from ultrachat.auth.service import grant_role
from ultrachat.storage import Database

URL = "/api/v1/admin/live"
KEYS = {
    "at",
    "connections",
    "active_users",
    "requests_per_s",
    "error_rate",
    "messages_per_s",
    "deliveries_per_s",
    "latency_ms",
    "cache_hit_rate",
    "cpu_percent",
    "memory_bytes",
    "slo",
}


def check_event(event: dict[str, Any]) -> None:
    """The wire contract of one event (docs/monitoring.md#the-live-feed)."""
    assert set(event) == KEYS
    assert isinstance(event["at"], str) and event["at"].endswith("Z")
    for key in ("connections", "active_users"):
        assert isinstance(event[key], int)
    for key in ("requests_per_s", "error_rate", "messages_per_s", "deliveries_per_s"):
        assert isinstance(event[key], float | int)
    assert set(event["latency_ms"]) == {"p50", "p95", "p99"}
    assert event["cache_hit_rate"] is None or 0 <= event["cache_hit_rate"] <= 1
    assert set(event["cpu_percent"]) == {"process", "host"}
    assert set(event["memory_bytes"]) == {"process", "host_used", "host_total"}
    assert event["memory_bytes"]["process"] > 0
    for line in event["slo"]:
        assert set(line) == {"name", "value", "target", "status"}
        assert line["status"] in ("pass", "fail", "no data")


def parse_events(body: bytes) -> list[dict[str, Any]]:
    events = []
    for block in body.split(b"\n\n"):
        data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
        if data:
            events.append(orjson.loads(b"\n".join(data)))
    return events


async def read_stream(app: FastAPI, token: str, count: int) -> tuple[int, dict[str, str], bytes]:
    """GET the feed in process; disconnect after ``count`` events. Returns once the app
    has finished, which proves a client leaving ends the stream."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("203.0.113.7", 50000),
        "server": ("test", 80),
    }
    gone = asyncio.Event()
    requested = False
    start: dict[str, Any] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if len(parse_events(bytes(body))) >= count:
                gone.set()

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers, bytes(body)


async def test_events_carry_the_contract_and_stop_when_the_client_leaves(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await admin_account(app, client)
    monkeypatch.setattr(app.state.runtime.live, "interval", 0.05)
    started = time.monotonic()
    status, headers, body = await read_stream(app, admin.access_token, 3)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert body.startswith(b"data: {") and body.endswith(b"\n\n")
    events = parse_events(body)
    assert len(events) >= 3
    for event in events:
        check_event(event)
    assert [line["name"] for line in events[0]["slo"]] == [
        "api_latency_p99",
        "error_rate",
        "cache_hit_rate",
        "uptime",
    ]
    assert time.monotonic() - started < 5


async def test_the_feed_is_for_admins(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(URL), 401, "unauthorized")
    member = await account(client)
    assert_error(await client.get(URL, headers=member.headers), 403, "forbidden")


async def test_a_stream_ends_when_the_server_stops(app: FastAPI, admin: Account) -> None:
    feed = app.state.runtime.live
    frames = feed.frames()
    first = await anext(frames)
    assert first.connections >= 0
    pending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    await feed.stop()  # what the server's shutdown (or its exit signal) does
    try:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, timeout=2)
    finally:
        await feed.start()  # the shared app keeps serving


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> Any:
    async with provision("sqlite", tmp_path / "db") as backend:
        yield backend


async def test_a_real_server_streams_and_shuts_down_cleanly(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    async with cluster(sqlite_backend, tmp_path, 1, metrics_live_interval_seconds=0.2) as (node,):
        async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
            register = {"username": "ops_admin", "password": "long-enough-passphrase"}
            assert (await http.post("/api/v1/auth/register", json=register)).status_code == 201
            db = Database(sqlite_backend.database_url, 1)
            try:
                await grant_role(db, "ops_admin", "admin")
            finally:
                await db.close()
            token = (await http.post("/api/v1/auth/login", json=register)).json()["access_token"]

            events: list[dict[str, Any]] = []
            headers = {"Authorization": f"Bearer {token}"}
            async with http.stream("GET", URL, headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.aiter_lines()
                async for line in lines:
                    if line.startswith("data: "):
                        events.append(orjson.loads(line[6:]))
                    if len(events) == 2:
                        break
                # The server is told to stop while the stream is open: the stream ends at
                # once, rather than holding the shutdown for its 10 s grace period.
                stopping = time.monotonic()
                node.process.send_signal(signal.SIGTERM)
                async for line in lines:
                    if line.startswith("data: "):
                        events.append(orjson.loads(line[6:]))
            ended = time.monotonic() - stopping
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert node.process.wait(timeout=10) in (0, -signal.SIGTERM)
    assert ended < 3, ended
    assert time.monotonic() - stopping < 5
    for event in events:
        check_event(event)
    log = node.log()
    assert '"level":"error"' not in log and "Traceback" not in log, log
    assert "timeout graceful shutdown exceeded" not in log, log
