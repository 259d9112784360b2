"""Every persistent event takes the channel's next seq: gap-free, strictly increasing.

The log is read straight from storage (``ChannelLog``), the source real-time replay uses.
"""

from __future__ import annotations

import asyncio

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
    history,
    invite,
    join,
    kinds,
    leave,
    patch_channel,
    remove,
    send,
    set_role,
)


async def test_each_change_takes_the_next_seq_and_no_ops_take_none(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann, bob, cat = await accounts(client, 3)
    channel = await create(client, ann, "public")
    cid = channel["id"]

    await join(client, bob, cid)
    await join(client, bob, cid)  # no-op
    first = await send(client, ann, cid, "first")
    second = await send(client, bob, cid, "second")
    mine = f"{API}/messages/{first['id']}"
    assert_error(
        await client.patch(mine, json={"body": "x"}, headers=bob.headers), 403, "forbidden"
    )
    done(await client.patch(mine, json={"body": "first, edited"}, headers=ann.headers), 200)
    done(await client.put(f"{mine}/reactions/ok", headers=bob.headers))
    done(await client.put(f"{mine}/reactions/ok", headers=bob.headers))  # no-op
    done(await client.delete(f"{mine}/reactions/ok", headers=bob.headers))
    done(await client.delete(f"{mine}/reactions/ok", headers=bob.headers))  # no-op
    done(await client.post(f"{mine}/pin", headers=bob.headers))
    done(await client.post(f"{mine}/pin", headers=ann.headers))  # no-op
    done(await client.delete(f"{mine}/pin", headers=ann.headers))
    done(await client.delete(f"{mine}/pin", headers=ann.headers))  # no-op
    done(await patch_channel(client, ann, cid, name="renamed"), 200)
    done(await patch_channel(client, ann, cid), 200)  # no-op: nothing asked
    assert_error(await patch_channel(client, bob, cid, topic="mine"), 403, "forbidden")
    theirs = f"{API}/messages/{second['id']}"
    done(await client.delete(theirs, headers=bob.headers))
    done(await client.delete(theirs, headers=bob.headers))  # no-op
    done(await invite(client, ann, cid, cat), 200)
    done(await invite(client, bob, cid, cat), 200)  # no-op
    done(await set_role(client, ann, cid, cat, "admin"))
    done(await set_role(client, ann, cid, cat, "admin"))  # no-op
    read = await client.post(f"{API}/channels/{cid}/read", json={"seq": 5}, headers=bob.headers)
    done(read, 200)  # a read marker is not a channel event
    done(await leave(client, bob, cid))
    done(await remove(client, ann, cid, cat))

    assert await kinds(app, cid) == [
        "channel.created",
        "member.joined",
        "message.created",
        "message.created",
        "message.updated",
        "reaction.added",
        "reaction.removed",
        "message.pinned",
        "message.unpinned",
        "channel.updated",
        "message.deleted",
        "member.joined",
        "member.updated",
        "member.left",
        "member.left",
    ]
    assert (await get_channel(client, ann, cid))["last_seq"] == 15
    log = await events(app, cid)
    assert log[2][2] == first and log[3][2] == second  # the event is the message as sent
    assert (first["seq"], second["seq"]) == (3, 4)
    assert log[5][2] == {"message_id": first["id"], "user_id": bob.id, "emoji": "ok"}
    assert log[7][2] == {"message_id": first["id"], "user_id": bob.id}
    assert log[9][2]["name"] == "renamed"
    assert (log[10][2]["id"], log[10][2]["deleted"], log[10][2]["body"]) == (
        second["id"],
        True,
        None,
    )
    assert log[11][2] == {"user_id": cat.id, "role": "member", "by": ann.id}
    assert log[12][2] == {"user_id": cat.id, "role": "admin", "by": ann.id}
    assert log[14][2] == {"user_id": cat.id, "by": ann.id, "reason": "removed"}


async def test_channel_created_is_seq_1_with_its_members(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann, bob = await accounts(client, 2)
    dm = await create(client, ann, "dm", bob)

    [(seq, kind, data)] = await events(app, dm["id"])
    assert (seq, kind) == (1, "channel.created")
    assert sorted(data["member_ids"]) == sorted([ann.id, bob.id])
    assert data["id"] == dm["id"]


async def test_concurrent_sends_get_distinct_gap_free_seqs(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    cid = channel["id"]

    sent = await asyncio.gather(*[send(client, (ann, bob)[i % 2], cid, f"m{i}") for i in range(20)])
    assert sorted(m["seq"] for m in sent) == list(range(2, 22))
    page = await history(client, ann, cid)
    assert [m["seq"] for m in page] == list(range(2, 22))
    log = await events(app, cid)
    assert [seq for seq, _, _ in log] == list(range(1, 22))
    # Each message's seq is the seq of its own message.created event.
    assert {data["id"]: seq for seq, _, data in log[1:]} == {m["id"]: m["seq"] for m in page}


async def test_channels_count_their_own_seqs(app: FastAPI, client: httpx.AsyncClient) -> None:
    ann = await account(client)
    one = await create(client, ann, "public", name="one")
    two = await create(client, ann, "public", name="two")
    for i in range(3):
        await send(client, ann, one["id"], f"one {i}")
    assert (await send(client, ann, two["id"], "two"))["seq"] == 2
    assert await kinds(app, one["id"]) == ["channel.created"] + ["message.created"] * 3
    assert await kinds(app, two["id"]) == ["channel.created", "message.created"]
