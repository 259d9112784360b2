"""Send admission: a node behind on deliveries refuses a share of new sends, at once and
without writing anything, and takes them all again once it has caught up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.chat.factories import accounts, create, kinds
from tests.monitoring.test_probe import Clock
from ultrachat.bus.base import ReconnectListener
from ultrachat.bus.memory import MemoryBus
from ultrachat.chat.admission import (
    FAST_STEP_DOWN,
    MAX_STEP_UP,
    STEP_DOWN,
    STEP_UP,
    SendAdmission,
)
from ultrachat.chat.group_commit import GroupCommitter
from ultrachat.errors import Overloaded
from ultrachat.metrics.chat import DELIVERY_LAG, SENDS_SHED
from ultrachat.realtime import session
from ultrachat.realtime.connection import Connection


def _shed(reason: str) -> float:
    return SENDS_SHED.labels(reason)._value.get()


class HeldBus(MemoryBus):
    """The in-process bus, except that while ``holding`` it keeps what is published until
    ``release``: a node whose subscriber is behind (frames queued in Redis for it)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.down = False
        self._held: list[tuple[str, bytes]] = []
        self._listeners: list[ReconnectListener] = []

    def on_reconnect(self, listener: ReconnectListener) -> None:
        self._listeners.append(listener)

    async def recover(self) -> None:
        """An outage ends: what was held is gone (pub/sub is at most once); listeners hear."""
        self._held, self.holding = [], False
        for listener in self._listeners:
            await listener()

    async def publish(self, topic: str, payload: bytes) -> None:
        if self.holding:
            self._held.append((topic, payload))
        else:
            await super().publish(topic, payload)

    async def release(self) -> None:
        held, self._held, self.holding = self._held, [], False
        for topic, payload in held:
            await super().publish(topic, payload)

    @property
    def healthy(self) -> bool:
        return not self.down


def _ratios(admission: SendAdmission, lags: list[float]) -> list[float]:
    out = []
    for lag in lags:
        admission.observe(lag)
        out.append(round(admission.refusal_ratio, 6))
    return out


def test_a_lone_stall_refuses_nothing() -> None:
    admission = SendAdmission(MemoryBus(), "n", target=1.0, sustain=1.0, interval=0.25)
    # Over the target, but never for a whole second (4 ticks) in a row.
    assert _ratios(admission, [5.0, 5.0, 5.0, 0.2, 5.0, 5.0, 5.0, 0.2]) == [0.0] * 8
    admission.admit()  # does not raise


def test_sustained_lag_sheds_a_growing_share_and_catching_up_takes_it_back() -> None:
    draws = iter([0.5] * 100)
    admission = SendAdmission(
        MemoryBus(), "n", target=1.0, sustain=1.0, interval=0.25, chance=lambda: next(draws)
    )
    ratios = _ratios(admission, [3.0] * 7)
    assert ratios[:3] == [0.0, 0.0, 0.0]  # not yet a second over the target
    # Three targets behind: three steps a tick.
    assert ratios[3:] == [round(3 * STEP_UP * n, 6) for n in range(1, 5)]
    before = _shed("lag")
    with pytest.raises(Overloaded) as refused:
        admission.admit()  # the draw (0.5) is under the ratio (0.6)
    assert refused.value.code == "overloaded" and refused.value.status_code == 503
    # Come back once the node has worked through its lag (3 s here).
    assert refused.value.headers == {"Retry-After": "3"} and refused.value.retry_after == 3
    assert _shed("lag") == before + 1
    # Under the target: the ratio falls back, a step at a time, to nothing refused.
    ratios = _ratios(admission, [0.8] * 2 + [0.4] * 40)
    assert ratios[:2] == [round(0.6 - STEP_DOWN, 6), round(0.6 - 2 * STEP_DOWN, 6)]
    # Under half the target, the backlog is gone: faster.
    assert ratios[2] == round(0.6 - 2 * STEP_DOWN - FAST_STEP_DOWN, 6)
    assert ratios[-1] == 0.0
    admission.admit()


