"""Live presence on one node: who is watched by whom, and pushing changes to the watchers.

Presence is pushed only to connections that asked for it (``presence_sub`` with the user ids
a client shows, at most ``MAX_WATCHED``), never broadcast into channels: with broadcasting, N
people coming online in a channel of N members would cost N² frames. Each change is published
once, on ``presence:<user_id>``; a node subscribes to that topic while any local connection
watches the user, and fans the frame out to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import orjson

from ultrachat.bus import Bus
from ultrachat.chat.events import unwrap, wrap
from ultrachat.realtime.connection import Connection
from ultrachat.realtime.presence import PresenceStore
from ultrachat.realtime.slices import SHARES, Slices
from ultrachat.tasks import cancel_and_wait

log = logging.getLogger(__name__)
MAX_WATCHED = 500


def presence_topic(user_id: str) -> str:
    return f"presence:{user_id}"


class PresenceHub:
    def __init__(self, bus: Bus, store: PresenceStore, ttl: float) -> None:
        self._bus = bus
        self.store = store
        self._ttl = ttl
        self._connections: dict[str, Connection] = {}
        # Refreshed a share at a time: all at once it was 20,000 Redis commands per 10,000
        # connections in one burst every 20 s, which queued the bus and cache behind it (a
        # 2-3 s latency spike for every message on the node).
        self._refresh_shares: Slices[Connection] = Slices()
        self._watching: dict[str, set[str]] = {}  # connection id → watched user ids
        self._watchers: dict[str, set[str]] = defaultdict(set)  # user id → connection ids
        self._last_published: dict[str, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        # Connections ended and not yet removed from the store, each with its caller's future.
        self._leaving: list[tuple[str, str, asyncio.Future[None]]] = []
        self._remover: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._refresher = asyncio.create_task(self._refresh_forever(), name="presence-refresh")

    async def stop(self) -> None:
        await cancel_and_wait(self._refresher)
        self._refresher = None
        await cancel_and_wait(self._remover)
        self._remover = None
        _release(self._leaving)  # left to expire: nobody waits on a stopped node
        self._leaving = []

    async def connected(self, connection: Connection) -> None:
        self._connections[connection.id] = connection
        self._refresh_shares.add(connection.id, connection)
        await self.set_status(connection, "online")

    async def set_status(self, connection: Connection, status: str) -> None:
        connection.status = status
        await self.store.set(connection.user_id, connection.id, status, self._ttl)
        await self._publish_if_changed(connection.user_id)

    async def disconnected(self, connection: Connection) -> None:
        """Forget the connection; its entry is removed and the change published with the
        other connections that end about now, in a few round trips for all of them (when a
        node stops, or a network drop takes thousands at once). Waits until that is done."""
        self._connections.pop(connection.id, None)
        self._refresh_shares.discard(connection.id)
        await self.watch(connection, [])
        done = asyncio.get_running_loop().create_future()
        self._leaving.append((connection.user_id, connection.id, done))
        if self._remover is None:
            self._remover = asyncio.create_task(self._remove_leaving())
        await asyncio.shield(done)

    async def _remove_leaving(self) -> None:
        try:
            while self._leaving:
                batch, self._leaving = self._leaving, []
                try:
                    await self.store.remove_many([(user, conn) for user, conn, _ in batch])
                    await self._publish_changes(list(dict.fromkeys(u for u, _, _ in batch)))
                except Exception:
                    # The entries expire by themselves within one TTL.
                    log.warning("presence removal failed (%d)", len(batch), exc_info=True)
                finally:
                    _release(batch)
        finally:
            self._remover = None

    async def watch(self, connection: Connection, user_ids: list[str]) -> dict[str, str]:
        """Replace what ``connection`` watches; returns the watched users' current presence."""
        wanted = set(user_ids[:MAX_WATCHED])
        before = self._watching.pop(connection.id, set())
        if wanted:
            self._watching[connection.id] = wanted
        for user_id in wanted - before:
            first = not self._watchers[user_id]
            self._watchers[user_id].add(connection.id)
            if first:
                await self._bus.subscribe(presence_topic(user_id), self._on_presence)
        for user_id in before - wanted:
            watchers = self._watchers.get(user_id)
            if watchers is not None:
                watchers.discard(connection.id)
                if not watchers:
                    del self._watchers[user_id]
                    await self._bus.unsubscribe(presence_topic(user_id))
        return await self.store.of(sorted(wanted)) if wanted else {}

    async def _publish_if_changed(self, user_id: str) -> None:
        await self._publish_changes([user_id])

    async def _publish_changes(self, user_ids: list[str]) -> None:
        """Publish the presence of each of ``user_ids`` whose status changed."""
        messages = []
        for user_id, status in (await self.store.of(user_ids)).items():
            if self._last_published.get(user_id) == status:
                continue
            if status == "offline":
                self._last_published.pop(user_id, None)
            else:
                self._last_published[user_id] = status
            frame = orjson.dumps({"type": "presence", "user_id": user_id, "status": status})
            messages.append((presence_topic(user_id), wrap(0, "presence", user_id, frame.decode())))
        if messages:
            await self._bus.publish_many(messages)

    def _on_presence(self, topic: str, payload: bytes) -> None:
        frame = unwrap(payload).frame
        for connection_id in self._watchers.get(topic.removeprefix("presence:"), ()):
            connection = self._connections.get(connection_id)
            if connection is not None:
                connection.push(frame)

    async def _refresh_forever(self) -> None:
        # Entries expire unless refreshed: a node that dies takes its users offline by itself.
        failed = 0
        async for index, connections in self._refresh_shares.every(self._ttl / 3):
            if index == 0:
                if failed > 1:
                    log.warning("presence refresh: %d of %d shares failed", failed, SHARES)
                failed = 0
            if not connections:
                continue
            try:
                await self.store.refresh(
                    [(c.user_id, c.id, c.status) for c in connections], self._ttl
                )
            except Exception:
                failed += 1
                if failed == 1:  # the traceback once per interval, not once per share
                    log.warning("presence refresh failed", exc_info=True)


def _release(batch: list[tuple[str, str, asyncio.Future[None]]]) -> None:
    for _, _, done in batch:
        if not done.done():
            done.set_result(None)
