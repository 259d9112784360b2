"""One contract for every bus: the in-process MemoryBus and the RedisBus.

Ordering makes the negative checks deterministic: both buses deliver one node's messages in
publish order, so once a later "marker" message has arrived, anything that should not have
been delivered before it would already be in the inbox.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.backends import REDIS_URL, redis_prefix
from ultrachat.bus import Bus
from ultrachat.bus.memory import MemoryBus
from ultrachat.bus.redis import RedisBus

TIMEOUT = 5.0


class Inbox:
    """A bus handler that records (topic, payload) and lets a test wait for arrivals."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.received.append((topic, payload))
        self._arrived.set()

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.received]

    async def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        async def enough() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), timeout)


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


class RedisHandle:
    def __init__(self, client: Redis, name: str) -> None:
        self.client = client
        self.name = name

    async def kill_subscriber_connection(self) -> None:
        """Kill this test's own pub/sub connection, and nothing else, server side."""
        clients: list[dict[str, Any]] = await self.client.client_list()
        mine = [c for c in clients if c.get("name") == self.name and int(c.get("sub", 0)) > 0]
        assert len(mine) == 1, mine
        await self.client.execute_command("CLIENT", "KILL", "ID", mine[0]["id"])


@asynccontextmanager
async def redis_bus() -> AsyncIterator[tuple[RedisBus, RedisHandle]]:
    """A RedisBus on an isolated prefix, its client named so the test can find it."""
    async with redis_prefix() as prefix:
        name = f"uctest-bus-{secrets.token_hex(4)}"
        client = Redis.from_url(
            REDIS_URL, socket_connect_timeout=2, socket_timeout=5, client_name=name
        )
        bus = RedisBus(client, prefix)
        await bus.start()
        try:
            await until(lambda: bus.healthy)
            yield bus, RedisHandle(client, name)
        finally:
            await bus.close()
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus()
        await memory.start()
        yield memory
        await memory.close()
        return
    async with redis_bus() as (bus, _):
        yield bus


async def test_publish_reaches_the_topic_subscriber(bus: Bus) -> None:
    inbox = Inbox()
    await bus.subscribe("channel:a", inbox)
    await bus.publish("channel:a", b"hello")
    await bus.publish("channel:a", b"again")
    await inbox.wait_for(2)
    assert inbox.received == [("channel:a", b"hello"), ("channel:a", b"again")]
    assert bus.healthy


async def test_publish_many_delivers_in_order(bus: Bus) -> None:
    a, b = Inbox(), Inbox()
    await bus.subscribe("channel:a", a)
    await bus.subscribe("channel:b", b)
    await bus.publish_many([])
    await bus.publish_many(
        [("channel:a", b"1"), ("channel:b", b"2"), ("channel:nobody", b"3"), ("channel:a", b"4")]
    )
    await a.wait_for(2)
    await b.wait_for(1)
    assert a.payloads == [b"1", b"4"]
    assert b.payloads == [b"2"]


async def test_other_topics_are_not_delivered(bus: Bus) -> None:
    a, b = Inbox(), Inbox()
    await bus.subscribe("channel:a", a)
    await bus.subscribe("channel:b", b)
    await bus.publish("channel:nobody", b"lost")
    await bus.publish("channel:a", b"for a")
    await bus.publish("channel:b", b"marker")
    await b.wait_for(1)
    await a.wait_for(1)
    assert a.received == [("channel:a", b"for a")]
    assert b.received == [("channel:b", b"marker")]


async def test_unsubscribe_stops_delivery(bus: Bus) -> None:
    inbox, marker = Inbox(), Inbox()
    await bus.subscribe("channel:a", inbox)
    await bus.subscribe("channel:marker", marker)
    await bus.publish("channel:a", b"before")
    await inbox.wait_for(1)
    await bus.unsubscribe("channel:a")
    await bus.unsubscribe("channel:a")  # twice is harmless
    await bus.publish("channel:a", b"after")
    await bus.publish("channel:marker", b"marker")
    await marker.wait_for(1)
    assert inbox.payloads == [b"before"]


async def test_subscribe_is_active_when_it_returns(bus: Bus) -> None:
    inboxes = [Inbox() for _ in range(20)]
    for i, inbox in enumerate(inboxes):
        await bus.subscribe(f"user:{i}", inbox)
        await bus.publish(f"user:{i}", str(i).encode())  # no pause in between
    for i, inbox in enumerate(inboxes):
        await inbox.wait_for(1)
        assert inbox.received == [(f"user:{i}", str(i).encode())]


async def test_resubscribe_after_unsubscribe(bus: Bus) -> None:
    inbox = Inbox()
    await bus.subscribe("channel:a", inbox)
    await bus.unsubscribe("channel:a")
    await bus.subscribe("channel:a", inbox)
    await bus.publish("channel:a", b"back")
    await inbox.wait_for(1)
    assert inbox.payloads == [b"back"]


async def test_redis_bus_reconnects_by_itself() -> None:
    async with redis_bus() as (bus, redis):
        await _kill_and_recover(bus, redis)


async def _kill_and_recover(bus: RedisBus, redis: RedisHandle) -> None:
    reconnected = asyncio.Event()

    async def listener() -> None:
        reconnected.set()

    bus.on_reconnect(listener)
    inbox = Inbox()
    await bus.subscribe("channel:a", inbox)
    await bus.publish("channel:a", b"before")
    await inbox.wait_for(1)

    await redis.kill_subscriber_connection()
    await until(lambda: not bus.healthy)
    await until(lambda: bus.healthy)
    await asyncio.wait_for(reconnected.wait(), TIMEOUT)

    await bus.publish("channel:a", b"after")
    await inbox.wait_for(2)
    assert inbox.payloads == [b"before", b"after"]
    later = Inbox()
    await bus.subscribe("channel:later", later)
    await bus.publish("channel:later", b"new topic")
    await later.wait_for(1)
    assert later.payloads == [b"new topic"]