def test_far_behind_sheds_faster_and_a_draining_backlog_holds_the_share() -> None:
    admission = SendAdmission(MemoryBus(), "n", target=1.0, sustain=1.0, interval=0.25)
    ratios = _ratios(admission, [2.0, 2.0, 2.0, 2.0, 10.0, 12.0])
    assert ratios[3] == round(2 * STEP_UP, 6)  # twice the target: two steps
    assert ratios[4] == round(2 * STEP_UP + MAX_STEP_UP, 6)  # ten times: capped
    assert ratios[5] == round(2 * STEP_UP + 2 * MAX_STEP_UP, 6)
    # Still over the target but falling: the backlog drains at this share; it is kept.
    assert _ratios(admission, [8.0, 5.0, 2.0]) == [ratios[5]] * 3
    # Growing again: shed more.
    assert _ratios(admission, [2.5]) == [round(ratios[5] + 2.5 * STEP_UP, 6)]


async def test_the_lag_is_the_probes_wait_behind_the_nodes_queue() -> None:
    bus, clock = HeldBus(), Clock()
    # One tick a second of control; this test calls tick() itself instead of waiting.
    admission = SendAdmission(bus, "n", target=1.0, sustain=1.0, interval=1.0, clock=clock)
    await admission.start()
    try:
        await admission.tick()  # nothing queued: the probe comes straight back
        assert admission.lag == 0.0
        bus.holding = True
        await admission.tick()  # this probe waits behind the held frames
        clock.now += 2.5
        await admission.tick()  # still out after 2.5 s: that is the lag already
        assert admission.lag == 2.5 and admission.refusal_ratio == pytest.approx(2.5 * STEP_UP)
        clock.now += 0.5
        await bus.release()  # the first came back after 3 s, the second after 0.5 s
        await admission.tick()
        assert admission.lag == 3.0
        assert admission.refusal_ratio == pytest.approx(5.5 * STEP_UP)
        await admission.tick()  # caught up
        assert admission.lag == 0.0
        assert admission.refusal_ratio == pytest.approx(5.5 * STEP_UP - FAST_STEP_DOWN)
        # A bus outage is not overload: its probes never come back, and are not counted.
        bus.holding, bus.down = True, True
        clock.now += 10
        await admission.tick()
        assert admission.lag == 0.0
    finally:
        await admission.stop()


def _lags_over_quarter_second() -> float:
    samples = {(s.name, s.labels.get("le")): s.value for s in DELIVERY_LAG.collect()[0].samples}
    return (
        samples[("ultrachat_delivery_lag_seconds_count", None)]
        - samples[("ultrachat_delivery_lag_seconds_bucket", "0.25")]
    )


async def test_probes_lost_in_a_bus_outage_are_not_counted_after_it() -> None:
    bus, clock = HeldBus(), Clock()
    admission = SendAdmission(bus, "n", target=1.0, sustain=1.0, interval=1.0, clock=clock)
    await admission.start()
    try:
        bus.holding = True
        await admission.tick()  # this probe is lost with the connection
        clock.now += 5
        await bus.recover()
        await admission.tick()  # 5 s since it left, but it is not coming back: not lag
        assert admission.lag == 0.0 and admission.refusal_ratio == 0.0
    finally:
        await admission.stop()


async def test_the_commit_backlog_adds_to_the_bus_lag() -> None:
    bus, clock = HeldBus(), Clock()
    backlog = [3.0]
    admission = SendAdmission(
        bus, "n", target=1.0, sustain=1.0, interval=1.0, clock=clock, backlog=lambda: backlog[0]
    )
    await admission.start()
    try:
        await admission.tick()  # the bus is on time; the oldest unacked send waited 3 s
        assert admission.lag == 3.0 and admission.refusal_ratio == pytest.approx(3 * STEP_UP)
        bus.holding = True
        await admission.tick()
        clock.now += 0.5
        backlog[0] = 0.25
        await admission.tick()  # a message sent now: 0.25 s to its commit, 0.5 s on the bus
        assert admission.lag == 0.75
    finally:
        await admission.stop()


async def test_a_blocked_event_loop_counts_as_lag() -> None:
    admission = SendAdmission(MemoryBus(), "n", target=0.2, sustain=0.05, interval=0.05)
    before = _lags_over_quarter_second()
    await admission.start()
    try:
        await asyncio.sleep(0.01)  # the control task is asleep until its next tick
        time.sleep(0.5)  # blocks the event loop: nothing else runs meanwhile
        await asyncio.sleep(0.1)
    finally:
        await admission.stop()
    assert _lags_over_quarter_second() >= before + 1


