"""Redis pub/sub bus: any number of nodes, one subscription per topic per node.

One dedicated connection reads every topic this node needs. If Redis drops, the reader
reconnects with backoff, resubscribes, and tells listeners, who close the gap by replaying
from the database: Redis pub/sub is at-most-once, and the design never relies on more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ultrachat.bus.base import Handler, ReconnectListener
from ultrachat.metrics.bus import (
    BUS_PUBLISHED,
    BUS_RECEIVED,
    BUS_RECONNECTS,
    BUS_SUBSCRIPTIONS,
    BUS_UP,
)

log = logging.getLogger(__name__)
_SUBSCRIBE_TIMEOUT = 5.0


class RedisBus:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "bus:"
        self._handlers: dict[str, Handler] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._listeners: list[ReconnectListener] = []
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._healthy = False
        self._connected = asyncio.Event()
        self._closing = False
        self._listener_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")

    async def close(self) -> None:
        self._closing = True
        reader = self._reader
        # On Python 3.11 a cancel that lands as redis-py's read timeout fires can be swallowed
        # (asyncio's timeout race), so cancel until the reader is really gone.
        while reader is not None and not reader.done():
            reader.cancel()
            await asyncio.wait({reader}, timeout=0.5)
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._client.publish(self._prefix + topic, payload)
        BUS_PUBLISHED.inc()

    async def publish_counted(self, topic: str, payload: bytes) -> int:
        # PUBLISH answers with the number of subscribed connections: one per subscribed node.
        receivers = await self._client.publish(self._prefix + topic, payload)
        BUS_PUBLISHED.inc()
        return int(receivers)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for topic, payload in messages:
                pipe.publish(self._prefix + topic, payload)
            await pipe.execute()
        BUS_PUBLISHED.inc(len(messages))

    async def subscribe(self, topic: str, handler: Handler) -> None:
        key = self._prefix + topic
        already = topic in self._handlers
        self._handlers[topic] = handler
        BUS_SUBSCRIPTIONS.set(len(self._handlers))
        pending = self._confirmations.get(key)
        if already:
            if pending is not None:
                await asyncio.wait_for(asyncio.shield(pending), _SUBSCRIBE_TIMEOUT)
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[key] = confirmed
        try:
            await asyncio.wait_for(self._connected.wait(), _SUBSCRIBE_TIMEOUT)
            assert self._pubsub is not None
            await self._pubsub.subscribe(key)
            await asyncio.wait_for(asyncio.shield(confirmed), _SUBSCRIBE_TIMEOUT)
        except BaseException:
            self._confirmations.pop(key, None)
            raise

    async def unsubscribe(self, topic: str) -> None:
        if self._handlers.pop(topic, None) is None:
            return
        BUS_SUBSCRIPTIONS.set(len(self._handlers))
        if self._pubsub is not None and self._healthy:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._prefix + topic)

    def on_reconnect(self, listener: ReconnectListener) -> None:
        self._listeners.append(listener)

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def _read_forever(self) -> None:
        backoff = 0.1
        first = True
        while not self._closing:
            try:
                await self._connect()
                backoff = 0.1
                if not first:
                    BUS_RECONNECTS.inc()
                    for listener in self._listeners:
                        task = asyncio.create_task(listener())
                        self._listener_tasks.add(task)  # held until done: never collected early
                        task.add_done_callback(self._listener_tasks.discard)
                first = False
                await self._pump()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("bus connection lost (%s); reconnecting in %.1fs", exc, backoff)
            self._set_health(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        # A channel-less pubsub has no connection yet; ping forces one so outages surface here.
        await self._pubsub.subscribe(self._prefix + "__heartbeat__")
        topics = [self._prefix + t for t in self._handlers]
        if topics:
            await self._pubsub.subscribe(*topics)
        self._set_health(True)

    async def _pump(self) -> None:
        assert self._pubsub is not None
        prefix_len = len(self._prefix)
        while not self._closing:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None:
                await self._pubsub.ping()
                continue
            kind = message["type"]
            raw_channel = message.get("channel")
            if not isinstance(raw_channel, bytes):
                continue  # pong
            channel = raw_channel.decode()
            if kind == "message":
                BUS_RECEIVED.inc()
                handler = self._handlers.get(channel[prefix_len:])
                if handler is not None:
                    try:
                        handler(channel[prefix_len:], message["data"])
                    except Exception:
                        log.exception("bus handler failed for %s", channel)
            elif kind == "subscribe":
                future = self._confirmations.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)

    def _set_health(self, healthy: bool) -> None:
        self._healthy = healthy
        BUS_UP.set(1 if healthy else 0)
        if healthy:
            self._connected.set()
        else:
            self._connected.clear()
