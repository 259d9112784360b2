"""Who may do what in a channel. Roles: owner > admin > member.

- Anyone may see and join a public channel; private channels and DMs are visible only to
  their members (others get 404, so their existence does not leak).
- Members post, react, pin and mark read. Archived channels refuse new content.
- Owners and admins rename, set the topic, archive, invite to private channels, remove
  members (never the owner) and delete anyone's message. Only the owner changes roles.
- A DM has a fixed set of members: nobody joins, is invited to or removed from it.
"""

from __future__ import annotations

from ultrachat.chat.models import Channel, ChannelMember
from ultrachat.errors import Forbidden, NotFound

MANAGERS = frozenset({"owner", "admin"})


def ensure_visible(channel: Channel | None, member: ChannelMember | None) -> Channel:
    if channel is None or (channel.kind != "public" and member is None):
        raise NotFound("channel not found")
    return channel


def ensure_member(channel: Channel | None, member: ChannelMember | None) -> ChannelMember:
    ensure_visible(channel, member)
    if member is None:
        raise Forbidden("join the channel first")
    return member


def ensure_writable(channel: Channel) -> None:
    if channel.archived_at is not None:
        raise Forbidden("channel is archived")


def ensure_manager(member: ChannelMember) -> None:
    if member.role not in MANAGERS:
        raise Forbidden("only channel owners and admins may do this")


def ensure_not_dm(channel: Channel) -> None:
    if channel.kind == "dm":
        raise Forbidden("direct message membership cannot change")
