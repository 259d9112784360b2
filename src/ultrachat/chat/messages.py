"""Message use cases: send (idempotent), history, edit, delete, threads, reactions, pins."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.auth.directory import UserDirectory
from ultrachat.chat import permissions, repository
from ultrachat.chat.access import ChannelAccess
from ultrachat.chat.admission import SendAdmission
from ultrachat.chat.group_commit import GroupCommitter
from ultrachat.chat.ledger import Change, ChannelLedger, NoChange
from ultrachat.chat.models import Message
from ultrachat.chat.presenter import message_dict
from ultrachat.chat.schemas import ensure_storable
from ultrachat.crypto import CorruptCiphertext
from ultrachat.errors import Forbidden, InvalidInput, NotFound
from ultrachat.storage import Database
from ultrachat.storage.replicas import confirm_on_primary

MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_.\-]{3,32})")
EMOJI_RE = re.compile(r"^[^\s/\\?#%]{1,64}$")
MAX_PAGE = 200


def parse_mentions(body: str) -> list[str]:
    return sorted({name.lower().rstrip(".") for name in MENTION_RE.findall(body)})


class MessageService:
    def __init__(
        self,
        db: Database,
        ledger: ChannelLedger,
        committer: GroupCommitter,
        users: UserDirectory,
        admission: SendAdmission,
    ) -> None:
        self._db = db
        self._ledger = ledger
        self._committer = committer
        self._admission = admission
        self._users = users
        self._access = ChannelAccess(db, ledger.cache)
        self._sealer = ledger.sealer

    async def send(
        self,
        actor: str,
        channel_id: str,
        body: str,
        client_msg_id: str | None = None,
        thread_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Post a message; a repeated ``client_msg_id`` returns the original. (message, created)."""
        self._admission.admit()  # first: a refused send costs this node next to nothing
        ensure_storable("body", body)
        ensure_storable("client_msg_id", client_msg_id)
        names = parse_mentions(body)
        mentioned = await self._users.ids_by_username(names) if names else {}
        outcome = await self._committer.submit(
            actor, channel_id, body, client_msg_id, thread_id, list(mentioned.values())
        )
        await self._db.wrote(actor)  # committed by the group committer's task: read-your-writes
        if outcome.data is not None:
            return outcome.data, True
        assert outcome.original_id is not None
        return await self.get(actor, outcome.original_id), False

    @confirm_on_primary(NotFound)  # a replica may not have a new channel or membership yet
    async def history(
        self,
        actor: str,
        channel_id: str,
        after_seq: int | None,
        before_seq: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        limit = min(limit, MAX_PAGE)
        if after_seq is None and before_seq is None:
            # The newest page, the one every client opens a channel with: cached.
            await self._ensure_readable(channel_id, actor)
            return await self._ledger.cache.history_head(
                channel_id, limit, lambda size: self._newest_page(channel_id, size)
            )
        await self._ensure_readable(channel_id, actor)  # fresh permission, maybe stale data
        async with self._db.reader(actor) as session:
            rows = await repository.message_page(session, channel_id, after_seq, before_seq, limit)
            return await self._present(session, rows)

    async def get(self, actor: str, message_id: str) -> dict[str, Any]:
        message = await self._ledger.cache.message(message_id, lambda: self._load(message_id))
        if message is None:
            raise NotFound("message not found")
        try:
            await self._ensure_readable(message["channel_id"], actor)
        except NotFound:
            raise NotFound("message not found") from None
        return message

    @confirm_on_primary(NotFound)
    async def thread(self, actor: str, message_id: str) -> list[dict[str, Any]]:
        async with self._db.reader(actor) as session:
            message = await self._visible_message(session, message_id, actor)
            try:
                await self._ensure_readable(message.channel_id, actor)
            except NotFound:
                raise NotFound("message not found") from None
            root_id = message.thread_id or message.id
            root = (
                message if root_id == message.id else await repository.get_message(session, root_id)
            )
            replies = await repository.thread_replies(session, message.channel_id, root_id)
            return await self._present(session, ([root] if root else []) + replies)

    async def edit(self, actor: str, message_id: str, body: str) -> dict[str, Any]:
        ensure_storable("body", body)
        channel_id = await self._channel_of(message_id, actor)
        mentioned = await self._users.ids_by_username(parse_mentions(body))

        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            message, _channel, _ = await self._writable_message(session, message_id, actor)
            if message.user_id != actor:
                raise Forbidden("only the author may edit a message")
            sealed = self._sealer.seal_body(message_id, body)
            await repository.update_message(session, message_id, body=sealed, edited_at=now)
            await repository.delete_mentions(session, message_id)
            mentions = await repository.members_among(session, channel_id, list(mentioned.values()))
            await repository.add_mentions(session, message_id, channel_id, message.seq, mentions)
            session.expunge(message)  # a detached copy: the edit above is the only write
            message.edited_at = now
            return Change("message.updated", (await self._present(session, [message], [body]))[0])

        committed = await self._ledger.commit(channel_id, actor, write)
        return committed.data

    async def delete(self, actor: str, message_id: str) -> None:
        channel_id = await self._channel_of(message_id, actor)

        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            message = await repository.get_message(session, message_id)
            if message is None:
                raise NotFound("message not found")
            channel = await repository.get_channel(session, channel_id)
            member = await repository.get_member(session, channel_id, actor) if channel else None
            member = permissions.ensure_member(channel, member)
            if message.user_id != actor and member.role not in permissions.MANAGERS:
                raise Forbidden("only the author or a channel admin may delete a message")
            if message.deleted_at is not None:
                raise NoChange()  # after the checks: a refusal stays a refusal
            await repository.update_message(session, message_id, body=None, deleted_at=now)
            await repository.delete_mentions(session, message_id)
            await repository.remove_pin(session, message_id)
            session.expunge(message)
            message.deleted_at = now
            return Change("message.deleted", message_dict(message, None))

        with contextlib.suppress(NoChange):
            await self._ledger.commit(channel_id, actor, write)

    async def react(self, actor: str, message_id: str, emoji: str, add: bool) -> None:
        if not EMOJI_RE.fullmatch(emoji) or not emoji.isprintable():
            raise InvalidInput("emoji must be 1-64 printable characters without spaces or '/'")
        channel_id = await self._channel_of(message_id, actor)

        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            await self._writable_message(session, message_id, actor)
            if add:
                changed = await repository.add_reaction(
                    session, message_id, channel_id, actor, emoji, now
                )
            else:
                changed = await repository.remove_reaction(session, message_id, actor, emoji)
            if not changed:
                raise NoChange()
            kind = "reaction.added" if add else "reaction.removed"
            return Change(kind, {"message_id": message_id, "user_id": actor, "emoji": emoji})

        with contextlib.suppress(NoChange):
            await self._ledger.commit(channel_id, actor, write)

    async def pin(self, actor: str, message_id: str, pinned: bool) -> None:
        channel_id = await self._channel_of(message_id, actor)

        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            await self._writable_message(session, message_id, actor)
            if pinned:
                changed = await repository.add_pin(session, message_id, channel_id, actor, now)
            else:
                changed = await repository.remove_pin(session, message_id)
            if not changed:
                raise NoChange()
            kind = "message.pinned" if pinned else "message.unpinned"
            return Change(kind, {"message_id": message_id, "user_id": actor})

        with contextlib.suppress(NoChange):
            await self._ledger.commit(channel_id, actor, write)

    @confirm_on_primary(NotFound)
    async def pins(self, actor: str, channel_id: str) -> list[dict[str, Any]]:
        await self._ensure_readable(channel_id, actor)
        async with self._db.reader(actor) as session:
            rows = [
                message
                for message_id in await repository.pins_of(session, channel_id)
                if (message := await repository.get_message(session, message_id)) is not None
            ]
            return await self._present(session, rows)

    # Internals

    async def _ensure_readable(self, channel_id: str, actor: str) -> None:
        await self._access.ensure_readable(channel_id, actor)

    async def _newest_page(
        self, channel_id: str, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The newest page and the channel seq it is current through (the cache's version of
        it), or None when an event committed while it was read. Every event moves the
        channel's ``last_seq`` in its own transaction, and each statement here sees at least
        what the one before it saw: an unchanged ``last_seq`` read before and after the page
        means the page's reads all saw exactly the events up to it."""
        async with self._db.sessions() as session:
            before = await repository.current_seqs(session, [channel_id])
            rows = await repository.message_page(session, channel_id, None, None, limit)
            page = await self._present(session, rows)
            after = await repository.current_seqs(session, [channel_id])
        through = before.get(channel_id)
        return page, through if through == after.get(channel_id) else None

    async def _load(self, message_id: str) -> dict[str, Any] | None:
        async with self._db.sessions() as session:
            message = await repository.get_message(session, message_id)
            return None if message is None else (await self._present(session, [message]))[0]

    async def _readable(self, session: AsyncSession, channel_id: str, actor: str) -> None:
        channel = await repository.get_channel(session, channel_id)
        member = await repository.get_member(session, channel_id, actor) if channel else None
        permissions.ensure_visible(channel, member)

    async def _visible_message(self, session: AsyncSession, message_id: str, actor: str) -> Message:
        message = await repository.get_message(session, message_id)
        if message is None:
            raise NotFound("message not found")
        channel = await repository.get_channel(session, message.channel_id)
        member = await repository.get_member(session, message.channel_id, actor)
        try:
            permissions.ensure_visible(channel, member)
        except NotFound:
            raise NotFound("message not found") from None
        return message

    async def _channel_of(self, message_id: str, actor: str) -> str:
        async with self._db.sessions() as session:
            return (await self._visible_message(session, message_id, actor)).channel_id

    async def _writable_message(
        self, session: AsyncSession, message_id: str, actor: str
    ) -> tuple[Message, Any, Any]:
        message = await repository.get_message(session, message_id)
        if message is None or message.deleted_at is not None:
            raise NotFound("message not found")
        channel = await repository.get_channel(session, message.channel_id)
        member = await repository.get_member(session, message.channel_id, actor)
        member = permissions.ensure_member(channel, member)
        assert channel is not None
        permissions.ensure_writable(channel)
        return message, channel, member

    async def _present(
        self, session: AsyncSession, rows: list[Message], bodies: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The API's shape of ``rows``, their bodies opened (or given, when just written)."""
        ids = [m.id for m in rows]
        mentions = await repository.mentions_for(session, ids)
        reactions = await repository.reactions_for(session, ids)
        pinned = await repository.pinned_ids(session, ids)
        opened: Sequence[str | CorruptCiphertext | None] = (
            bodies
            if bodies is not None
            else await self._sealer.open_bodies([(m.id, m.body) for m in rows])
        )
        return [
            message_dict(m, body, mentions.get(m.id), reactions.get(m.id), m.id in pinned)
            for m, body in zip(rows, opened, strict=True)
        ]
