"""A node's view of one channel: every local subscriber gets its events once, in seq order.

The bus may deliver late, out of order, or not at all. The feed keeps ``head``, the last seq
it delivered, and holds events that arrive early. A gap that is not filled from the bus
within ``GAP_WAIT`` is filled from the event log, so subscribers always see every seq once.

Resume works on the same stream: a connection that must catch up is *syncing*; the feed
buffers live events for it while it replays from the log, then it drops the buffered events
it already replayed and goes live. Subscribe first, buffer, replay, then dedupe. A connection
that already has more than this node delivered (it was on a node further ahead) keeps
syncing until the feed has caught up with it, so nothing reaches it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ultrachat.chat.events import MEMBER_JOINED, MEMBER_LEFT, Envelope
from ultrachat.metrics.chat import GAP_FILLS, WS_DELIVERIES
from ultrachat.realtime.connection import Connection

log = logging.getLogger(__name__)
GAP_WAIT = 0.05
FILL_PAGE = 500

FetchAfter = Callable[[str, int, int], Awaitable[list[Envelope]]]


class LeaveGate:
    """What one user's connection may be sent of a channel's past events, in order.

    The user's own ``member.left`` ends delivery only if no later ``member.joined`` of theirs
    follows it (a member who left and came back resumes from before the leave): frames after
    a leave are held until such a join releases them. ``left`` says whether the last word
    was a leave, in which case the held frames are never sent and the connection is dropped.
    """

    __slots__ = ("_held", "_user_id")

    def __init__(self, user_id: str) -> None:
        self._user_id = user_id
        self._held: list[str] | None = None

    @property
    def left(self) -> bool:
        return self._held is not None

    def admit(self, envelope: Envelope) -> list[str]:
        """The frames to send now (none, this one, or those held until this join)."""
        own = envelope.subject == self._user_id
        if self._held is not None:
            self._held.append(envelope.frame)
            if own and envelope.kind == MEMBER_JOINED:
                released, self._held = self._held, None
                return released
            return []
        if own and envelope.kind == MEMBER_LEFT:
            self._held = []
        return [envelope.frame]


class ChannelFeed:
    def __init__(self, channel_id: str, head: int, fetch_after: FetchAfter) -> None:
        self.channel_id = channel_id
        self.head = head
        self.live: dict[str, Connection] = {}
        self.syncing: dict[str, list[Envelope]] = {}
        # Syncing connections whose replay is done, waiting for ``head`` to reach their seq.
        self._waiting: dict[str, tuple[Connection, int]] = {}
        self._early: dict[int, Envelope] = {}
        self._fetch_after = fetch_after
        self._filler: asyncio.Task[None] | None = None

    @property
    def empty(self) -> bool:
        return not self.live and not self.syncing

    def receive(self, envelope: Envelope) -> None:
        """An envelope from the bus (any order, possibly duplicated)."""
        if envelope.seq == 0:
            self._emit_ephemeral(envelope)
            return
        if envelope.seq <= self.head:
            return
        if envelope.seq == self.head + 1:
            self._emit(envelope)
            self._drain_early()
            return
        self._early[envelope.seq] = envelope
        self.fill_gap_soon()

    def fill_gap_soon(self, wait: float = GAP_WAIT) -> None:
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill(wait))

    async def _fill(self, wait: float) -> None:
        await asyncio.sleep(wait)
        try:
            while True:
                events = await self._fetch_after(self.channel_id, self.head, FILL_PAGE)
                fresh = [e for e in events if e.seq > self.head]
                if fresh:
                    GAP_FILLS.inc()
                for event in fresh:
                    if event.seq == self.head + 1:
                        self._emit(event)
                self._drain_early()
                if len(events) < FILL_PAGE:
                    return
        except Exception:
            log.exception("gap fill for channel %s failed; retrying", self.channel_id)
            self._filler = None
            self.fill_gap_soon(wait=1.0)

    def _drain_early(self) -> None:
        early = self._early
        while early:
            nxt = early.pop(self.head + 1, None)
            if nxt is None:
                # Forget anything already delivered; keep what is still ahead.
                for seq in [s for s in early if s <= self.head]:
                    del early[seq]
                if early:
                    self.fill_gap_soon()
                return
            self._emit(nxt)

    def _emit(self, envelope: Envelope) -> None:
        self.head = envelope.seq
        frame = envelope.frame.encode()  # once for every connection
        live = self.live
        for connection in live.values():
            connection.push(frame)
        WS_DELIVERIES.inc(len(live))  # once per event, not once per recipient
        for buffered in self.syncing.values():
            buffered.append(envelope)
        if envelope.kind == MEMBER_LEFT:
            self.drop_user(envelope.subject)
        if self._waiting:
            for connection, last_seq in list(self._waiting.values()):
                if self.head >= last_seq:
                    del self._waiting[connection.id]
                    self._go_live(connection, last_seq)

    def _emit_ephemeral(self, envelope: Envelope) -> None:
        frame = envelope.frame.encode()
        for connection in self.live.values():
            if connection.user_id != envelope.subject:
                connection.push(frame)

    # Subscribers

    def add_live(self, connection: Connection) -> None:
        self.syncing.pop(connection.id, None)
        self._waiting.pop(connection.id, None)
        self.live[connection.id] = connection
        connection.channels.add(self.channel_id)

    def start_sync(self, connection: Connection) -> None:
        self.live.pop(connection.id, None)
        self._waiting.pop(connection.id, None)
        self.syncing[connection.id] = []
        connection.channels.add(self.channel_id)

    def forget_replayed(self, connection: Connection, last_seq: int) -> None:
        """Drop the events held back for a syncing connection that its replay has sent."""
        buffered = self.syncing.get(connection.id)
        if buffered and buffered[0].seq <= last_seq:
            self.syncing[connection.id] = [e for e in buffered if e.seq > last_seq]

    def finish_sync(self, connection: Connection, last_seq: int) -> bool:
        """The connection has every event up to ``last_seq``: send what arrived after it
        during the replay and go live. If this node has not delivered ``last_seq`` yet, stay
        syncing until it has. False if the connection was dropped meanwhile."""
        if connection.id not in self.syncing:
            return False
        if self.head < last_seq:
            self._waiting[connection.id] = (connection, last_seq)
            self.fill_gap_soon()  # this node is behind the log: catch up from it
            return True
        return self._go_live(connection, last_seq)

    def _go_live(self, connection: Connection, last_seq: int) -> bool:
        buffered = self.syncing.pop(connection.id, [])
        gate = LeaveGate(connection.user_id)
        for envelope in buffered:
            if envelope.seq > last_seq:
                for frame in gate.admit(envelope):
                    connection.push(frame)
        if gate.left:
            connection.channels.discard(self.channel_id)
            return False
        self.live[connection.id] = connection
        return True

    def remove(self, connection: Connection) -> None:
        self.live.pop(connection.id, None)
        self.syncing.pop(connection.id, None)
        self._waiting.pop(connection.id, None)
        connection.channels.discard(self.channel_id)

    def drop_user(self, user_id: str) -> None:
        for connection in [c for c in self.live.values() if c.user_id == user_id]:
            self.remove(connection)

    def close(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
