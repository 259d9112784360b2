"""All of chat's SQL. Functions take the caller's session; the caller owns the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ultrachat.chat.models import (
    Channel,
    ChannelEvent,
    ChannelMember,
    Mention,
    Message,
    MessageClientId,
    Pin,
    Reaction,
)
from ultrachat.chat.schemas import MAX_UNREAD_COUNT
from ultrachat.storage.ids import id_timestamp, is_id

# Channels and sequence numbers


async def next_seq(session: AsyncSession, channel_id: str) -> int | None:
    """Take the channel's next seq, locking its row until the transaction ends.

    The row lock serializes writers per channel and a rollback gives the number back, which
    is what makes seqs gap-free. None when the channel does not exist.
    """
    if not is_id(channel_id):
        return None  # client input that no channel has (PostgreSQL refuses some, e.g. NUL)
    result = await session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values(last_seq=Channel.last_seq + 1)
        .returning(Channel.last_seq)
    )
    return result.scalar_one_or_none()


async def get_channel(session: AsyncSession, channel_id: str) -> Channel | None:
    if not is_id(channel_id):
        return None
    return await session.get(Channel, channel_id, populate_existing=True)


async def get_dm(session: AsyncSession, dm_key: str) -> Channel | None:
    result = await session.scalars(select(Channel).where(Channel.dm_key == dm_key))
    return result.first()


async def add_channel(session: AsyncSession, channel: Channel) -> None:
    session.add(channel)
    await session.flush()


async def update_channel(session: AsyncSession, channel_id: str, **values: object) -> None:
    await session.execute(update(Channel).where(Channel.id == channel_id).values(**values))


async def list_public_channels(session: AsyncSession, limit: int) -> Sequence[Channel]:
    result = await session.scalars(
        select(Channel).where(Channel.kind == "public").order_by(Channel.created_at).limit(limit)
    )
    return result.all()


# Membership


async def get_member(session: AsyncSession, channel_id: str, user_id: str) -> ChannelMember | None:
    if not (is_id(channel_id) and is_id(user_id)):
        return None
    return await session.get(ChannelMember, (channel_id, user_id), populate_existing=True)


async def add_member(
    session: AsyncSession, channel_id: str, user_id: str, role: str, now: datetime, read_seq: int
) -> None:
    session.add(
        ChannelMember(
            channel_id=channel_id, user_id=user_id, role=role, joined_at=now, last_read_seq=read_seq
        )
    )
    await session.flush()


async def remove_member(session: AsyncSession, channel_id: str, user_id: str) -> bool:
    result = await session.execute(
        delete(ChannelMember).where(
            ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def set_role(session: AsyncSession, channel_id: str, user_id: str, role: str) -> None:
    await session.execute(
        update(ChannelMember)
        .where(ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id)
        .values(role=role)
    )


async def list_members(session: AsyncSession, channel_id: str) -> Sequence[ChannelMember]:
    result = await session.scalars(
        select(ChannelMember)
        .where(ChannelMember.channel_id == channel_id)
        .order_by(ChannelMember.joined_at, ChannelMember.user_id)
    )
    return result.all()


async def member_ids(session: AsyncSession, channel_id: str) -> list[str]:
    result = await session.scalars(
        select(ChannelMember.user_id).where(ChannelMember.channel_id == channel_id)
    )
    return list(result.all())


async def channel_ids_of(session: AsyncSession, user_id: str) -> list[str]:
    result = await session.scalars(
        select(ChannelMember.channel_id).where(ChannelMember.user_id == user_id)
    )
    return list(result.all())


async def set_last_read(session: AsyncSession, channel_id: str, user_id: str, seq: int) -> None:
    await session.execute(
        update(ChannelMember)
        .where(
            ChannelMember.channel_id == channel_id,
            ChannelMember.user_id == user_id,
            ChannelMember.last_read_seq < seq,
        )
        .values(last_read_seq=seq)
    )


async def channels_of_with_counts(
    session: AsyncSession, user_id: str
) -> list[tuple[Channel, ChannelMember, int, int]]:
    """The user's channels with unread and mention counts past their read marker; the
    unread count stops at ``MAX_UNREAD_COUNT`` (100 means 100 or more)."""
    # Counting stops at the cap: a count is a scan of every unread row (and their heap
    # pages, for the author and deletion filters), so a member who has not opened a busy
    # channel for a week would otherwise make every channel list read thousands of rows.
    unread_rows = (
        select(Message.seq)
        .where(
            Message.channel_id == ChannelMember.channel_id,
            Message.seq > ChannelMember.last_read_seq,
            Message.user_id != user_id,
            Message.deleted_at.is_(None),
        )
        .limit(MAX_UNREAD_COUNT)
        .correlate(ChannelMember)
        .subquery()
    )
    unread = select(func.count()).select_from(unread_rows).scalar_subquery()
    mentions = (
        select(func.count())
        .select_from(Mention)
        .where(
            Mention.user_id == user_id,
            Mention.channel_id == ChannelMember.channel_id,
            Mention.seq > ChannelMember.last_read_seq,
        )
        .scalar_subquery()
    )
    result = await session.execute(
        select(Channel, ChannelMember, unread, mentions)
        .join(ChannelMember, ChannelMember.channel_id == Channel.id)
        .where(ChannelMember.user_id == user_id)
        .order_by(Channel.created_at)
    )
    return [(row[0], row[1], int(row[2]), int(row[3])) for row in result.all()]


# The event log


async def add_event(session: AsyncSession, event: ChannelEvent) -> None:
    session.add(event)


async def events_after(
    session: AsyncSession, channel_id: str, after_seq: int, limit: int
) -> Sequence[ChannelEvent]:
    result = await session.scalars(
        select(ChannelEvent)
        .where(ChannelEvent.channel_id == channel_id, ChannelEvent.seq > after_seq)
        .order_by(ChannelEvent.seq)
        .limit(limit)
    )
    return result.all()


async def current_seqs(session: AsyncSession, channel_ids: Sequence[str]) -> dict[str, int]:
    if not channel_ids:
        return {}
    result = await session.execute(
        select(Channel.id, Channel.last_seq).where(Channel.id.in_(channel_ids))
    )
    return {row[0]: int(row[1]) for row in result.all()}


# Messages


def by_id(message_id: str) -> object:
    # The id's timestamp is the row's created_at: PostgreSQL prunes to one partition.
    return and_(Message.id == message_id, Message.created_at == id_timestamp(message_id))


async def add_message(session: AsyncSession, message: Message) -> None:
    session.add(message)


async def get_message(session: AsyncSession, message_id: str) -> Message | None:
    try:
        condition = by_id(message_id)
    except ValueError:
        return None
    result = await session.scalars(select(Message).where(condition))  # type: ignore[arg-type]
    return result.first()


async def update_message(session: AsyncSession, message_id: str, **values: object) -> None:
    await session.execute(
        update(Message).where(by_id(message_id)).values(**values)  # type: ignore[arg-type]
    )


# Partition pruning (docs/database.md#partitions). In PostgreSQL, ``messages`` is partitioned
# by month on created_at, so a query that names no created_at reads every partition's index.
# A channel's seqs and created_at rise together: seq N+1 is taken after seq N committed, and
# created_at is the id's time, taken right after the seq. Only clock skew between nodes can
# invert them, by at most CLOCK_SKEW (an assumption: NTP keeps nodes within milliseconds).
CLOCK_SKEW = timedelta(hours=1)
RECENT = timedelta(days=7)


async def message_page(
    session: AsyncSession,
    channel_id: str,
    after_seq: int | None,
    before_seq: int | None,
    limit: int,
) -> list[Message]:
    """Up to ``limit`` messages in ascending seq; the newest page when no bound is given."""
    query = select(Message).where(Message.channel_id == channel_id)
    if after_seq is not None:
        query = query.where(Message.seq > after_seq)
    if before_seq is not None:
        query = query.where(Message.seq < before_seq)
    if after_seq is not None:
        rows = (await session.scalars(query.order_by(Message.seq).limit(limit))).all()
        return list(rows)
    newest = query.order_by(Message.seq.desc()).limit(limit)
    if before_seq is None and session.get_bind().dialect.name == "postgresql":
        recent = await _newest_recent(session, newest, limit)
        if recent is not None:
            return recent
    rows = (await session.scalars(newest)).all()
    return list(reversed(rows))


async def _newest_recent(session: AsyncSession, newest: Any, limit: int) -> list[Message] | None:
    """The newest page from the last week's partitions alone, if they hold all of it.

    They do when the page is full and its oldest message is more than CLOCK_SKEW inside the
    window: any message outside it is then older, so its seq is lower than the whole page's.
    None otherwise (a quiet channel), and the caller reads every partition.
    """
    since = datetime.now(UTC) - RECENT
    # A lower bound only: with an upper one too, PostgreSQL's generic plan for the prepared
    # statement guesses the range is tiny and walks the created_at index instead (10x slower).
    rows = (await session.scalars(newest.where(Message.created_at >= since))).all()
    if len(rows) == limit and rows[-1].created_at >= since + CLOCK_SKEW:
        return list(reversed(rows))
    return None


async def thread_replies(session: AsyncSession, channel_id: str, root_id: str) -> list[Message]:
    query = select(Message).where(Message.channel_id == channel_id, Message.thread_id == root_id)
    if is_id(root_id):
        # Replies are written after their root: skip the partitions older than it.
        query = query.where(Message.created_at >= id_timestamp(root_id) - CLOCK_SKEW)
    result = await session.scalars(query.order_by(Message.seq))
    return list(result.all())


async def find_client_msg(
    session: AsyncSession, channel_id: str, user_id: str, client_msg_id: str
) -> str | None:
    if not is_id(channel_id):
        return None
    result = await session.scalars(
        select(MessageClientId.message_id).where(
            MessageClientId.channel_id == channel_id,
            MessageClientId.user_id == user_id,
            MessageClientId.client_msg_id == client_msg_id,
        )
    )
    return result.first()


async def add_client_msg(
    session: AsyncSession,
    channel_id: str,
    user_id: str,
    client_msg_id: str,
    message_id: str,
    now: datetime,
) -> None:
    session.add(
        MessageClientId(
            channel_id=channel_id,
            user_id=user_id,
            client_msg_id=client_msg_id,
            message_id=message_id,
            created_at=now,
        )
    )


# Mentions, reactions and pins


async def add_mentions(
    session: AsyncSession, message_id: str, channel_id: str, seq: int, user_ids: Sequence[str]
) -> None:
    if user_ids:
        await session.execute(
            insert(Mention),
            [
                {"message_id": message_id, "user_id": u, "channel_id": channel_id, "seq": seq}
                for u in user_ids
            ],
        )


async def mentions_for(session: AsyncSession, message_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    if message_ids:
        result = await session.execute(
            select(Mention.message_id, Mention.user_id)
            .where(Mention.message_id.in_(message_ids))
            .order_by(Mention.user_id)
        )
        for message_id, user_id in result.all():
            found[message_id].append(user_id)
    return found


async def add_reaction(
    session: AsyncSession, message_id: str, channel_id: str, user_id: str, emoji: str, now: datetime
) -> bool:
    existing = await session.get(Reaction, (message_id, user_id, emoji))
    if existing is not None:
        return False
    session.add(
        Reaction(
            message_id=message_id,
            user_id=user_id,
            emoji=emoji,
            channel_id=channel_id,
            created_at=now,
        )
    )
    await session.flush()
    return True


async def remove_reaction(session: AsyncSession, message_id: str, user_id: str, emoji: str) -> bool:
    result = await session.execute(
        delete(Reaction).where(
            Reaction.message_id == message_id, Reaction.user_id == user_id, Reaction.emoji == emoji
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reactions_for(
    session: AsyncSession, message_ids: Sequence[str]
) -> dict[str, dict[str, list[str]]]:
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    if message_ids:
        result = await session.execute(
            select(Reaction.message_id, Reaction.emoji, Reaction.user_id)
            .where(Reaction.message_id.in_(message_ids))
            .order_by(Reaction.created_at, Reaction.user_id)
        )
        for message_id, emoji, user_id in result.all():
            found[message_id][emoji].append(user_id)
    return found


async def add_pin(
    session: AsyncSession, message_id: str, channel_id: str, user_id: str, now: datetime
) -> bool:
    if await session.get(Pin, message_id) is not None:
        return False
    session.add(Pin(message_id=message_id, channel_id=channel_id, pinned_by=user_id, pinned_at=now))
    await session.flush()
    return True


async def remove_pin(session: AsyncSession, message_id: str) -> bool:
    result = await session.execute(delete(Pin).where(Pin.message_id == message_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def pinned_ids(session: AsyncSession, message_ids: Sequence[str]) -> set[str]:
    if not message_ids:
        return set()
    result = await session.scalars(select(Pin.message_id).where(Pin.message_id.in_(message_ids)))
    return set(result.all())


async def pins_of(session: AsyncSession, channel_id: str) -> list[str]:
    result = await session.scalars(
        select(Pin.message_id).where(Pin.channel_id == channel_id).order_by(Pin.pinned_at)
    )
    return list(result.all())


async def delete_mentions(session: AsyncSession, message_id: str) -> None:
    await session.execute(delete(Mention).where(Mention.message_id == message_id))


async def members_among(
    session: AsyncSession, channel_id: str, user_ids: Sequence[str]
) -> list[str]:
    if not user_ids:
        return []
    result = await session.scalars(
        select(ChannelMember.user_id).where(
            ChannelMember.channel_id == channel_id, ChannelMember.user_id.in_(user_ids)
        )
    )
    return sorted(result.all())


async def first_member_by_role(session: AsyncSession, channel_id: str, role: str) -> str | None:
    result = await session.scalars(
        select(ChannelMember.user_id)
        .where(ChannelMember.channel_id == channel_id, ChannelMember.role == role)
        .order_by(ChannelMember.joined_at, ChannelMember.user_id)
        .limit(1)
    )
    return result.first()
