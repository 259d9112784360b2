"""Membership: join, leave, invite, remove, roles, ownership transfer, fixed DMs."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.auth.factories import account, assert_error
from tests.chat.factories import (
    API,
    accounts,
    create,
    done,
    events,
    get_channel,
    invite,
    join,
    leave,
    post,
    remove,
    roles,
    send,
    set_role,
)

# Joining


async def test_join_public_channel_makes_a_member(client: httpx.AsyncClient) -> None:
    owner, ann = await accounts(client, 2)
    channel = await create(client, owner, "public")

    joined = await join(client, ann, channel["id"])
    assert joined["role"] == "member"
    assert sorted(joined["member_ids"]) == sorted([owner.id, ann.id])
    assert await roles(client, owner, channel["id"]) == {owner.id: "owner", ann.id: "member"}
    # Joining again changes nothing (and takes no seq).
    assert (await join(client, ann, channel["id"]))["last_seq"] == joined["last_seq"]
    await send(client, ann, channel["id"], "hi all")


async def test_private_channels_and_dms_cannot_be_joined(client: httpx.AsyncClient) -> None:
    owner, friend, stranger = await accounts(client, 3)
    private = await create(client, owner, "private")
    dm = await create(client, owner, "dm", friend)

    # 404, not 403: to a non-member a private channel does not exist (see permissions.py).
    for channel in (private, dm):
        response = await client.post(
            f"{API}/channels/{channel['id']}/join", headers=stranger.headers
        )
        assert_error(response, 404, "not_found")
    assert await roles(client, owner, private["id"]) == {owner.id: "owner"}


async def test_join_unknown_channel_is_404(client: httpx.AsyncClient) -> None:
    user = await account(client)
    response = await client.post(f"{API}/channels/no-such-channel/join", headers=user.headers)
    assert_error(response, 404, "not_found")


# Inviting


async def test_any_member_invites_to_a_public_channel(client: httpx.AsyncClient) -> None:
    owner, member, guest, stranger, other = await accounts(client, 5)
    channel = await create(client, owner, "public", member)

    done(await invite(client, member, channel["id"], guest), 200)
    assert (await roles(client, owner, channel["id"]))[guest.id] == "member"
    # Someone who is not a member invites nobody.
    assert_error(await invite(client, stranger, channel["id"], other), 403, "forbidden")
    assert other.id not in await roles(client, owner, channel["id"])


async def test_only_owner_and_admins_invite_to_a_private_channel(
    client: httpx.AsyncClient,
) -> None:
    owner, admin, member, ann, bob, stranger = await accounts(client, 6)
    channel = await create(client, owner, "private", admin, member)
    cid = channel["id"]
    done(await set_role(client, owner, cid, admin, "admin"))

    assert_error(await invite(client, member, cid, stranger), 403, "forbidden")
    assert_error(await invite(client, stranger, cid, stranger), 404, "not_found")
    done(await invite(client, owner, cid, ann), 200)
    done(await invite(client, admin, cid, bob), 200)
    members = await roles(client, owner, cid)
    assert members[ann.id] == members[bob.id] == "member"
    assert stranger.id not in members
    assert (await get_channel(client, ann, cid))["role"] == "member"


async def test_inviting_an_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    owner = await account(client)
    channel = await create(client, owner, "public")
    response = await client.post(
        f"{API}/channels/{channel['id']}/members",
        json={"user_id": "01900000-0000-7000-8000-000000000000"},
        headers=owner.headers,
    )
    assert_error(response, 404, "not_found")


# Removing and leaving


async def test_admin_removes_a_member_who_then_loses_access(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, admin, member = await accounts(client, 3)
    channel = await create(client, owner, "private", admin, member)
    cid = channel["id"]
    done(await set_role(client, owner, cid, admin, "admin"))

    done(await remove(client, admin, cid, member))
    assert member.id not in await roles(client, owner, cid)
    assert_error(
        await client.get(f"{API}/channels/{cid}", headers=member.headers), 404, "not_found"
    )
    assert_error(await post(client, member, cid, "still here?"), 404, "not_found")
    *_, (_, kind, data) = await events(app, cid)
    assert kind == "member.left"
    assert data == {"user_id": member.id, "by": admin.id, "reason": "removed"}


async def test_members_cannot_remove_others(client: httpx.AsyncClient) -> None:
    owner, ann, bob, stranger = await accounts(client, 4)
    channel = await create(client, owner, "public", ann, bob)
    cid = channel["id"]

    assert_error(await remove(client, ann, cid, bob), 403, "forbidden")
    assert_error(await remove(client, stranger, cid, bob), 403, "forbidden")
    assert_error(await remove(client, owner, cid, stranger), 404, "not_found")
    assert set(await roles(client, owner, cid)) == {owner.id, ann.id, bob.id}


async def test_nobody_removes_the_owner_and_only_the_owner_removes_admins(
    client: httpx.AsyncClient,
) -> None:
    owner, admin, other_admin = await accounts(client, 3)
    channel = await create(client, owner, "public", admin, other_admin)
    cid = channel["id"]
    done(await set_role(client, owner, cid, admin, "admin"))
    done(await set_role(client, owner, cid, other_admin, "admin"))

    assert_error(await remove(client, admin, cid, owner), 403, "forbidden")
    assert_error(await remove(client, admin, cid, other_admin), 403, "forbidden")
    done(await remove(client, owner, cid, other_admin))
    assert await roles(client, owner, cid) == {owner.id: "owner", admin.id: "admin"}


async def test_a_member_leaves(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner, ann = await accounts(client, 2)
    channel = await create(client, owner, "private", ann)

    done(await leave(client, ann, channel["id"]))
    assert await roles(client, owner, channel["id"]) == {owner.id: "owner"}
    *_, (_, kind, data) = await events(app, channel["id"])
    assert (kind, data) == ("member.left", {"user_id": ann.id, "by": ann.id, "reason": "left"})
    # Gone is gone: a second leave is refused like any non-member's.
    assert_error(await leave(client, ann, channel["id"]), 404, "not_found")


async def test_owner_leaving_hands_ownership_to_the_first_admin(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, early, admin = await accounts(client, 3)
    channel = await create(client, owner, "public", early)
    cid = channel["id"]
    await join(client, admin, cid)
    done(await set_role(client, owner, cid, admin, "admin"))

    done(await leave(client, owner, cid))
    *_, (_, kind, data) = await events(app, cid)
    assert kind == "member.left"
    assert data == {"user_id": owner.id, "by": owner.id, "reason": "left", "new_owner": admin.id}
    assert await roles(client, admin, cid) == {admin.id: "owner", early.id: "member"}
    # The new owner has the owner's powers.
    done(await set_role(client, admin, cid, early, "admin"))


async def test_owner_leaving_without_admins_hands_ownership_to_a_member(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, ann = await accounts(client, 2)
    channel = await create(client, owner, "private", ann)

    done(await leave(client, owner, channel["id"]))
    *_, (_, _, data) = await events(app, channel["id"])
    assert data["new_owner"] == ann.id
    assert await roles(client, ann, channel["id"]) == {ann.id: "owner"}


# Roles


async def test_only_the_owner_changes_roles(client: httpx.AsyncClient) -> None:
    owner, admin, member = await accounts(client, 3)
    channel = await create(client, owner, "public", admin, member)
    cid = channel["id"]

    done(await set_role(client, owner, cid, admin, "admin"))
    assert (await roles(client, owner, cid))[admin.id] == "admin"
    assert_error(await set_role(client, admin, cid, member, "admin"), 403, "forbidden")
    assert_error(await set_role(client, member, cid, member, "admin"), 403, "forbidden")
    assert_error(await set_role(client, admin, cid, owner, "member"), 403, "forbidden")
    done(await set_role(client, owner, cid, admin, "member"))
    assert await roles(client, owner, cid) == {
        owner.id: "owner",
        admin.id: "member",
        member.id: "member",
    }


async def test_role_changes_that_cannot_be(client: httpx.AsyncClient) -> None:
    owner, member, stranger = await accounts(client, 3)
    channel = await create(client, owner, "public", member)
    cid = channel["id"]

    assert_error(await set_role(client, owner, cid, member, "owner"), 422, "invalid_input")
    assert_error(await set_role(client, owner, cid, owner, "member"), 403, "forbidden")
    assert_error(await set_role(client, owner, cid, stranger, "admin"), 404, "not_found")


# DMs


async def test_dm_membership_is_fixed(client: httpx.AsyncClient) -> None:
    ann, bob, cid = await accounts(client, 3)
    dm = await create(client, ann, "dm", bob)
    dm_id = dm["id"]

    assert_error(await invite(client, ann, dm_id, cid), 403, "forbidden")
    assert_error(await remove(client, ann, dm_id, bob), 403, "forbidden")
    assert_error(await leave(client, bob, dm_id), 403, "forbidden")
    assert_error(await set_role(client, ann, dm_id, bob, "admin"), 403, "forbidden")
    assert await roles(client, ann, dm_id) == {ann.id: "member", bob.id: "member"}
