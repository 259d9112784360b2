"""Each security event is recorded with actor, target, ip and request id, and no secret."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from tests.audit.conftest import rows_for
from tests.auth.factories import PASSWORD, account, register, unique_username
from tests.chat.factories import create
from ultrachat.audit.models import AuditRecord
from ultrachat.audit.verify import verify_chain
from ultrachat.storage import Database

IP = "203.0.113.7"  # the test transport's client address


def _events(rows: list[AuditRecord]) -> list[str]:
    return [r.event for r in rows]


def _one(rows: list[AuditRecord], event: str) -> AuditRecord:
    found = [r for r in rows if r.event == event]
    assert len(found) == 1, _events(rows)
    return found[0]


async def _all_text(app: FastAPI) -> str:
    db: Database = app.state.runtime.db
    async with db.sessions() as session:
        rows = (await session.scalars(select(AuditRecord))).all()
    return "\n".join(
        " ".join([r.event, r.actor_id, r.target_type, r.target_id, r.ip, r.request_id, r.details])
        for r in rows
    )


async def test_auth_events_carry_actor_target_ip_and_request_id(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    username = unique_username("audited")
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": username, "password": PASSWORD},
        headers={"X-Request-ID": "req-register-1"},
    )
    assert response.status_code == 201
    user_id = response.json()["id"]
    bad = await client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": "wrong-password-123"},
        headers={"X-Request-ID": "req-login-bad"},
    )
    assert bad.status_code == 401
    login = await client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": PASSWORD},
        headers={"X-Request-ID": "req-login-ok"},
    )
    tokens = login.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    second = (
        await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    ).json()
    # Refresh the second session twice with the same token: reuse detected.
    first_refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert first_refresh.status_code == 200
    reuse = await client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": second["refresh_token"]},
        headers={"X-Request-ID": "req-reuse"},
    )
    assert reuse.status_code == 401
    third = (
        await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    ).json()
    deleted = await client.delete(
        f"/api/v1/auth/sessions/{third['session_id']}",
        headers={**headers, "X-Request-ID": "req-delete-session"},
    )
    assert deleted.status_code == 204
    new_password = "another-long-passphrase"
    changed = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers={**headers, "X-Request-ID": "req-password"},
    )
    assert changed.status_code == 204
    await client.post("/api/v1/auth/login", json={"username": username, "password": new_password})
    logout_all = await client.post(
        "/api/v1/auth/logout-all", headers={**headers, "X-Request-ID": "req-logout-all"}
    )
    assert logout_all.status_code == 204
    fourth = (
        await client.post(
            "/api/v1/auth/login", json={"username": username, "password": new_password}
        )
    ).json()
    logout = await client.post(
        "/api/v1/auth/logout",
        headers={"Authorization": f"Bearer {fourth['access_token']}", "X-Request-ID": "req-out"},
    )
    assert logout.status_code == 204

    rows = await rows_for(app, user_id)
    assert all(r.ip == IP and r.target_type == "user" for r in rows)
    assert all(r.created_at is not None and r.request_id for r in rows)
    registered = _one(rows, "auth.register")
    assert (registered.actor_id, registered.request_id) == (user_id, "req-register-1")
    failed = _one(rows, "auth.login_failed")
    assert (failed.actor_id, failed.request_id) == ("", "req-login-bad")
    assert username in failed.details
    ok = [r for r in rows if r.event == "auth.login"]
    assert ok[0].actor_id == user_id and ok[0].request_id == "req-login-ok"
    assert _one(rows, "auth.refresh_reuse").request_id == "req-reuse"
    revoked = _one(rows, "auth.session_revoked")
    assert (revoked.actor_id, revoked.request_id) == (user_id, "req-delete-session")
    assert third["session_id"] in revoked.details
    assert _one(rows, "auth.password_changed").request_id == "req-password"
    assert _one(rows, "auth.sessions_revoked").request_id == "req-password"
    assert _one(rows, "auth.logout_all").request_id == "req-logout-all"
    out = _one(rows, "auth.logout")
    assert (out.actor_id, out.request_id) == (user_id, "req-out")

    text = await _all_text(app)
    secrets = [PASSWORD, new_password, "wrong-password-123"]
    for pair in (tokens, second, third, fourth, first_refresh.json()):
        secrets += [pair["access_token"], pair["refresh_token"]]
    for secret in secrets:
        assert secret not in text
    assert (await verify_chain(app.state.runtime.db)).ok


async def test_login_failure_for_an_unknown_user_names_the_attempt(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    username = unique_username("ghost")
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": "guess-guess-guess"}
    )
    assert response.status_code == 401
    db: Database = app.state.runtime.db
    async with db.sessions() as session:
        stmt = select(AuditRecord).where(AuditRecord.event == "auth.login_failed")
        rows = [r for r in (await session.scalars(stmt)).all() if username in r.details]
    assert len(rows) == 1
    assert rows[0].target_id == "" and rows[0].ip == IP
    assert "guess-guess-guess" not in rows[0].details


async def test_membership_and_role_changes_are_recorded(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, joiner, invitee = await account(client), await account(client), await account(client)
    cid = (await create(client, owner, kind="public"))["id"]
    base = f"/api/v1/channels/{cid}"
    rid = {"X-Request-ID": "req-chat"}
    assert (await client.post(f"{base}/join", headers={**joiner.headers, **rid})).is_success
    invited = await client.post(
        f"{base}/members", json={"user_id": invitee.id}, headers={**owner.headers, **rid}
    )
    assert invited.is_success, invited.text
    role = await client.patch(
        f"{base}/members/{invitee.id}", json={"role": "admin"}, headers={**owner.headers, **rid}
    )
    assert role.is_success, role.text
    removed = await client.delete(f"{base}/members/{invitee.id}", headers={**owner.headers, **rid})
    assert removed.is_success, removed.text
    left = await client.post(f"{base}/leave", headers={**joiner.headers, **rid})
    assert left.is_success, left.text

    joined = _one(await rows_for(app, joiner.id), "chat.member_joined")
    assert joined.actor_id == joiner.id
    assert _one(await rows_for(app, joiner.id), "chat.member_left").actor_id == joiner.id
    invitee_rows = await rows_for(app, invitee.id)
    for event in ("chat.member_invited", "chat.role_changed", "chat.member_removed"):
        row = _one(invitee_rows, event)
        assert (row.actor_id, row.ip, row.request_id) == (owner.id, IP, "req-chat")
        assert cid in row.details
    assert '"admin"' in _one(invitee_rows, "chat.role_changed").details


async def test_registration_is_recorded_once_per_account(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user_id, _ = await register(client)
    assert _events(await rows_for(app, user_id)) == ["auth.register"]
