"""/api/v1/admin/audit: 401 without a token, 403 for members, filtered records for admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.auth.factories import account, assert_error
from ultrachat.auth.service import grant_role

URL = "/api/v1/admin/audit"


async def test_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(URL), 401, "unauthorized")


async def test_a_member_is_403(client: httpx.AsyncClient) -> None:
    member = await account(client)
    assert_error(await client.get(URL, headers=member.headers), 403, "forbidden")


async def test_an_admin_queries_by_actor_type_and_time(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin, member = await account(client), await account(client)
    user, previous = await grant_role(app.state.runtime.db, admin.username, "admin")
    assert (user.id, previous) == (admin.id, "member")

    response = await client.get(
        URL, params={"actor": member.id, "type": "auth.login"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    assert [(r["event"], r["actor_id"]) for r in records] == [("auth.login", member.id)]
    assert records[0]["details"]["session_id"] == member.session_id

    everything = (await client.get(URL, params={"actor": member.id}, headers=admin.headers)).json()
    assert {r["event"] for r in everything["records"]} == {"auth.register", "auth.login"}
    seqs = [r["seq"] for r in everything["records"]]
    assert seqs == sorted(seqs, reverse=True)

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await client.get(
        URL, params={"actor": member.id, "since": future}, headers=admin.headers
    )
    assert later.json()["records"] == []
    earlier = await client.get(
        URL, params={"actor": member.id, "until": "2000-01-01", "limit": 5}, headers=admin.headers
    )
    assert earlier.json()["records"] == []

    bad = await client.get(URL, params={"since": "yesterday"}, headers=admin.headers)
    assert_error(bad, 422, "invalid_input")

    # The admin's own queries are audited.
    mine = await client.get(
        URL, params={"actor": admin.id, "type": "admin.audit_query"}, headers=admin.headers
    )
    queries = mine.json()["records"]
    assert len(queries) >= 4
    assert queries[-1]["details"]["actor"] == member.id
