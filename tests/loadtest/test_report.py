"""The report's arithmetic: percentiles, lost and duplicated deliveries, a connection's books."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import queue
import random
import time
from typing import Any

import orjson
import pytest

from ultrachat.loadtest.histogram import Histogram
from ultrachat.loadtest.kpi import evaluate
from ultrachat.loadtest.report import check_deliveries
from ultrachat.loadtest.scenario import Shape
from ultrachat.loadtest.worker import MAX_RETRY_DELAY, ConnPlan, Worker, WorkerPlan


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def test_percentiles_are_within_one_percent() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(8, 1.2) for _ in range(20_000)]  # µs, ms-scale latencies
    h = Histogram()
    for v in values:
        h.record(v)
    for q in (50, 90, 95, 99, 99.9):
        got = h.percentile(q)
        assert got is not None
        assert got == pytest.approx(exact(values, q) / 1000, rel=0.01)
    assert h.percentile(100) == pytest.approx(max(values) / 1000)
    assert h.summary()["max_ms"] == round(max(values) / 1000, 2)


def test_histograms_merge_across_processes() -> None:
    rng = random.Random(2)
    parts = [[rng.uniform(100, 90_000) for _ in range(3000)] for _ in range(3)]
    merged, whole = Histogram(), Histogram()
    for part in parts:
        h = Histogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(Histogram.from_wire(h.to_wire()))  # as if pickled from a worker
    assert merged.counts == whole.counts and merged.count == 9000
    assert merged.percentile(99) == whole.percentile(99)
    assert Histogram().percentile(50) is None
    assert Histogram().summary()["p99_ms"] is None


def test_every_acked_delivery_is_accounted_for() -> None:
    # Channel 0: seqs 5..8 acked; channel 1: seq 3. Seq 9 in channel 0 was never acked.
    acked = {0: [5, 6, 7, 8], 1: [3]}
    perfect = ([0, 1], [8, 3], {}, 0)
    tail_missing = ([0, 1], [6, 3], {}, 0)  # 7 and 8 never came
    hole = ([0], [9], {0: [6, 9]}, 2)  # 6 skipped (lost); 9 skipped but was not acked
    result = check_deliveries(acked, [perfect, tail_missing, hole])
    assert result.expected == 5 + 5 + 4
    assert result.lost == 2 + 1
    assert (result.missing, result.not_arrived) == (1, 2)  # 6 skipped; 7 and 8 still due
    assert result.delivered == result.expected - 3
    assert result.duplicated == 2
    assert {(e["connection"], e["seq"]) for e in result.lost_examples} == {(1, 7), (1, 8), (2, 6)}


def test_impossible_acks_are_flagged() -> None:
    result = check_deliveries({0: [5, 5, 6]}, [([0], [6], {}, 0)], baseline=[5])
    assert result.acked_seq_collisions == 1  # two messages acked with seq 5
    assert result.acked_before_run == 2  # seq 5 existed before the run began
    assert (result.expected, result.lost) == (2, 0)


def plan() -> WorkerPlan:
    return WorkerPlan(
        index=0,
        ws_urls=["ws://127.0.0.1:1/api/v1/ws"],
        http_urls=["http://127.0.0.1:1"],
        tokens={0: "t"},
        user_channels={0: [3, 4]},
        channel_ids={3: "c3", 4: "c4"},
        connections=[ConnPlan(0, 0, None)],
        rate=0.0,
        rest_mix={},
        shape=Shape("steady"),
        duration=1.0,
        body_bytes=64,
        connect_concurrency=1,
        connect_timeout=1.0,
        drain_timeout=1.0,
        seed=1,
    )


def event(channel: str, seq: int, body: str = "lt:0;x;") -> bytes:
    data: dict[str, Any] = {"body": body}
    return orjson.dumps(
        {
            "type": "event",
            "channel_id": channel,
            "seq": seq,
            "event": "message.created",
            "data": data,
        }
    )


def test_a_connection_books_order_gaps_duplicates_and_resets() -> None:
    worker = Worker(plan(), None, None)
    conn = worker.conns[0]
    conn.on_frame(event("c3", 1))
    assert worker.stats.early == 1  # before the run starts: ignored
    conn.heads = [10, 20]
    conn.live = True
    for seq in (11, 12, 14, 12, 13):  # 13 is late (fills the gap), 12 comes twice
        conn.on_frame(event("c3", seq))
    assert conn.heads[0] == 14 and conn.gaps == {0: set()}
    assert (worker.stats.duplicates, worker.stats.reorders, worker.stats.delivered) == (1, 1, 4)
    conn.on_frame(orjson.dumps({"type": "reset", "channel_id": "c4", "seq": 25}))
    assert conn.heads[1] == 25 and conn.gaps[1] == {21, 22, 23, 24, 25}
    conn.on_frame(event("elsewhere", 1))
    assert worker.stats.foreign == 1
    user, heads, skipped, dups = conn.state()
    assert (user, heads, skipped, dups) == (0, [14, 25], {1: [21, 22, 23, 24, 25]}, 1)


def test_a_connection_books_acks_and_refusals() -> None:
    worker = Worker(plan(), None, None)
    conn = worker.conns[0]
    conn.pending = {"a": (3, 0, b""), "b": (4, 0, b"")}
    conn.on_frame(orjson.dumps({"type": "ack", "client_msg_id": "a", "message_id": "m", "seq": 7}))
    conn.on_frame(orjson.dumps({"type": "ack", "client_msg_id": "a", "message_id": "m", "seq": 7}))
    conn.on_frame(orjson.dumps({"type": "error", "client_msg_id": "b", "code": "forbidden"}))
    assert worker.acks == {3: [7]}
    assert (worker.stats.acked, worker.stats.extra_acks) == (1, 1)
    assert worker.stats.send_errors == {"forbidden": 1}
    assert conn.pending == {}


def test_kpis_not_exercised_say_so() -> None:
    report: dict[str, Any] = {
        "connections": {"made": 10, "users": 5},
        "messages": {"sent": 0, "acked_per_second": 0.0},
        "latency_ms": {"rest_all": {"p99_ms": None}},
        "errors": {"total": 0, "operations": 10, "rate": 0.0},
        "server": None,
        "deliveries": {"expected": 0, "lost": 0, "duplicated": 0},
    }
    status = {line["kpi"]: line["status"] for line in evaluate(report)}
    assert status["API response time"] == "not measured"
    assert status["Cache hit rate"] == "not measured"
    assert status["Message processing"] == "not measured"
    assert status["Error rate"] == "pass"
    assert status["Real-time connections"] == "fail"  # 10 of 50,000
    assert status["Lost deliveries"] == "not measured"


async def test_the_drain_waits_while_a_backlog_still_arrives() -> None:
    # An overloaded server delivers late, not never: stopping at a fixed timeout would
    # call its queue "lost". Here frames keep arriving for 1 s, past the 0.3 s drain_timeout.
    worker = Worker(dataclasses.replace(plan(), drain_timeout=0.3), None, None)
    started = time.monotonic()
    arrivals = 0

    def progress() -> int:
        nonlocal arrivals
        if time.monotonic() - started < 1.0:
            arrivals += 1
        return arrivals

    await worker.wait(lambda: False, progress)
    assert time.monotonic() - started >= 1.0  # a fixed timeout would have stopped at 0.3 s
    # Done is done at once, however long the timeout.
    started = time.monotonic()
    await worker.wait(lambda: True, progress)
    assert time.monotonic() - started < 0.3


class RecordingLink:
    """Stands in for a connection's link: what the client would have put on the wire."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def close(self) -> None: ...
    def drop(self) -> None: ...
    async def closed(self) -> None: ...


