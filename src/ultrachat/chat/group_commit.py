"""Group commit for message sends: many senders, one transaction.

A send is the hottest write in UltraChat. Committing each one alone costs a transaction, a
round trip per statement and a disk flush per message. Instead, sends queue here and a single
committer per process writes whatever has queued as one batch:

1. lock the batch's channel rows (in id order, so nodes never deadlock) and read their state;
2. check every send at once: membership, archived, retries (``client_msg_id`` already used,
   also within the batch), thread roots — one query each, not one per message;
3. give the accepted sends of each channel consecutive seqs after its ``last_seq``;
4. insert messages, idempotency keys, mentions and events as multi-row inserts; commit;
5. append the new messages to the cached newest pages of those channels (chat/caching.py:
   write-through, or invalidation where a cached page is not current);
6. only then answer each sender (the ack means committed) and publish the events.

While one batch commits, the next one queues, so batches grow with load by themselves and a
quiet server still commits each message at once. A send that fails its checks fails alone;
a batch that fails to commit fails only its own senders, who may retry with the same
``client_msg_id`` (nothing was half-written: it was one transaction).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ultrachat.chat import batch_repository
from ultrachat.chat.admission import retry_after_for
from ultrachat.chat.events import event_frame
from ultrachat.chat.ledger import ChannelLedger, Committed
from ultrachat.chat.models import ChannelEvent, Mention, Message, MessageClientId
from ultrachat.chat.presenter import message_dict
from ultrachat.errors import Forbidden, NotFound, Overloaded, ServiceUnavailable, UltraChatError
from ultrachat.metrics.chat import (
    EVENTS_COMMITTED,
    GROUP_COMMIT_BATCH,
    GROUP_COMMIT_FAILED,
    SENDS_SHED,
)
from ultrachat.storage import Database, new_id
from ultrachat.storage.ids import id_timestamp

log = logging.getLogger(__name__)
MAX_BATCH = 512
# Sends waiting for a batch beyond this are refused at once (``overloaded``): at least 8
# batches queued means acks are already seconds late, and each one more only adds to that.
MAX_QUEUED = 8 * MAX_BATCH


@dataclass(slots=True)
class PendingSend:
    actor: str
    channel_id: str
    body: str
    client_msg_id: str | None
    thread_id: str | None
    mentioned: list[str]
    future: asyncio.Future[SendOutcome] = field(repr=False)
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """Either a new message (``data``) or the id of the original this send repeats."""

    data: dict[str, Any] | None = None
    original_id: str | None = None


class GroupCommitter:
    """Queues sends and commits them in batches, ``concurrency`` transactions at a time.

    With two in flight, one batch's Python work overlaps the other's database round trips.
    Batches that share a channel still commit one after the other (the channel row lock),
    and they lock channels in the same order, so they cannot deadlock.
    """

    def __init__(
        self,
        db: Database,
        ledger: ChannelLedger,
        concurrency: int = 1,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._max_queued = max_queued
        self._queue: list[PendingSend] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        # Each batch being committed, with when its oldest send was queued.
        self._inflight: dict[asyncio.Task[None], float] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Commit everything already queued (accepted sends are never dropped), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(
        self,
        actor: str,
        channel_id: str,
        body: str,
        client_msg_id: str | None,
        thread_id: str | None,
        mentioned: list[str],
    ) -> SendOutcome:
        if len(self._queue) >= self._max_queued:
            SENDS_SHED.labels("queue").inc()
            raise Overloaded(
                "too many messages are waiting to be stored; retry with the same client_msg_id",
                retry_after=retry_after_for(self.oldest_wait()),
            )
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append(
            PendingSend(actor, channel_id, body, client_msg_id, thread_id, mentioned, future)
        )
        self._wake.set()
        return await future

    def oldest_wait(self) -> float:
        """How long the oldest send not yet answered has waited (0 with none): the part of
        a new message's delay spent before its commit, which send admission watches."""
        since = list(self._inflight.values())
        if self._queue:
            since.append(self._queue[0].queued_at)
        return time.monotonic() - min(since) if since else 0.0

    def _take(self) -> list[PendingSend]:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        return batch

    async def _run(self) -> None:
        while self._queue or not self._stopping:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._slots.acquire()
            batch = self._take()
            task = asyncio.create_task(self._commit(batch))
            self._inflight[task] = batch[0].queued_at
            task.add_done_callback(self._finished)
        await asyncio.gather(*self._inflight, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._slots.release()

    async def _commit(self, batch: list[PendingSend]) -> None:
        GROUP_COMMIT_BATCH.observe(len(batch))
        try:
            outcomes, committed = await self._write(batch)
        except Exception:
            GROUP_COMMIT_FAILED.inc()
            log.exception("group commit of %d sends failed", len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(
                        ServiceUnavailable(
                            "the message was not stored; retry with the same client_msg_id"
                        )
                    )
            return
        # The newest pages of these channels are behind: bring them up before any ack.
        created: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in committed:  # grouped by channel, in seq order
            created[event.channel_id].append(event.data)
        await self._ledger.cache.messages_created(created)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue  # the sender went away; the message is stored all the same
            if isinstance(outcome, UltraChatError):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
        EVENTS_COMMITTED.labels("message.created").inc(len(committed))
        await self._ledger.announce_many(committed)

    async def _write(
        self, batch: list[PendingSend]
    ) -> tuple[list[SendOutcome | UltraChatError], list[Committed]]:
        now = datetime.now(UTC)
        outcomes: list[SendOutcome | UltraChatError | None] = [None] * len(batch)
        accepted: dict[str, list[int]] = defaultdict(list)
        async with self._db.transaction() as session:
            channels = await batch_repository.lock_channels(session, [p.channel_id for p in batch])
            # Read inside the transaction, under the channel locks, not from the cache: a
            # removal commits under the same lock, so no send can land after it. One query per
            # batch, so the cache would save little here.
            members = await batch_repository.memberships(
                session,
                [(p.channel_id, user) for p in batch for user in (p.actor, *p.mentioned)],
            )
            originals = await batch_repository.client_msgs(
                session,
                [(p.channel_id, p.actor, p.client_msg_id) for p in batch if p.client_msg_id],
            )
            roots = await batch_repository.messages_by_id(
                session, [p.thread_id for p in batch if p.thread_id]
            )
            first_in_batch: dict[tuple[str, str, str], int] = {}
            for index, pending in enumerate(batch):
                key = (pending.channel_id, pending.actor, pending.client_msg_id or "")
                if pending.client_msg_id and key in first_in_batch:
                    continue  # a retry racing its original in this very batch: resolved below
                outcome = _check(pending, channels, members, originals, roots)
                if outcome is None:
                    accepted[pending.channel_id].append(index)
                    if pending.client_msg_id:
                        first_in_batch[key] = index
                else:
                    outcomes[index] = outcome

            messages: list[dict[str, Any]] = []
            keys: list[dict[str, Any]] = []
            mentions: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            committed: list[Committed] = []
            last_seqs: dict[str, int] = {}
            bodies: list[tuple[str, str]] = []
            frames: list[tuple[str, int, str]] = []
            for channel_id, indexes in accepted.items():
                seq = channels[channel_id][0]
                for index in indexes:
                    seq += 1
                    pending = batch[index]
                    message = _message(pending, seq, roots)
                    mentioned = sorted(
                        u for u in set(pending.mentioned) if (channel_id, u) in members
                    )
                    data = message_dict(message, pending.body, mentioned)
                    frame = event_frame(channel_id, seq, "message.created", data)
                    messages.append(_row(message))
                    bodies.append((message.id, pending.body))
                    if pending.client_msg_id:
                        keys.append(_key(pending, message.id, now))
                    mentions.extend(
                        {
                            "message_id": message.id,
                            "user_id": u,
                            "channel_id": channel_id,
                            "seq": seq,
                        }
                        for u in mentioned
                    )
                    events.append(_event(channel_id, seq, pending.actor, now))
                    frames.append((channel_id, seq, frame))
                    committed.append(Committed(channel_id, seq, "message.created", frame, data))
                    outcomes[index] = SendOutcome(data=data)
                last_seqs[channel_id] = seq
            # Sealed as a batch, not one by one: one draw of randomness for all the nonces.
            sealer = self._ledger.sealer
            for row, sealed in zip(messages, sealer.seal_bodies(bodies), strict=True):
                row["body"] = sealed
            for row, sealed in zip(events, sealer.seal_frames(frames), strict=True):
                row["data"] = sealed
            await batch_repository.set_last_seqs(session, last_seqs)
            await batch_repository.insert_rows(session, Message, messages)
            await batch_repository.insert_rows(session, MessageClientId, keys)
            await batch_repository.insert_rows(session, Mention, mentions)
            await batch_repository.insert_rows(session, ChannelEvent, events)

        for index, pending in enumerate(batch):
            if outcomes[index] is None:  # a duplicate within the batch: point at the first
                key = (pending.channel_id, pending.actor, pending.client_msg_id or "")
                first = outcomes[first_in_batch[key]]
                assert isinstance(first, SendOutcome) and first.data is not None
                outcomes[index] = SendOutcome(original_id=first.data["id"])
        return [o for o in outcomes if o is not None], committed


def _check(
    pending: PendingSend,
    channels: dict[str, tuple[int, str, datetime | None]],
    members: set[tuple[str, str]],
    originals: dict[tuple[str, str, str], str],
    roots: dict[str, Message],
) -> SendOutcome | UltraChatError | None:
    """Why this send cannot be written (or which message it repeats); None when it can."""
    channel = channels.get(pending.channel_id)
    is_member = (pending.channel_id, pending.actor) in members
    if channel is None or (channel[1] != "public" and not is_member):
        return NotFound("channel not found")
    if pending.client_msg_id:
        original = originals.get((pending.channel_id, pending.actor, pending.client_msg_id))
        if original is not None:
            return SendOutcome(original_id=original)
    if not is_member:
        return Forbidden("join the channel first")
    if channel[2] is not None:
        return Forbidden("channel is archived")
    if pending.thread_id is not None:
        root = roots.get(pending.thread_id)
        if root is None or root.channel_id != pending.channel_id or root.deleted_at is not None:
            return NotFound("thread root not found in this channel")
    return None


@dataclass(slots=True)
class _NewMessage:
    """A message about to be inserted: the fields ``message_dict`` reads, without the ORM's
    per-instance bookkeeping (which was a tenth of a batch's CPU)."""

    id: str
    created_at: datetime
    channel_id: str
    seq: int
    user_id: str
    thread_id: str | None
    client_msg_id: str | None
    edited_at: datetime | None = None
    deleted_at: datetime | None = None


def _message(pending: PendingSend, seq: int, roots: dict[str, Message]) -> _NewMessage:
    message_id = new_id()
    root = roots.get(pending.thread_id) if pending.thread_id else None
    return _NewMessage(
        id=message_id,
        created_at=id_timestamp(message_id),
        channel_id=pending.channel_id,
        seq=seq,
        user_id=pending.actor,
        thread_id=(root.thread_id or root.id) if root else None,  # replies join the root's
        client_msg_id=pending.client_msg_id,
    )


def _row(message: _NewMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "created_at": message.created_at,
        "channel_id": message.channel_id,
        "seq": message.seq,
        "user_id": message.user_id,
        "body": None,  # sealed with the rest of the batch
        "thread_id": message.thread_id,
        "edited_at": None,
        "deleted_at": None,
        "client_msg_id": message.client_msg_id,
    }


def _key(pending: PendingSend, message_id: str, now: datetime) -> dict[str, Any]:
    return {
        "channel_id": pending.channel_id,
        "user_id": pending.actor,
        "client_msg_id": pending.client_msg_id,
        "message_id": message_id,
        "created_at": now,
    }


def _event(channel_id: str, seq: int, actor: str, now: datetime) -> dict[str, Any]:
    return {
        "channel_id": channel_id,
        "seq": seq,
        "kind": "message.created",
        "actor_id": actor,
        "subject_id": "",
        "data": None,  # sealed with the rest of the batch
        "created_at": now,
    }