@asynccontextmanager
async def shedding_everything(app: FastAPI) -> AsyncIterator[SendAdmission]:
    """The app's node, held at a refusal ratio of 1 with a lag of 2 s over a 1 s target
    (its control task stopped meanwhile)."""
    admission: SendAdmission = app.state.runtime.admission
    await admission.stop()
    try:
        assert admission.target == 1.0
        while admission.refusal_ratio < 1:
            admission.observe(2.0)
        yield admission
    finally:
        while admission.refusal_ratio > 0:
            admission.observe(0.0)
        await admission.start()


async def test_a_refused_rest_send_is_503_overloaded_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, member = await accounts(client, 2)
    channel_id = (await create(client, owner, "public", member))["id"]
    url = f"/api/v1/channels/{channel_id}/messages"
    body = {"body": "hello", "client_msg_id": "once"}
    async with shedding_everything(app):
        refused = await client.post(url, json=body, headers=member.headers)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "2"  # the node's lag, in whole seconds
    assert refused.json()["error"]["code"] == "overloaded"
    assert "message.created" not in await kinds(app, channel_id)
    # The retry, with the same client_msg_id, is stored once, right after the last seq.
    stored = await client.post(url, json=body, headers=member.headers)
    assert stored.status_code == 201, stored.text
    assert (await kinds(app, channel_id)).count("message.created") == 1
    assert stored.json()["seq"] == len(await kinds(app, channel_id))


class RecordingConnection(Connection):
    """A connection whose frames are kept, for the session's handlers alone."""

    __slots__ = ("frames",)

    def __init__(self, user_id: str) -> None:
        super().__init__("c1", user_id, "s1", max_queue=10)
        self.frames: list[dict[str, Any]] = []

    def push(self, frame: bytes | str) -> None:
        self.frames.append(orjson.loads(frame))


async def test_a_refused_websocket_send_is_an_overloaded_frame_with_its_retry(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, member = await accounts(client, 2)
    channel_id = (await create(client, owner, "public", member))["id"]
    connection = RecordingConnection(member.id)
    send = {"type": "send", "channel_id": channel_id, "body": "hi", "client_msg_id": "ws-1"}
    async with shedding_everything(app):
        await session.send(app.state.runtime, connection, send)
    assert connection.frames == [
        {
            "type": "error",
            "client_msg_id": "ws-1",
            "retry_after_ms": 2000,
            "code": "overloaded",
            "message": "this server is behind on deliveries and refused the message;"
            " retry with the same client_msg_id",
        }
    ]
    assert "message.created" not in await kinds(app, channel_id)
    await session.send(app.state.runtime, connection, send)
    assert connection.frames[-1]["type"] == "ack"


async def test_a_full_commit_queue_refuses_at_once_and_keeps_what_it_took(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, member = await accounts(client, 2)
    channel_id = (await create(client, owner, "public", member))["id"]
    runtime = app.state.runtime
    # Not started yet: what it takes waits in its queue.
    committer = GroupCommitter(runtime.db, runtime.ledger, max_queued=3)

    def submit(n: int) -> Any:
        return committer.submit(member.id, channel_id, f"m{n}", f"q{n}", None, [])

    queued = [asyncio.ensure_future(submit(n)) for n in range(3)]
    await asyncio.sleep(0)  # all three are in the queue now
    before = _shed("queue")
    with pytest.raises(Overloaded) as refused:
        await submit(3)
    assert (refused.value.code, refused.value.message, refused.value.headers) == (
        "overloaded",
        "too many messages are waiting to be stored; retry with the same client_msg_id",
        {"Retry-After": "1"},
    )
    assert _shed("queue") == before + 1
    # The longer the oldest has waited, the later the refused are asked back.
    committer._queue[0].queued_at -= 3.5
    with pytest.raises(Overloaded) as later:
        await submit(4)
    assert later.value.headers == {"Retry-After": "4"}
    await asyncio.sleep(0.2)
    assert committer.oldest_wait() >= 0.2  # what send admission adds to the bus lag
    await committer.start()
    await committer.stop()  # commits everything it took
    assert committer.oldest_wait() == 0.0
    outcomes = await asyncio.gather(*queued)
    assert [o.data["body"] for o in outcomes if o.data] == ["m0", "m1", "m2"]
    assert (await kinds(app, channel_id)).count("message.created") == 3
