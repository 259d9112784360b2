"""Property-based: random operations keep seqs gap-free and client ids one-to-one.

Each example runs against a fresh channel shared by the same three users (owner, two
members). A small pool of client ids makes retries, sequential and concurrent, common.
The sequential test checks every response and the whole event log against a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.auth.factories import Account
from tests.chat.factories import API, accounts, create, events, history, post

PROPERTY_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
USERS = st.integers(0, 2)  # 0 is the owner, who may delete anyone's message
CLIENT_IDS = st.sampled_from([None, "a", "b", "c"])
MESSAGE = st.integers(0, 30)  # an index into the messages sent so far, modulo their number
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), USERS, CLIENT_IDS),
        st.tuples(st.just("edit"), USERS, MESSAGE),
        st.tuples(st.just("delete"), USERS, MESSAGE),
        st.tuples(st.just("react"), USERS, MESSAGE, st.sampled_from(["ok", "👍"]), st.booleans()),
    ),
    min_size=1,
    max_size=14,
)


@pytest.fixture
async def trio(client: httpx.AsyncClient) -> AsyncIterator[list[Account]]:
    yield await accounts(client, 3)


@dataclass
class Model:
    """What the channel should hold after each operation."""

    kinds: list[str] = field(default_factory=lambda: ["channel.created"])
    messages: list[dict[str, Any]] = field(default_factory=list)  # id, author, deleted
    by_client_id: dict[tuple[int, str], str] = field(default_factory=dict)
    reactions: set[tuple[str, int, str]] = field(default_factory=set)


async def apply(
    client: httpx.AsyncClient, users: list[Account], cid: str, model: Model, op: tuple[Any, ...]
) -> None:
    """Run one operation and check its response against the model, then update the model."""
    kind, who = op[0], op[1]
    user = users[who]
    if kind == "send":
        client_id = op[2]
        extra = {} if client_id is None else {"client_msg_id": client_id}
        response = await post(client, user, cid, f"from {who}", **extra)
        known = model.by_client_id.get((who, client_id)) if client_id else None
        if known is not None:
            assert response.status_code == 200, response.text
            assert response.json()["id"] == known
            return
        assert response.status_code == 201, response.text
        message_id = response.json()["id"]
        model.messages.append({"id": message_id, "author": who, "deleted": False})
        if client_id is not None:
            model.by_client_id[(who, client_id)] = message_id
        model.kinds.append("message.created")
        return
    if not model.messages:
        return
    target = model.messages[op[2] % len(model.messages)]
    url = f"{API}/messages/{target['id']}"
    if kind == "edit":
        response = await client.patch(url, json={"body": "edited"}, headers=user.headers)
        expected = 404 if target["deleted"] else 403 if target["author"] != who else 200
        assert response.status_code == expected, response.text
        if expected == 200:
            model.kinds.append("message.updated")
    elif kind == "delete":
        response = await client.delete(url, headers=user.headers)
        allowed = target["author"] == who or who == 0
        assert response.status_code == (204 if allowed else 403), response.text
        if allowed and not target["deleted"]:
            target["deleted"] = True
            model.kinds.append("message.deleted")
    else:
        emoji, add = op[3], op[4]
        response = await client.request(
            "PUT" if add else "DELETE", f"{url}/reactions/{emoji}", headers=user.headers
        )
        assert response.status_code == (404 if target["deleted"] else 204), response.text
        key = (target["id"], who, emoji)
        if not target["deleted"] and (key in model.reactions) != add:
            model.reactions.symmetric_difference_update({key})
            model.kinds.append("reaction.added" if add else "reaction.removed")


@PROPERTY_SETTINGS
@given(operations=OPERATIONS)
async def test_random_operations_keep_the_log_gap_free_and_client_ids_unique(
    app: FastAPI, client: httpx.AsyncClient, trio: list[Account], operations: list[Any]
) -> None:
    channel = await create(client, trio[0], "public", *trio[1:])
    cid = channel["id"]
    model = Model()
    for op in operations:
        await apply(client, trio, cid, model, op)

    log = await events(app, cid)
    assert [seq for seq, _, _ in log] == list(range(1, len(log) + 1))
    assert [kind for _, kind, _ in log] == model.kinds
    page = await history(client, trio[0], cid, limit=200)
    assert [m["id"] for m in page] == [m["id"] for m in model.messages]
    assert [m["deleted"] for m in page] == [m["deleted"] for m in model.messages]
    created = {data["id"]: seq for seq, kind, data in log if kind == "message.created"}
    assert created == {m["id"]: m["seq"] for m in page}


@PROPERTY_SETTINGS
@given(sends=st.lists(st.tuples(USERS, CLIENT_IDS), min_size=1, max_size=12))
async def test_concurrent_sends_store_one_message_per_client_id(
    app: FastAPI, client: httpx.AsyncClient, trio: list[Account], sends: list[Any]
) -> None:
    channel = await create(client, trio[0], "public", *trio[1:])
    cid = channel["id"]

    responses = await asyncio.gather(
        *[
            post(client, trio[who], cid, "hi", **({"client_msg_id": c} if c else {}))
            for who, c in sends
        ]
    )
    ids: dict[tuple[int, str], set[str]] = {}
    created: dict[tuple[int, str], int] = {}
    for (who, client_id), response in zip(sends, responses, strict=True):
        assert response.status_code in (200, 201), response.text
        if client_id is None:
            assert response.status_code == 201
            continue
        ids.setdefault((who, client_id), set()).add(response.json()["id"])
        created[(who, client_id)] = created.get((who, client_id), 0) + (response.status_code == 201)
    assert all(len(found) == 1 for found in ids.values())  # one message per client id
    assert set(created.values()) <= {1}  # created exactly once, answered 200 after
    expected = len(ids) + sum(1 for _, client_id in sends if client_id is None)
    page = await history(client, trio[0], cid, limit=200)
    assert len(page) == expected
    assert {m["id"] for m in page} >= {next(iter(found)) for found in ids.values()}
    assert [m["seq"] for m in page] == list(range(2, expected + 2))
    log = await events(app, cid)
    assert [seq for seq, _, _ in log] == list(range(1, expected + 2))