def refusal(client_msg_id: str, code: str, retry_after_ms: int | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "client_msg_id": client_msg_id, "code": code}
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return orjson.dumps(frame)


async def test_a_refused_send_is_sent_again_after_the_servers_retry_after() -> None:
    worker = Worker(plan(), None, None)
    conn = worker.conns[0]
    link = RecordingLink()
    conn.link = link  # type: ignore[assignment]
    first_sent_ns = time.time_ns() - 2_000_000_000  # the message was first sent 2 s ago
    conn.pending = {"a": (3, first_sent_ns, b"frame-a")}

    conn.on_frame(refusal("a", "overloaded", retry_after_ms=40))
    assert "a" in conn.pending and link.sent == []  # kept, not resent at once
    await asyncio.sleep(0.07)  # 40 ms, stretched by at most half
    assert link.sent == [b"frame-a"] and worker.stats.retried == 1

    conn.on_frame(refusal("a", "overloaded", retry_after_ms=150))  # the server's new word
    loop = asyncio.get_running_loop()
    assert 0.14 <= conn.retrying["a"].when() - loop.time() <= 0.225  # used as it is, jittered
    await asyncio.sleep(0.25)
    assert link.sent == [b"frame-a", b"frame-a"] and worker.stats.retried == 2

    conn.on_frame(orjson.dumps({"type": "ack", "client_msg_id": "a", "message_id": "m", "seq": 9}))
    assert conn.pending == {} and conn.refused == {} and conn.retrying == {}
    assert worker.stats.send_errors == {"overloaded": 2}
    assert worker.acks == {3: [9]}
    # The ack's latency counts from the first attempt: what the sender waited in all.
    assert worker.stats.ack.percentile(100) >= 2000


