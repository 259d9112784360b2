"""Channel use cases: create, list, change, and membership (join, leave, invite, remove)."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.audit import AuditLog
from ultrachat.auth.directory import UserDirectory
from ultrachat.bus import Bus
from ultrachat.chat import permissions, repository
from ultrachat.chat.access import ChannelAccess
from ultrachat.chat.events import event_frame, user_topic, wrap
from ultrachat.chat.ledger import Change, ChannelLedger, NoChange
from ultrachat.chat.models import Channel, ChannelEvent
from ultrachat.chat.presenter import channel_dict, member_dict
from ultrachat.chat.schemas import ChannelCreate, ChannelPatch, ensure_storable
from ultrachat.errors import Forbidden, InvalidInput, NotFound
from ultrachat.storage import Database, new_id
from ultrachat.storage.ids import is_id
from ultrachat.storage.replicas import confirm_on_primary

log = logging.getLogger(__name__)
DM_MIN, DM_MAX = 2, 9


class ChannelService:
    def __init__(
        self,
        db: Database,
        ledger: ChannelLedger,
        bus: Bus,
        users: UserDirectory,
        audit: AuditLog | None = None,
    ):
        self._db = db
        self._audit = audit
        self._ledger = ledger
        self._bus = bus
        self._users = users
        self._access = ChannelAccess(db, ledger.cache)

    # Reading

    @confirm_on_primary(NotFound)  # a replica may not have someone else's new channel yet
    async def get(self, actor: str, channel_id: str) -> dict[str, Any]:
        await self._access.ensure_readable(channel_id, actor)  # fresh permission
        async with self._db.reader(actor) as session:
            channel = await repository.get_channel(session, channel_id)
            member = await repository.get_member(session, channel_id, actor) if channel else None
            channel = permissions.ensure_visible(channel, member)
            body = channel_dict(channel, await repository.member_ids(session, channel_id))
        body["role"] = member.role if member else None
        body["last_read_seq"] = member.last_read_seq if member else None
        return body

    async def list_mine(self, actor: str) -> list[dict[str, Any]]:
        async with self._db.reader(actor) as session:
            rows = await repository.channels_of_with_counts(session, actor)
        channels = []
        for channel, member, unread, mentions in rows:
            body = channel_dict(channel)
            body.update(
                role=member.role,
                last_read_seq=member.last_read_seq,
                unread_count=unread,
                mention_count=mentions,
            )
            channels.append(body)
        return channels

    async def list_public(self, limit: int = 500) -> list[dict[str, Any]]:
        async with self._db.reader() as session:  # the request's user
            return [channel_dict(c) for c in await repository.list_public_channels(session, limit)]

    @confirm_on_primary(NotFound)
    async def members(self, actor: str, channel_id: str) -> list[dict[str, Any]]:
        await self._access.ensure_readable(channel_id, actor)  # fresh permission
        async with self._db.reader(actor) as session:
            channel = await repository.get_channel(session, channel_id)
            member = await repository.get_member(session, channel_id, actor) if channel else None
            permissions.ensure_visible(channel, member)
            return [member_dict(m) for m in await repository.list_members(session, channel_id)]

    async def member_channel_ids(self, user_id: str) -> list[str]:
        async def load() -> list[str]:
            async with self._db.sessions() as session:
                return await repository.channel_ids_of(session, user_id)

        return await self._ledger.cache.channel_ids_of(user_id, load)

    async def is_member(self, channel_id: str, user_id: str) -> bool:
        async def load() -> bool:
            async with self._db.sessions() as session:
                return await repository.get_member(session, channel_id, user_id) is not None

        return await self._ledger.cache.is_member(channel_id, user_id, load)

    # Creating

    async def create(self, actor: str, body: ChannelCreate) -> tuple[dict[str, Any], bool]:
        """Create a channel; for a DM that exists already, return it. (channel, created)."""
        ensure_storable("topic", body.topic)
        if body.kind == "dm":
            return await self._create_dm(actor, body.member_ids)
        name = (body.name or "").strip()
        if not name or not name.isprintable():
            raise InvalidInput("a public or private channel needs a printable name")
        invited = sorted(set(body.member_ids) - {actor})
        await self._ensure_users_exist(invited)
        channel = _new_channel(body.kind, name, body.topic, actor, None)
        await self._insert(channel, [(actor, "owner"), *[(u, "member") for u in invited]])
        return await self.get(actor, channel.id), True

    async def _create_dm(self, actor: str, member_ids: list[str]) -> tuple[dict[str, Any], bool]:
        members = sorted(set(member_ids) | {actor})
        if not DM_MIN <= len(members) <= DM_MAX:
            raise InvalidInput(f"a DM is between {DM_MIN} and {DM_MAX} users, you included")
        await self._ensure_users_exist(members)
        dm_key = ",".join(members)
        async with self._db.sessions() as session:
            existing = await repository.get_dm(session, dm_key)
        if existing is None:
            channel = _new_channel("dm", None, "", actor, dm_key)
            try:
                await self._insert(channel, [(u, "member") for u in members])
                return await self.get(actor, channel.id), True
            except IntegrityError:
                pass  # created concurrently by someone else: return theirs
            async with self._db.sessions() as session:
                existing = await repository.get_dm(session, dm_key)
            assert existing is not None
        return await self.get(actor, existing.id), False

    async def _insert(self, channel: Channel, members: list[tuple[str, str]]) -> None:
        """Store the channel, its members and its first event (seq 1) in one transaction."""
        member_ids = [user for user, _ in members]
        data = channel_dict(channel, member_ids)
        frame = event_frame(channel.id, 1, "channel.created", data)
        async with self._db.transaction() as session:
            await repository.add_channel(session, channel)
            for user_id, role in members:
                await repository.add_member(
                    session, channel.id, user_id, role, channel.created_at, 0
                )
            await repository.add_event(
                session,
                ChannelEvent(
                    channel_id=channel.id,
                    seq=1,
                    kind="channel.created",
                    actor_id=channel.created_by,
                    subject_id="",
                    data=self._ledger.sealer.seal_frame(channel.id, 1, frame),
                    created_at=channel.created_at,
                ),
            )
        await self._ledger.cache.members_changed(channel.id, member_ids)
        for user_id in member_ids:
            await self._tell_user(user_id, {"type": "channel.added", "channel": data, "seq": 1})

    # Changing

    async def update(self, actor: str, channel_id: str, patch: ChannelPatch) -> dict[str, Any]:
        ensure_storable("topic", patch.topic)

        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            channel, member = await self._locked(session, channel_id, actor)
            permissions.ensure_manager(member)
            values: dict[str, object] = {}
            if patch.name is not None:
                if channel.kind == "dm":
                    raise Forbidden("a DM has no name")
                name = patch.name.strip()
                if not name or not name.isprintable():
                    raise InvalidInput("name must be printable and not blank")
                values["name"] = name
            if patch.topic is not None:
                values["topic"] = patch.topic
            if patch.archived is not None:
                values["archived_at"] = now if patch.archived else None
            if not values:
                raise NoChange()
            await repository.update_channel(session, channel_id, **values)
            updated = await repository.get_channel(session, channel_id)
            assert updated is not None
            return Change("channel.updated", channel_dict(updated))

        with contextlib.suppress(NoChange):
            await self._ledger.commit(channel_id, actor, write)
        return await self.get(actor, channel_id)

    async def join(self, actor: str, channel_id: str) -> dict[str, Any]:
        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            channel = await repository.get_channel(session, channel_id)
            member = await repository.get_member(session, channel_id, actor)
            channel = permissions.ensure_visible(channel, member)
            if member is not None:
                raise NoChange()
            if channel.kind != "public":
                raise Forbidden("this channel is invite-only")
            await repository.add_member(session, channel_id, actor, "member", now, seq)
            return Change("member.joined", {"user_id": actor, "role": "member", "by": actor}, actor)

        if await self._change_membership(channel_id, actor, actor, write, added=True):
            await self._record("chat.member_joined", actor, channel_id, actor)
        return await self.get(actor, channel_id)

    async def invite(self, actor: str, channel_id: str, user_id: str) -> dict[str, Any]:
        await self._ensure_users_exist([user_id])

        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            channel, member = await self._locked(session, channel_id, actor)
            permissions.ensure_not_dm(channel)
            permissions.ensure_writable(channel)
            if channel.kind == "private":
                permissions.ensure_manager(member)
            if await repository.get_member(session, channel_id, user_id) is not None:
                raise NoChange()
            await repository.add_member(session, channel_id, user_id, "member", now, seq)
            return Change(
                "member.joined", {"user_id": user_id, "role": "member", "by": actor}, user_id
            )

        if await self._change_membership(channel_id, actor, user_id, write, added=True):
            await self._record("chat.member_invited", actor, channel_id, user_id)
        return await self.get(actor, channel_id)

    async def leave(self, actor: str, channel_id: str) -> None:
        await self.remove(actor, channel_id, actor)

    async def remove(self, actor: str, channel_id: str, user_id: str) -> None:
        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            channel, member = await self._locked(session, channel_id, actor)
            permissions.ensure_not_dm(channel)
            target = await repository.get_member(session, channel_id, user_id)
            if target is None:
                raise NotFound("not a member of this channel")
            data: dict[str, Any] = {"user_id": user_id, "by": actor}
            if user_id == actor:
                data["reason"] = "left"
            else:
                permissions.ensure_manager(member)
                if target.role == "owner" or (target.role == "admin" and member.role != "owner"):
                    raise Forbidden("only the owner may remove an admin; nobody removes the owner")
                data["reason"] = "removed"
            await repository.remove_member(session, channel_id, user_id)
            if target.role == "owner":
                successor = await repository.first_member_by_role(
                    session, channel_id, "admin"
                ) or await repository.first_member_by_role(session, channel_id, "member")
                if successor is not None:
                    await repository.set_role(session, channel_id, successor, "owner")
                    data["new_owner"] = successor
            return Change("member.left", data, user_id)

        if await self._change_membership(channel_id, actor, user_id, write, added=False):
            event = "chat.member_left" if user_id == actor else "chat.member_removed"
            await self._record(event, actor, channel_id, user_id)

    async def set_role(self, actor: str, channel_id: str, user_id: str, role: str) -> None:
        async def write(session: AsyncSession, seq: int, now: datetime) -> Change:
            _channel, member = await self._locked(session, channel_id, actor)
            if member.role != "owner":
                raise Forbidden("only the owner changes roles")
            target = await repository.get_member(session, channel_id, user_id)
            if target is None:
                raise NotFound("not a member of this channel")
            if target.role == "owner":
                raise Forbidden("the owner's role cannot change; the owner may leave instead")
            if target.role == role:
                raise NoChange()
            await repository.set_role(session, channel_id, user_id, role)
            return Change(
                "member.updated", {"user_id": user_id, "role": role, "by": actor}, user_id
            )

        try:
            await self._ledger.commit(channel_id, actor, write)
        except NoChange:
            return
        await self._record("chat.role_changed", actor, channel_id, user_id, {"role": role})

    async def mark_read(self, actor: str, channel_id: str, seq: int) -> dict[str, Any]:
        async with self._db.transaction() as session:
            channel = await repository.get_channel(session, channel_id)
            member = await repository.get_member(session, channel_id, actor) if channel else None
            permissions.ensure_member(channel, member)
            assert channel is not None
            await repository.set_last_read(session, channel_id, actor, min(seq, channel.last_seq))
            member = await repository.get_member(session, channel_id, actor)
        assert member is not None
        return {"channel_id": channel_id, "last_read_seq": member.last_read_seq}

    # Internals

    async def _locked(
        self, session: AsyncSession, channel_id: str, actor: str
    ) -> tuple[Channel, Any]:
        channel = await repository.get_channel(session, channel_id)
        member = await repository.get_member(session, channel_id, actor) if channel else None
        permissions.ensure_member(channel, member)
        assert channel is not None
        return channel, member

    async def _change_membership(
        self, channel_id: str, actor: str, user_id: str, write: Any, *, added: bool
    ) -> bool:
        try:
            committed = await self._ledger.commit(channel_id, actor, write)
        except NoChange:
            return False
        if added:
            async with self._db.sessions() as session:
                channel = await repository.get_channel(session, channel_id)
            assert channel is not None
            await self._tell_user(
                user_id,
                {"type": "channel.added", "channel": channel_dict(channel), "seq": committed.seq},
            )
        else:
            await self._tell_user(
                user_id,
                {"type": "channel.removed", "channel_id": channel_id, "seq": committed.seq},
            )
        return True

    async def _record(
        self,
        event: str,
        actor: str,
        channel_id: str,
        user_id: str,
        details: dict[str, object] | None = None,
    ) -> None:
        if self._audit is not None:
            await self._audit.record(
                event,
                actor_id=actor,
                target_type="user",
                target_id=user_id,
                details={"channel_id": channel_id, **(details or {})},
            )

    async def _tell_user(self, user_id: str, frame: dict[str, Any]) -> None:
        kind = str(frame["type"])
        payload = wrap(int(frame.get("seq", 0)), kind, user_id, orjson.dumps(frame).decode())
        try:
            await self._bus.publish(user_topic(user_id), payload)
        except Exception:
            # Best effort: the user's sockets miss the hint, the channel list over REST and
            # the next resume are still right.
            log.warning("could not tell user %s about %s", user_id, frame["type"], exc_info=True)

    async def _ensure_users_exist(self, user_ids: list[str]) -> None:
        found = await self._users.existing([u for u in user_ids if is_id(u)])
        missing = [u for u in user_ids if u not in found]
        if missing:
            raise NotFound(f"user not found: {missing[0]}")


def _new_channel(
    kind: str, name: str | None, topic: str, actor: str, dm_key: str | None
) -> Channel:
    return Channel(
        id=new_id(),
        kind=kind,
        name=name,
        topic=topic,
        dm_key=dm_key,
        created_by=actor,
        created_at=datetime.now(UTC),
        archived_at=None,
        last_seq=1,
    )
