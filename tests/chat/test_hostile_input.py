"""Input no channel, user or message can have is refused the same way on both backends.

PostgreSQL refuses the NUL character in text outright; without these checks it surfaced as a
500 there while SQLite stored it.
"""

from __future__ import annotations

import httpx
import pytest

from tests.auth.factories import account, assert_error
from tests.chat.factories import API, accounts, create, get_channel, history, post, send

NUL = "\x00"


@pytest.mark.parametrize(
    "extra", [{"body": f"a{NUL}b"}, {"client_msg_id": f"c{NUL}"}], ids=["body", "client_msg_id"]
)
async def test_nul_in_a_message_is_invalid_input(
    client: httpx.AsyncClient, extra: dict[str, str]
) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    fields = {"body": "hello", **extra}
    response = await client.post(
        f"{API}/channels/{channel['id']}/messages", json=fields, headers=ann.headers
    )
    assert_error(response, 422, "invalid_input")
    assert await history(client, ann, channel["id"]) == []


async def test_nul_in_an_edit_is_invalid_input(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public")
    message = await send(client, ann, channel["id"], "clean")
    response = await client.patch(
        f"{API}/messages/{message['id']}", json={"body": NUL}, headers=ann.headers
    )
    assert_error(response, 422, "invalid_input")


async def test_nul_in_a_topic_or_name_is_invalid_input(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    channel = await create(client, ann, "public", name="room", topic="clean")
    for body in ({"kind": "public", "name": "room", "topic": NUL}, {"kind": "public", "name": NUL}):
        response = await client.post(f"{API}/channels", json=body, headers=ann.headers)
        assert_error(response, 422, "invalid_input")
    for patch in ({"topic": f"t{NUL}"}, {"name": f"n{NUL}"}):
        response = await client.patch(
            f"{API}/channels/{channel['id']}", json=patch, headers=ann.headers
        )
        assert_error(response, 422, "invalid_input")
    assert (await get_channel(client, ann, channel["id"]))["topic"] == "clean"


async def test_ids_no_row_can_have_are_not_found(client: httpx.AsyncClient) -> None:
    ann, bob = await accounts(client, 2)
    channel = await create(client, ann, "public", bob)
    cid = channel["id"]
    odd = "a%00b"  # a NUL, URL-encoded
    for method, path in (
        ("GET", f"channels/{odd}"),
        ("GET", f"channels/{odd}/messages"),
        ("POST", f"channels/{odd}/join"),
        ("GET", f"messages/{odd}"),
        ("DELETE", f"channels/{cid}/members/{odd}"),
    ):
        response = await client.request(method, f"{API}/{path}", headers=ann.headers)
        assert_error(response, 404, "not_found")
    retry = await post(client, ann, odd, "hi", client_msg_id="c-1")
    assert_error(retry, 404, "not_found")
    for body in (
        {"kind": "private", "name": "room", "member_ids": [NUL]},
        {"kind": "dm", "member_ids": [bob.id, f"{bob.id}{NUL}"]},
    ):
        response = await client.post(f"{API}/channels", json=body, headers=ann.headers)
        assert_error(response, 404, "not_found")
    invited = await client.post(
        f"{API}/channels/{cid}/members", json={"user_id": NUL}, headers=ann.headers
    )
    assert_error(invited, 404, "not_found")
    role = await client.patch(
        f"{API}/channels/{cid}/members/{odd}", json={"role": "admin"}, headers=ann.headers
    )
    assert_error(role, 404, "not_found")