async def test_refusals_that_are_final_or_with_retrying_off_drop_the_send() -> None:
    worker = Worker(plan(), None, None)
    conn = worker.conns[0]
    conn.link = RecordingLink()  # type: ignore[assignment]
    conn.pending = {"a": (3, 0, b"a"), "b": (4, 0, b"b")}
    conn.on_frame(refusal("a", "forbidden"))  # not retryable: the message is refused for good
    assert list(conn.pending) == ["b"] and conn.retrying == {}

    off = Worker(dataclasses.replace(plan(), retry_refused=False), None, None)
    off.conns[0].pending = {"c": (3, 0, b"c")}
    off.conns[0].on_frame(refusal("c", "overloaded", retry_after_ms=1000))
    assert off.conns[0].pending == {} and off.conns[0].retrying == {}
    assert off.stats.send_errors == {"overloaded": 1} and off.stats.retried == 0


async def test_a_send_waiting_for_its_retry_is_not_resent_by_a_reconnect_too() -> None:
    results: queue.SimpleQueue[Any] = queue.SimpleQueue()
    worker = Worker(plan(), None, results)
    conn = worker.conns[0]
    conn.pending = {"waits": (3, 0, b"waits"), "in-flight": (4, 0, b"in-flight")}
    conn.on_frame(refusal("waits", "unavailable"))  # no retry_after_ms: 1-1.5 s
    link = RecordingLink()

    async def reopen(node: int) -> RecordingLink:
        return link

    conn.open = reopen  # type: ignore[method-assign]
    await conn.reconnect()
    assert link.sent == [b"in-flight"]  # the refused one goes out when its time comes
    assert "waits" in conn.retrying
    await worker.finish()  # stopping cancels the planned retry
    assert conn.retrying["waits"].cancelled()
    assert results.get_nowait()[0] == "result" and link.sent == [b"in-flight"]
    conn.on_frame(refusal("in-flight", "overloaded", retry_after_ms=10))
    assert "in-flight" not in conn.retrying  # a stopped run plans nothing more


async def test_a_retry_due_while_disconnected_goes_out_with_the_reconnect() -> None:
    worker = Worker(plan(), None, None)
    conn = worker.conns[0]
    conn.pending = {"a": (3, 0, b"a")}
    conn.on_frame(refusal("a", "overloaded", retry_after_ms=10))
    await asyncio.sleep(0.05)  # due, with no link: nothing to send it on
    assert worker.stats.retried == 1 and conn.retrying == {}
    link = RecordingLink()

    async def reopen(node: int) -> RecordingLink:
        return link

    conn.open = reopen  # type: ignore[method-assign]
    await conn.reconnect()
    assert link.sent == [b"a"]  # once


async def test_the_drain_waits_for_a_planned_retry_longer_than_its_timeout() -> None:
    # A refused send the server asked back later than drain_timeout is not a stall: the
    # drain used to give up on it and report it unacked.
    worker = Worker(dataclasses.replace(plan(), drain_timeout=0.2), None, None)
    conn = worker.conns[0]
    loop = asyncio.get_running_loop()

    class AckingLink(RecordingLink):
        def send(self, payload: bytes) -> None:
            super().send(payload)
            ack = {"type": "ack", "client_msg_id": "a", "message_id": "m", "seq": 1}
            loop.call_soon(conn.on_frame, orjson.dumps(ack))

    conn.link = AckingLink()  # type: ignore[assignment]
    conn.pending = {"a": (3, time.time_ns(), b"a")}
    conn.on_frame(refusal("a", "overloaded", retry_after_ms=500))
    await worker.wait(lambda: not conn.pending, worker._progress)
    assert conn.pending == {} and worker.stats.acked == 1


def test_without_the_servers_word_each_refusal_doubles_the_wait() -> None:
    async def planned_delays() -> list[float]:
        worker = Worker(plan(), None, None)
        conn = worker.conns[0]
        conn.pending = {"a": (3, 0, b"a")}
        loop = asyncio.get_running_loop()
        delays = []
        for _ in range(7):
            conn.on_frame(refusal("a", "internal_error"))
            handle = conn.retrying.pop("a")
            delays.append(handle.when() - loop.time())
            handle.cancel()
        return delays

    delays = asyncio.run(planned_delays())
    for refusals, delay in enumerate(delays, start=1):
        expected = min(MAX_RETRY_DELAY, 2 ** (refusals - 1))
        assert expected * 0.99 <= delay <= expected * 1.5
