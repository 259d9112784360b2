"""Chat's hot reads through the two-tier cache, and what each committed change invalidates.

Cached (resource → key → value):

- ``channel-membership``: ``<channel>:<user>`` → whether the user is a member. Read on every
  send (the group committer's check) and on history reads.
- ``user-channels``: ``<user>`` → the ids of the user's channels. Read on every WebSocket
  subscribe (hello); reading it also primes this node's L1 with the user's memberships, and
  loading it stores them in L2 for the other nodes.
- ``channel-history-head``: ``<channel>`` → the newest page of the channel's history, as the
  API shows it, with the page size it was loaded for and ``through``: the channel's seq it
  is current through (every event up to it is in it, none after; None when unknown).
- ``chat-messages``: ``<message id>`` → one message as the API shows it.

Every change reaches the cache through ``changed`` / ``members_changed`` /
``messages_created``, called after the commit and before the change is acknowledged or
announced, so no client can learn of a change before every node forgot (or, for a history
head, updated) what it changes. Without a cache (``ChatCache(None)``) every read goes to
the loader.

History heads are written through, not invalidated, by the events that only add to them:
new messages are appended, and events that leave the page as it is (membership, channel
settings) only move ``through`` on. ``advanced`` is the rule. It refuses, and the head is
invalidated instead, unless the head is current through the seq just before the change:
every event takes the channel's next seq, so a head that missed one (an edit, another
node's batch) shows a gap and is dropped, never extended past it. A head so extended is
proven current, so its TTL starts again: an active channel's head stays cached, and one
with no event for a TTL expires (docs/cache.md, "History heads are written through").
Edits, deletions, reactions and pins invalidate it. Other nodes drop their copy without
acknowledging (the bounded delay for new messages in docs/cache.md) and read the new one
from L2.

Loaders must read the primary (``Database.sessions``), never a replica: a fill that runs just
after an invalidation must see the write behind it, or it would cache the old value again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ultrachat.cache.config import (
    CHANNEL_HISTORY_HEAD,
    CHANNEL_MEMBERSHIP,
    CHAT_MESSAGES,
    USER_CHANNELS,
)
from ultrachat.cache.tiered import Key, TieredCache
from ultrachat.storage.ids import is_id

Pair = tuple[str, str]
"""(channel_id, user_id)"""

# Changes to a message as the API shows it; the key is data["id"] or data["message_id"].
_MESSAGE_CHANGES = frozenset(
    {
        "message.updated",
        "message.deleted",
        "reaction.added",
        "reaction.removed",
        "message.pinned",
        "message.unpinned",
    }
)
_MEMBERSHIP_CHANGES = frozenset({"member.joined", "member.left"})
# Events that take a seq but change no message: a history head stays as it is, through them.
# Any kind not named here or above invalidates the head (the safe default for a new kind).
_PAGE_UNCHANGED = frozenset({"channel.updated", "member.joined", "member.left", "member.updated"})


class ChatCache:
    def __init__(self, cache: TieredCache | None) -> None:
        self._cache = cache

    # Reading

    async def memberships(
        self, pairs: Iterable[Pair], load: Callable[[list[Pair]], Awaitable[set[Pair]]]
    ) -> set[Pair]:
        """Which of ``pairs`` are memberships; ``load`` answers for those not cached."""
        wanted = [p for p in set(pairs) if is_id(p[0]) and is_id(p[1])]
        if self._cache is None or not wanted:
            return await load(wanted) if wanted else set()
        by_key = {f"{c}:{u}": (c, u) for c, u in wanted}

        async def load_many(keys: list[str]) -> dict[str, bool]:
            members = await load([by_key[k] for k in keys])
            return {k: by_key[k] in members for k in keys}

        found = await self._cache.get_many(CHANNEL_MEMBERSHIP, by_key, load_many)
        return {by_key[k] for k, member in found.items() if member}

    async def is_member(
        self, channel_id: str, user_id: str, load: Callable[[], Awaitable[bool]]
    ) -> bool:
        if not (is_id(channel_id) and is_id(user_id)):
            return False
        if self._cache is None:
            return await load()
        return await self._cache.get(CHANNEL_MEMBERSHIP, f"{channel_id}:{user_id}", load)

    async def channel_ids_of(
        self, user_id: str, load: Callable[[], Awaitable[list[str]]]
    ) -> list[str]:
        if self._cache is None:
            return await load()

        def memberships(ids: list[str]) -> dict[str, bool]:
            return {f"{c}:{user_id}": True for c in ids}

        since = self._cache.epoch
        # Each channel is a membership as well, asked about on the user's next history read
        # there, on whichever node serves it: a loaded list stores them in L2 (fenced by the
        # list's version: _membership_keys invalidates both together), and every read keeps
        # them in this node's L1 (unless invalidated meanwhile).
        loaded = await self._cache.get(
            USER_CHANNELS, user_id, load, implies=lambda ids: (CHANNEL_MEMBERSHIP, memberships(ids))
        )
        channel_ids = list(loaded)  # a copy
        self._cache.prime(CHANNEL_MEMBERSHIP, memberships(channel_ids), since)
        return channel_ids

    async def history_head(
        self,
        channel_id: str,
        limit: int,
        load: Callable[[int], Awaitable[tuple[list[dict[str, Any]], int | None]]],
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` messages; a cached head loaded for a larger page (or holding
        the whole channel) serves smaller ones too. ``load`` gives the page and the seq it
        is current through (None if it cannot tell)."""
        if self._cache is None:
            return (await load(limit))[0]

        async def load_head() -> dict[str, Any]:
            messages, through = await load(limit)
            return {"limit": limit, "through": through, "messages": messages}

        def enough(head: dict[str, Any]) -> bool:
            return bool(head["limit"] >= limit or len(head["messages"]) < head["limit"])

        head = await self._cache.get(CHANNEL_HISTORY_HEAD, channel_id, load_head, enough)
        messages: list[dict[str, Any]] = head["messages"]
        return messages[-limit:]  # a new list; the dicts are shared and must not be changed

    async def message(
        self, message_id: str, load: Callable[[], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any] | None:
        """One message as the API shows it, or None. Absent messages are not cached."""
        if self._cache is None or not is_id(message_id):
            return await load()

        async def load_present() -> dict[str, Any]:
            found = await load()
            if found is None:
                raise _Absent()
            return found

        try:
            return await self._cache.get(CHAT_MESSAGES, message_id, load_present)
        except _Absent:
            return None

    # Writing

    async def changed(
        self, channel_id: str, seq: int, kind: str, subject: str, data: dict[str, Any]
    ) -> None:
        """A change committed by the ledger at ``seq``: forget what it makes stale, on every
        node; move the history head on through it if it leaves the page as it is."""
        if self._cache is None:
            return
        keys: list[Key] = []
        if kind in _MESSAGE_CHANGES:
            message_id = data.get("message_id") or data.get("id")
            if isinstance(message_id, str):
                keys.append((CHAT_MESSAGES, message_id))
        elif kind in _MEMBERSHIP_CHANGES and subject:
            keys.extend(_membership_keys(channel_id, [subject]))
        if kind not in _PAGE_UNCHANGED:
            keys.append((CHANNEL_HISTORY_HEAD, channel_id))
        if keys:
            await self._cache.invalidate(keys)
        if kind in _PAGE_UNCHANGED:
            change = functools.partial(advanced, messages=(), first_seq=seq, last_seq=seq)
            await self._cache.update(CHANNEL_HISTORY_HEAD, {channel_id: change}, renew=True)

    async def members_changed(self, channel_id: str, user_ids: Sequence[str]) -> None:
        """Members added outside the ledger (a channel's creation)."""
        if self._cache is not None and user_ids:
            await self._cache.invalidate(_membership_keys(channel_id, user_ids))

    async def messages_created(self, created: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """A committed batch's new messages, by channel, each in seq order as the API shows
        them (one batch's seqs in a channel are consecutive): appended to the history heads
        on this node and in L2; other nodes drop theirs without acknowledging (docs/cache.md:
        a bounded delay, for new messages only)."""
        if self._cache is None or not created:
            return
        changes = {
            channel_id: functools.partial(
                advanced,
                messages=messages,
                first_seq=messages[0]["seq"],
                last_seq=messages[-1]["seq"],
            )
            for channel_id, messages in created.items()
            if messages
        }
        await self._cache.update(CHANNEL_HISTORY_HEAD, changes, renew=True)


def advanced(
    head: dict[str, Any],
    *,
    messages: Sequence[dict[str, Any]],
    first_seq: int,
    last_seq: int,
) -> dict[str, Any] | None:
    """``head`` after the events ``first_seq``..``last_seq``, which added ``messages`` (none
    for an event that changes no message), or None when that cannot be told from the head:
    it is not current through ``first_seq - 1`` exactly (a gap, or unknown). A head already
    current through ``last_seq`` was loaded after the events and holds them. Never modifies
    ``head``: L1 shares it with readers."""
    through = head.get("through")
    if through is None:
        return None
    if through >= last_seq:
        return head
    if through != first_seq - 1:
        return None
    kept = head["messages"]
    if messages:
        kept = [*kept, *messages][-head["limit"] :]
    return {"limit": head["limit"], "through": last_seq, "messages": kept}


class _Absent(Exception):
    """A message that does not exist: not cached, reported as None."""


def _membership_keys(channel_id: str, user_ids: Iterable[str]) -> list[Key]:
    """A membership and the user's channel list, always together: the list's L2 version
    fences the memberships it implies (``channel_ids_of``)."""
    keys: list[Key] = []
    for user_id in user_ids:
        keys.append((CHANNEL_MEMBERSHIP, f"{channel_id}:{user_id}"))
        keys.append((USER_CHANNELS, user_id))
    return keys
