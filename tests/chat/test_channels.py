"""Channels: create (public, private, DM), list, browse, read, change, archive, visibility."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.factories import account, assert_error
from tests.chat.factories import (
    API,
    accounts,
    create,
    done,
    get_channel,
    parse_time,
    patch_channel,
    post,
    roles,
    send,
    set_role,
)


async def test_create_public_channel_returns_it_with_the_owner(client: httpx.AsyncClient) -> None:
    owner = await account(client)
    channel = await create(client, owner, "public", name="general", topic="all hands")

    assert isinstance(channel["id"], str) and channel["id"]
    assert channel["name"] == "general"
    assert channel["kind"] == "public"
    assert channel["topic"] == "all hands"
    assert channel["created_by"] == owner.id
    parse_time(channel["created_at"])
    assert channel["archived"] is False
    assert channel["last_seq"] == 1  # channel.created
    assert channel["member_ids"] == [owner.id]
    assert channel["role"] == "owner"
    assert await get_channel(client, owner, channel["id"]) == channel


async def test_create_private_channel_with_members(client: httpx.AsyncClient) -> None:
    owner, ann, bob = await accounts(client, 3)
    channel = await create(client, owner, "private", ann, bob, name="secret")

    assert channel["kind"] == "private"
    assert sorted(channel["member_ids"]) == sorted([owner.id, ann.id, bob.id])
    assert await roles(client, ann, channel["id"]) == {
        owner.id: "owner",
        ann.id: "member",
        bob.id: "member",
    }
    assert (await get_channel(client, ann, channel["id"]))["role"] == "member"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "public"},
        {"kind": "private", "name": "   "},
        {"kind": "public", "name": "x" * 81},
        {"kind": "group", "name": "room"},
        {"kind": "public", "name": "room", "member_ids": "everyone"},
        {"kind": "public", "name": "room", "extra": 1},
    ],
)
async def test_create_refuses_invalid_bodies(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    owner = await account(client)
    response = await client.post(f"{API}/channels", json=body, headers=owner.headers)
    assert_error(response, 422, "invalid_input")


async def test_create_with_an_unknown_member_is_404(client: httpx.AsyncClient) -> None:
    owner = await account(client)
    response = await client.post(
        f"{API}/channels",
        json={"kind": "private", "name": "room", "member_ids": ["no-such-user"]},
        headers=owner.headers,
    )
    assert_error(response, 404, "not_found")


async def test_channels_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{API}/channels", json={"kind": "public", "name": "room"})
    assert_error(response, 401, "unauthorized")
    assert_error(await client.get(f"{API}/channels"), 401, "unauthorized")


# Direct messages


@pytest.mark.parametrize("size", [2, 9])
async def test_dm_of_2_to_9_users_has_no_name(client: httpx.AsyncClient, size: int) -> None:
    users = await accounts(client, size)
    dm = await create(client, users[0], "dm", *users[1:])

    assert dm["kind"] == "dm"
    assert dm["name"] is None
    assert sorted(dm["member_ids"]) == sorted(u.id for u in users)
    for user in users:
        assert (await get_channel(client, user, dm["id"]))["role"] == "member"


@pytest.mark.parametrize("others", [0, 9])
async def test_dm_of_1_or_10_users_is_refused(client: httpx.AsyncClient, others: int) -> None:
    users = await accounts(client, others + 1)
    response = await client.post(
        f"{API}/channels",
        # the creator is always counted, listed or not
        json={"kind": "dm", "member_ids": [u.id for u in users]},
        headers=users[0].headers,
    )
    assert_error(response, 422, "invalid_input")


async def test_creating_the_same_dm_again_returns_it(client: httpx.AsyncClient) -> None:
    ann, bob, cid = await accounts(client, 3)
    dm = await create(client, ann, "dm", bob, cid)

    again = await client.post(
        f"{API}/channels",
        json={"kind": "dm", "member_ids": [cid.id, ann.id]},  # any order, creator left out
        headers=bob.headers,
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == dm["id"]
    by_ann = await client.post(
        f"{API}/channels",
        json={"kind": "dm", "member_ids": [cid.id, bob.id, ann.id]},
        headers=ann.headers,
    )
    assert by_ann.status_code == 200, by_ann.text
    assert by_ann.json()["id"] == dm["id"]
    # A different set of users is a different DM.
    pair = await create(client, ann, "dm", bob)
    assert pair["id"] != dm["id"]


# Listing and browsing


async def test_list_shows_my_channels_with_counts(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    mine = await create(client, ann, "private", name="mine")
    dm = await create(client, ann, "dm", bob)
    await create(client, bob, "public", name="not mine")

    response = await client.get(f"{API}/channels", headers=ann.headers)
    assert response.status_code == 200, response.text
    listing = {c["id"]: c for c in response.json()["channels"]}
    assert set(listing) == {mine["id"], dm["id"]}
    assert listing[mine["id"]]["role"] == "owner"
    for channel in listing.values():
        assert channel["unread_count"] == 0
        assert channel["mention_count"] == 0


async def test_browse_lists_public_channels_only(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    public = await create(client, bob, "public", name="open")
    private = await create(client, bob, "private", name="closed")
    dm = await create(client, bob, "dm", ann)

    response = await client.get(f"{API}/channels", params={"browse": "true"}, headers=ann.headers)
    assert response.status_code == 200, response.text
    ids = {c["id"] for c in response.json()["channels"]}
    assert public["id"] in ids
    assert private["id"] not in ids
    assert dm["id"] not in ids
    assert {c["kind"] for c in response.json()["channels"]} == {"public"}


# Reading and visibility


async def test_public_channels_are_readable_by_anyone(client: httpx.AsyncClient) -> None:
    owner, stranger = await accounts(client, 2)
    channel = await create(client, owner, "public")
    message = await send(client, owner, channel["id"], "visible to all")

    seen = await get_channel(client, stranger, channel["id"])
    assert seen["id"] == channel["id"]
    assert seen["role"] is None
    for path in (f"messages/{message['id']}", f"channels/{channel['id']}/members"):
        done(await client.get(f"{API}/{path}", headers=stranger.headers), 200)
    page = await client.get(f"{API}/channels/{channel['id']}/messages", headers=stranger.headers)
    assert [m["id"] for m in page.json()["messages"]] == [message["id"]]
    done(await client.get(f"{API}/channels/{channel['id']}/pins", headers=stranger.headers), 200)


@pytest.mark.parametrize("kind", ["private", "dm"])
async def test_private_channels_and_dms_are_404_to_non_members(
    client: httpx.AsyncClient, kind: str
) -> None:
    owner, friend, stranger = await accounts(client, 3)
    channel = await create(client, owner, kind, friend)
    message = await send(client, owner, channel["id"], "secret")
    cid = channel["id"]

    for path in (
        f"channels/{cid}",
        f"channels/{cid}/messages",
        f"channels/{cid}/pins",
        f"channels/{cid}/members",
        f"messages/{message['id']}",
        f"messages/{message['id']}/thread",
    ):
        response = await client.get(f"{API}/{path}", headers=stranger.headers)
        assert_error(response, 404, "not_found")
    # Indistinguishable from a channel that does not exist.
    assert_error(
        await client.get(f"{API}/channels/nope", headers=stranger.headers), 404, "not_found"
    )
    listing = await client.get(f"{API}/channels", headers=stranger.headers)
    assert cid not in [c["id"] for c in listing.json()["channels"]]


# Changing


async def test_owner_and_admin_rename_set_topic_and_archive(client: httpx.AsyncClient) -> None:
    owner, admin = await accounts(client, 2)
    channel = await create(client, owner, "private", admin)
    cid = channel["id"]
    done(await set_role(client, owner, cid, admin, "admin"))

    renamed = await patch_channel(client, owner, cid, name="renamed")
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"
    topic = await patch_channel(client, admin, cid, topic="new topic")
    assert topic.status_code == 200, topic.text
    assert (topic.json()["name"], topic.json()["topic"]) == ("renamed", "new topic")
    archived = await patch_channel(client, admin, cid, archived=True)
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived"] is True
    assert (await get_channel(client, owner, cid))["archived"] is True


async def test_members_and_strangers_cannot_change_a_channel(client: httpx.AsyncClient) -> None:
    owner, member, stranger = await accounts(client, 3)
    public = await create(client, owner, "public", member)
    private = await create(client, owner, "private", member)

    for changes in ({"name": "mine now"}, {"topic": "t"}, {"archived": True}):
        assert_error(await patch_channel(client, member, public["id"], **changes), 403, "forbidden")
    assert_error(await patch_channel(client, stranger, public["id"], topic="t"), 403, "forbidden")
    assert_error(await patch_channel(client, stranger, private["id"], topic="t"), 404, "not_found")
    assert (await get_channel(client, owner, public["id"]))["name"] == "room"


async def test_patch_refuses_blank_names_and_dm_names(client: httpx.AsyncClient) -> None:
    owner, friend = await accounts(client, 2)
    channel = await create(client, owner, "public")
    dm = await create(client, owner, "dm", friend)

    assert_error(await patch_channel(client, owner, channel["id"], name="  "), 422, "invalid_input")
    assert_error(
        await patch_channel(client, owner, channel["id"], archived="yes"), 422, "invalid_input"
    )
    assert_error(await patch_channel(client, owner, dm["id"], name="us"), 403, "forbidden")


async def test_archived_channel_refuses_messages_until_unarchived(
    client: httpx.AsyncClient,
) -> None:
    owner = await account(client)
    channel = await create(client, owner, "public")
    done(await patch_channel(client, owner, channel["id"], archived=True), 200)

    assert_error(await post(client, owner, channel["id"], "too late"), 403, "forbidden")
    done(await patch_channel(client, owner, channel["id"], archived=False), 200)
    await send(client, owner, channel["id"], "back again")
