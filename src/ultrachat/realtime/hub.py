"""The node's connection pool (the plan's ConnectionPool): who is connected, to what.

The hub subscribes to a bus topic once per node, not per connection: one ``channel:<id>``
topic while any local member is connected, one ``user:<id>`` topic per connected user, and
the revocation topic. Frames arrive encoded and go to every local connection as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import orjson

from ultrachat.bus import Bus
from ultrachat.chat.events import (
    SESSIONS_REVOKED_TOPIC,
    Envelope,
    channel_topic,
    unwrap,
    user_topic,
    wrap,
)
from ultrachat.chat.log import ChannelLog
from ultrachat.metrics.chat import WS_CONNECTIONS, WS_REPLAYED
from ultrachat.realtime.connection import CLOSE_UNAUTHORIZED, Connection
from ultrachat.realtime.feed import ChannelFeed, LeaveGate
from ultrachat.realtime.heads import HeadReader
from ultrachat.realtime.slices import Slices
from ultrachat.tasks import cancel_and_wait

log = logging.getLogger(__name__)
REPLAY_PAGE = 500


class Hub:
    def __init__(
        self,
        bus: Bus,
        channel_log: ChannelLog,
        max_behind: int,
        sweep_interval: float | None = None,
    ) -> None:
        self._bus = bus
        self._log = channel_log
        self._heads = HeadReader(channel_log.heads)  # one query for many new feeds
        self._max_behind = max_behind
        self.connections: dict[str, Connection] = {}
        # The sweep visits a share at a time: one pass at once pinged ~10,000 quiet peers in
        # one go, a 50 ms stall every 20 s that deliveries felt.
        self._sweep_shares: Slices[Connection] = Slices()
        self._by_user: dict[str, set[str]] = defaultdict(set)
        self._feeds: dict[str, ChannelFeed] = {}
        self._feed_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._bus.subscribe(SESSIONS_REVOKED_TOPIC, self._on_sessions_revoked)
        self._bus.on_reconnect(self._after_bus_outage)
        if self._sweep_interval:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(self._sweep_interval)
            )

    async def _sweep_forever(self, interval: float) -> None:
        async for _, connections in self._sweep_shares.every(interval):
            for connection in connections:
                try:
                    connection.sweep()
                except Exception:  # one peer's failure must not end keepalive for all
                    log.exception("sweeping connection %s failed", connection.id)

    def sweep(self) -> None:
        """One pass over the connections (every ping interval, one task for the node rather
        than one per connection): each gives up its peer if it is gone (took nothing while
        frames waited, or answered no ping) and, on the native edge, pings it if quiet.
        The sweeper task does the same pass a slice at a time."""
        for connection in list(self.connections.values()):
            connection.sweep()

    async def stop(self, code: int, reason: str) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(c.close(code, reason) for c in list(self.connections.values())),
            return_exceptions=True,
        )

    # Connections

    async def register(self, connection: Connection) -> None:
        self.connections[connection.id] = connection
        self._sweep_shares.add(connection.id, connection)
        WS_CONNECTIONS.set(len(self.connections))
        first = not self._by_user[connection.user_id]
        self._by_user[connection.user_id].add(connection.id)
        if first:
            await self._bus.subscribe(user_topic(connection.user_id), self._on_user_event)

    async def unregister(self, connection: Connection) -> None:
        connection.finish()
        self.connections.pop(connection.id, None)
        self._sweep_shares.discard(connection.id)
        WS_CONNECTIONS.set(len(self.connections))
        for channel_id in list(connection.channels):
            feed = self._feeds.get(channel_id)
            if feed is not None:
                feed.remove(connection)
                await self._release_feed(channel_id)
        user_connections = self._by_user.get(connection.user_id)
        if user_connections is not None:
            user_connections.discard(connection.id)
            if not user_connections:
                del self._by_user[connection.user_id]
                await self._bus.unsubscribe(user_topic(connection.user_id))

    def user_connections(self, user_id: str) -> list[Connection]:
        return [
            self.connections[c] for c in self._by_user.get(user_id, ()) if c in self.connections
        ]

    # Channels

    async def attach(self, connection: Connection, channel_id: str, from_seq: int | None) -> None:
        """Deliver ``channel_id`` to ``connection``: live from now, or every event after
        ``from_seq`` (replayed from the log) and then live, with no gap and no duplicate."""
        after = await self.join(connection, channel_id, from_seq)
        if after is not None:
            await self.catch_up(connection, channel_id, after)

    async def join(
        self, connection: Connection, channel_id: str, from_seq: int | None
    ) -> int | None:
        """Join the channel's feed: live at once, or syncing (live events held back) when
        events after ``from_seq`` must be replayed first; then returns the seq to replay
        after, to hand to ``catch_up``. Once this returns, nothing new is missed."""
        if channel_id in connection.channels:
            return None  # already joined (e.g. hello and channel.added raced)
        connection.channels.add(channel_id)
        try:
            feed = await self._feed(channel_id)
        except BaseException:
            connection.channels.discard(channel_id)
            raise
        if from_seq is None or from_seq == feed.head:
            # Nothing this node has delivered is missing; later events come live, in order.
            feed.add_live(connection)
            return None
        if feed.head - from_seq > self._max_behind:
            feed.add_live(connection)
            connection.push(_reset_frame(channel_id, feed.head))
            return None
        feed.start_sync(connection)
        return from_seq

    async def catch_up(self, connection: Connection, channel_id: str, after: int) -> None:
        """Replay what a syncing connection missed, paced by its queue, then go live.

        The replay reads the log until it reaches the feed's head, events committed during
        the replay included, so going live releases (almost) nothing held back at once: a
        client that reads is never cut off for catching up. It never goes past the head:
        anything newer reaches the connection through the feed, never twice."""
        feed = self._feeds.get(channel_id)
        if feed is None or connection.id not in feed.syncing:
            return
        last = after
        gate = LeaveGate(connection.user_id)  # an old leave followed by a rejoin is no leave
        try:
            while True:
                events = await self._log.after(channel_id, last, REPLAY_PAGE)
                if last == after and _log_lost(events, after, feed.head):
                    # Retention dropped what this client missed: it re-fetches over REST.
                    connection.push(_reset_frame(channel_id, feed.head))
                    feed.finish_sync(connection, feed.head)
                    return
                for event in events:
                    await connection.room()
                    if connection.id not in feed.syncing or connection.closing:
                        return  # dropped meanwhile (closed, removed, re-joined)
                    if event.seq > feed.head:
                        break  # not delivered by this node yet: the feed brings it
                    last = event.seq
                    for frame in gate.admit(event):
                        connection.push(frame)
                        WS_REPLAYED.inc()
                feed.forget_replayed(connection, last)
                if last >= feed.head or not events:
                    break
        except BaseException:
            feed.remove(connection)
            raise
        if gate.left:
            feed.remove(connection)  # they left and have not come back
            return
        feed.finish_sync(connection, last)

    def detach(self, connection: Connection, channel_id: str) -> None:
        feed = self._feeds.get(channel_id)
        if feed is not None:
            feed.remove(connection)
            self.spawn(self._release_feed(channel_id))

    def is_attached(self, connection: Connection, channel_id: str) -> bool:
        return channel_id in connection.channels

    async def publish_ephemeral(self, channel_id: str, kind: str, user_id: str, frame: str) -> None:
        await self._bus.publish(channel_topic(channel_id), wrap(0, kind, user_id, frame))

    async def _feed(self, channel_id: str) -> ChannelFeed:
        feed = self._feeds.get(channel_id)
        if feed is not None:
            return feed
        async with self._feed_locks[channel_id]:
            feed = self._feeds.get(channel_id)
            if feed is None:
                # Subscribe before reading the head: nothing committed after it is missed.
                await self._bus.subscribe(channel_topic(channel_id), self._on_channel_event)
                head = await self._heads.head(channel_id)
                feed = ChannelFeed(channel_id, head, self._log.after)
                self._feeds[channel_id] = feed
        self._feed_locks.pop(channel_id, None)
        return feed

    async def _release_feed(self, channel_id: str) -> None:
        feed = self._feeds.get(channel_id)
        if feed is not None and feed.empty:
            del self._feeds[channel_id]
            feed.close()
            await self._bus.unsubscribe(channel_topic(channel_id))

    # Bus handlers (synchronous: they run on the bus reader)

    def _on_channel_event(self, topic: str, payload: bytes) -> None:
        feed = self._feeds.get(topic.removeprefix("channel:"))
        if feed is not None:
            feed.receive(unwrap(payload))

    def _on_user_event(self, topic: str, payload: bytes) -> None:
        envelope = unwrap(payload)
        user_id = topic.removeprefix("user:")
        frame = orjson.loads(envelope.frame)
        for connection in self.user_connections(user_id):
            connection.push(envelope.frame)
            if envelope.kind == "channel.added":
                channel_id = frame["channel"]["id"]
                if channel_id not in connection.channels:
                    self.spawn(self.attach(connection, channel_id, envelope.seq - 1))
            elif envelope.kind == "channel.removed":
                self.detach(connection, frame["channel_id"])

    def _on_sessions_revoked(self, topic: str, payload: bytes) -> None:
        revoked = set(orjson.loads(payload))
        for connection in list(self.connections.values()):
            if connection.session_id in revoked:
                connection.close_soon(CLOSE_UNAUTHORIZED, "session revoked")

    async def _after_bus_outage(self) -> None:
        # Anything published during the outage is lost on the bus: fetch it from the log.
        for feed in list(self._feeds.values()):
            feed.fill_gap_soon(wait=0)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a task of the node's real-time work, kept until it ends (cancelled by stop)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _log_lost(events: list[Envelope], after: int, head: int) -> bool:
    """Whether the log no longer holds the events right after ``after`` (dropped by retention)."""
    if events:
        return events[0].seq != after + 1
    return after < head


def _reset_frame(channel_id: str, seq: int) -> str:
    return orjson.dumps({"type": "reset", "channel_id": channel_id, "seq": seq}).decode()


__all__ = ["Envelope", "Hub"]
