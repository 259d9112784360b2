"""Messages: send, history pages, tombstones, get, edit, delete, threads."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.factories import account, assert_error
from tests.chat.factories import (
    API,
    accounts,
    create,
    done,
    get_message,
    history,
    parse_time,
    post,
    send,
    set_role,
)

# Sending


async def test_send_returns_the_stored_message(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")

    message = await send(client, ann, channel["id"], "hello world")
    assert isinstance(message["id"], str)
    assert message["channel_id"] == channel["id"]
    assert message["seq"] == 2  # after channel.created
    assert message["user_id"] == ann.id
    assert message["body"] == "hello world"
    assert message["thread_id"] is None
    parse_time(message["created_at"])
    assert message["edited_at"] is None
    assert message["deleted"] is False
    assert (message["mentions"], message["reactions"], message["pinned"]) == ([], [], False)
    assert await get_message(client, ann, message["id"]) == message


@pytest.mark.parametrize("size", [0, 4001])
async def test_body_outside_1_to_4000_chars_is_refused(
    client: httpx.AsyncClient, size: int
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    assert_error(await post(client, ann, channel["id"], "x" * size), 422, "invalid_input")
    assert await history(client, ann, channel["id"]) == []


async def test_body_of_4000_chars_is_kept_whole(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    body = "é" * 3999 + "!"
    assert (await send(client, ann, channel["id"], body))["body"] == body


@pytest.mark.parametrize(
    "extra",
    [{"client_msg_id": ""}, {"client_msg_id": "c" * 65}, {"thread_id": 7}, {"author": "me"}],
)
async def test_send_refuses_invalid_fields(
    client: httpx.AsyncClient, extra: dict[str, object]
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    assert_error(await post(client, ann, channel["id"], "hi", **extra), 422, "invalid_input")


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("public", 403, "forbidden"), ("private", 404, "not_found"), ("dm", 404, "not_found")],
)
async def test_non_members_cannot_send(
    client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    owner, friend, stranger = await accounts(client, 3)
    channel = await create(client, owner, kind, friend)
    assert_error(await post(client, stranger, channel["id"], "let me in"), status, code)
    assert await history(client, owner, channel["id"]) == []


async def test_send_to_unknown_channel_is_404(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    assert_error(await post(client, ann, "no-such-channel", "anyone?"), 404, "not_found")


# History


async def test_history_pages_in_ascending_seq(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    cid = channel["id"]
    sent = [await send(client, ann, cid, f"m{i}") for i in range(6)]
    seqs = [m["seq"] for m in sent]  # 2..7

    assert [m["seq"] for m in await history(client, ann, cid)] == seqs
    assert [m["seq"] for m in await history(client, ann, cid, limit=2)] == seqs[-2:]
    assert [m["seq"] for m in await history(client, ann, cid, after_seq=3, limit=2)] == [4, 5]
    assert [m["seq"] for m in await history(client, ann, cid, before_seq=5)] == [2, 3, 4]
    assert [m["seq"] for m in await history(client, ann, cid, before_seq=7, limit=2)] == [5, 6]
    assert [m["seq"] for m in await history(client, ann, cid, after_seq=2, before_seq=6)] == [
        3,
        4,
        5,
    ]
    assert await history(client, ann, cid, after_seq=7) == []
    assert [m["body"] for m in await history(client, ann, cid, limit=200)] == [
        f"m{i}" for i in range(6)
    ]


async def test_default_history_is_the_newest_page(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    sent = [await send(client, ann, channel["id"], f"m{i}") for i in range(52)]

    page = await history(client, ann, channel["id"])
    assert [m["id"] for m in page] == [m["id"] for m in sent[-50:]]


@pytest.mark.parametrize(
    "params", [{"limit": 201}, {"limit": 0}, {"after_seq": -1}, {"before_seq": 0}, {"limit": "x"}]
)
async def test_history_refuses_bad_bounds(
    client: httpx.AsyncClient, params: dict[str, object]
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    response = await client.get(
        f"{API}/channels/{channel['id']}/messages", params=params, headers=ann.headers
    )
    assert_error(response, 422, "invalid_input")


async def test_deleted_messages_are_tombstones(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    keep = await send(client, ann, channel["id"], "keep")
    gone = await send(client, ann, channel["id"], "gone")

    done(await client.delete(f"{API}/messages/{gone['id']}", headers=ann.headers))
    page = await history(client, ann, channel["id"])
    assert [m["id"] for m in page] == [keep["id"], gone["id"]]
    tombstone = page[1]
    assert (tombstone["deleted"], tombstone["body"], tombstone["seq"]) == (True, None, gone["seq"])
    assert await get_message(client, ann, gone["id"]) == tombstone
    assert page[0]["body"] == "keep"


@pytest.mark.parametrize(
    "message_id",
    [
        "not-an-id",
        "01900000-0000-7000-8000-000000000000",  # well formed, unknown
        "ffffffff-ffff-7fff-bfff-ffffffffffff",  # a timestamp past year 9999
        "0" * 32,
    ],
)
async def test_unknown_or_malformed_message_id_is_404(
    client: httpx.AsyncClient, message_id: str
) -> None:
    ann = await account(client)
    for method, path, body in (
        ("GET", "", None),
        ("GET", "/thread", None),
        ("PATCH", "", {"body": "x"}),
        ("DELETE", "", None),
        ("PUT", "/reactions/ok", None),
        ("POST", "/pin", None),
    ):
        response = await client.request(
            method, f"{API}/messages/{message_id}{path}", json=body, headers=ann.headers
        )
        assert_error(response, 404, "not_found")


# Editing and deleting


async def test_only_the_author_edits(client: httpx.AsyncClient) -> None:
    ann, owner = await accounts(client, 2)
    channel = await create(client, owner, "public", ann)
    message = await send(client, ann, channel["id"], "first draft")

    refused = await client.patch(
        f"{API}/messages/{message['id']}", json={"body": "owned"}, headers=owner.headers
    )
    assert_error(refused, 403, "forbidden")
    edited = await client.patch(
        f"{API}/messages/{message['id']}", json={"body": "second draft"}, headers=ann.headers
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["body"] == "second draft"
    assert parse_time(body["edited_at"]) >= parse_time(body["created_at"])
    assert (body["id"], body["seq"]) == (message["id"], message["seq"])
    assert await get_message(client, owner, message["id"]) == body
    empty = await client.patch(
        f"{API}/messages/{message['id']}", json={"body": ""}, headers=ann.headers
    )
    assert_error(empty, 422, "invalid_input")


async def test_deleted_messages_cannot_be_edited(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    message = await send(client, ann, channel["id"])
    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))

    response = await client.patch(
        f"{API}/messages/{message['id']}", json={"body": "back"}, headers=ann.headers
    )
    assert_error(response, 404, "not_found")


async def test_author_or_channel_admin_deletes(client: httpx.AsyncClient) -> None:
    owner, admin, ann, bob, stranger = await accounts(client, 5)
    channel = await create(client, owner, "public", admin, ann, bob)
    cid = channel["id"]
    done(await set_role(client, owner, cid, admin, "admin"))
    by_ann = [await send(client, ann, cid, f"m{i}") for i in range(3)]

    for intruder in (bob, stranger):
        refused = await client.delete(f"{API}/messages/{by_ann[0]['id']}", headers=intruder.headers)
        assert_error(refused, 403, "forbidden")
    done(await client.delete(f"{API}/messages/{by_ann[0]['id']}", headers=ann.headers))
    done(await client.delete(f"{API}/messages/{by_ann[1]['id']}", headers=admin.headers))
    done(await client.delete(f"{API}/messages/{by_ann[2]['id']}", headers=owner.headers))
    assert [m["deleted"] for m in await history(client, bob, cid)] == [True, True, True]


async def test_deleting_a_tombstone_is_still_refused_to_others(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    message = await send(client, ann, channel["id"])
    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))

    done(await client.delete(f"{API}/messages/{message['id']}", headers=ann.headers))
    refused = await client.delete(f"{API}/messages/{message['id']}", headers=bob.headers)
    assert_error(refused, 403, "forbidden")


# Threads


async def test_replies_form_a_thread_under_the_root(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    cid = channel["id"]
    root = await send(client, ann, cid, "root")
    await send(client, ann, cid, "unrelated")
    reply = await send(client, bob, cid, "reply", thread_id=root["id"])
    nested = await send(client, ann, cid, "reply to the reply", thread_id=reply["id"])

    assert reply["thread_id"] == root["id"]
    assert nested["thread_id"] == root["id"]  # joins the root's thread
    for start in (root, reply, nested):
        response = await client.get(f"{API}/messages/{start['id']}/thread", headers=bob.headers)
        assert response.status_code == 200, response.text
        assert [m["id"] for m in response.json()["messages"]] == [
            root["id"],
            reply["id"],
            nested["id"],
        ]


async def test_thread_root_must_be_a_live_message_of_the_channel(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    here = await create(client, ann, "public")
    there = await create(client, ann, "public")
    elsewhere = await send(client, ann, there["id"], "other channel")
    deleted = await send(client, ann, here["id"], "soon gone")
    done(await client.delete(f"{API}/messages/{deleted['id']}", headers=ann.headers))

    for thread_id in (elsewhere["id"], deleted["id"], "not-a-message"):
        response = await post(client, ann, here["id"], "reply", thread_id=thread_id)
        assert_error(response, 404, "not_found")
    assert [m["id"] for m in await history(client, ann, here["id"])] == [deleted["id"]]
