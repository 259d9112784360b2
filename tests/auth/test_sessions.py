"""Sessions: listing, revoking one, logout, logout-all, password change, key rotation."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tests.auth.factories import PASSWORD, Account, account, assert_error, login
from ultrachat.auth import keys

NEW_PASSWORD = "a-brand-new-passphrase"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def second_session(
    client: httpx.AsyncClient, user: Account, agent: str = "second-device/1.0"
) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": user.username, "password": user.password},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def assert_token_works(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/v1/users/me", headers=bearer(token))
    assert response.status_code == 200, response.text


async def assert_token_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/v1/users/me", headers=bearer(token))
    assert assert_error(response, 401, "unauthorized")["message"] == "session has been revoked"


async def assert_refresh_refused(client: httpx.AsyncClient, refresh_token: str) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert_error(response, 401, "unauthorized")


def parse(stamp: str) -> datetime:
    assert stamp.endswith("Z")
    return datetime.fromisoformat(stamp)


# Listing


async def test_sessions_list_device_ip_times_and_the_current_flag(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await account(client)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as phone:
        other = await second_session(phone, user, agent="UltraChat-iOS/2.1")

    response = await client.get("/api/v1/auth/sessions", headers=user.headers)
    assert response.status_code == 200
    sessions = {s["id"]: s for s in response.json()["sessions"]}
    assert set(sessions) == {user.session_id, other["session_id"]}

    mine, theirs = sessions[user.session_id], sessions[other["session_id"]]
    assert mine["current"] is True
    assert theirs["current"] is False
    assert mine["ip"] == "203.0.113.7"
    assert theirs["ip"] == "198.51.100.20"
    assert mine["device"].startswith("python-httpx/")
    assert theirs["device"] == "UltraChat-iOS/2.1"
    for s in (mine, theirs):
        created = parse(s["created_at"])
        assert parse(s["last_used_at"]) == created
        # The plan's session max age: 24 h from sign-in.
        assert parse(s["expires_at"]) - created == timedelta(hours=24)

    # The same list, seen from the other session, flips the flag.
    seen = await client.get("/api/v1/auth/sessions", headers=bearer(other["access_token"]))
    flags = {s["id"]: s["current"] for s in seen.json()["sessions"]}
    assert flags == {user.session_id: False, other["session_id"]: True}


async def test_sessions_list_shows_only_the_callers_live_sessions(
    client: httpx.AsyncClient,
) -> None:
    user, stranger = await account(client), await account(client)
    gone = await second_session(client, user)
    assert (
        await client.post("/api/v1/auth/logout", headers=bearer(gone["access_token"]))
    ).is_success

    response = await client.get("/api/v1/auth/sessions", headers=user.headers)
    assert [s["id"] for s in response.json()["sessions"]] == [user.session_id]
    assert stranger.session_id not in response.text


async def test_a_control_character_in_the_user_agent_is_not_stored(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    await second_session(client, user, agent="evil\x00agent\x1b[31m")
    response = await client.get("/api/v1/auth/sessions", headers=user.headers)
    assert "evilagent[31m" in {s["device"] for s in response.json()["sessions"]}


# Revoking one session


async def test_delete_a_session_kills_its_tokens_and_keeps_the_callers(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    other = await second_session(client, user)
    response = await client.delete(
        f"/api/v1/auth/sessions/{other['session_id']}", headers=user.headers
    )
    assert response.status_code == 204
    assert response.content == b""
    await assert_token_refused(client, other["access_token"])
    await assert_refresh_refused(client, other["refresh_token"])
    await assert_token_works(client, user.access_token)

    again = await client.delete(
        f"/api/v1/auth/sessions/{other['session_id']}", headers=user.headers
    )
    assert assert_error(again, 404, "not_found")["message"] == "session not found"


async def test_delete_the_current_session_signs_the_caller_out(client: httpx.AsyncClient) -> None:
    user = await account(client)
    response = await client.delete(f"/api/v1/auth/sessions/{user.session_id}", headers=user.headers)
    assert response.status_code == 204
    await assert_token_refused(client, user.access_token)


async def test_nobody_can_delete_another_users_session(client: httpx.AsyncClient) -> None:
    owner, intruder = await account(client), await account(client)
    response = await client.delete(
        f"/api/v1/auth/sessions/{owner.session_id}", headers=intruder.headers
    )
    assert_error(response, 404, "not_found")
    await assert_token_works(client, owner.access_token)


@pytest.mark.parametrize("session_id", ["nope", "%00", "a" * 300, "01a2-' OR 1=1 --"])
async def test_delete_a_malformed_session_id_is_404(
    client: httpx.AsyncClient, session_id: str
) -> None:
    user = await account(client)
    response = await client.delete(f"/api/v1/auth/sessions/{session_id}", headers=user.headers)
    assert_error(response, 404, "not_found")


# Logout


async def test_logout_refuses_the_old_token_on_the_very_next_request(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    response = await client.post("/api/v1/auth/logout", headers=user.headers)
    assert response.status_code == 204
    assert response.content == b""
    await assert_token_refused(client, user.access_token)
    await assert_refresh_refused(client, user.refresh_token)
    again = await client.post("/api/v1/auth/logout", headers=user.headers)
    assert_error(again, 401, "unauthorized")


async def test_logout_all_kills_every_session(client: httpx.AsyncClient) -> None:
    user = await account(client)
    others = [await second_session(client, user) for _ in range(2)]
    bystander = await account(client)

    response = await client.post("/api/v1/auth/logout-all", headers=user.headers)
    assert response.status_code == 204
    for access, refresh in [(user.access_token, user.refresh_token)] + [
        (o["access_token"], o["refresh_token"]) for o in others
    ]:
        await assert_token_refused(client, access)
        await assert_refresh_refused(client, refresh)
    await assert_token_works(client, bystander.access_token)
    # Signing in again still works: logout-all ends sessions, not the account.
    await assert_token_works(client, (await login(client, user.username))["access_token"])


# Password change


async def change_password(
    client: httpx.AsyncClient, token: str, current: str, new: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(token),
    )


async def test_password_change_revokes_every_other_session_but_keeps_the_callers(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    other = await second_session(client, user)

    response = await change_password(client, user.access_token, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 204

    await assert_token_works(client, user.access_token)
    await assert_token_refused(client, other["access_token"])
    await assert_refresh_refused(client, other["refresh_token"])
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refreshed.status_code == 200

    old = await client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert_error(old, 401, "unauthorized")
    await assert_token_works(
        client, (await login(client, user.username, NEW_PASSWORD))["access_token"]
    )


async def test_password_change_with_the_wrong_current_password_is_401(
    client: httpx.AsyncClient,
) -> None:
    user = await account(client)
    other = await second_session(client, user)
    response = await change_password(client, user.access_token, "not-my-password", NEW_PASSWORD)
    assert assert_error(response, 401, "unauthorized")["message"] == "current password is wrong"
    await assert_token_works(client, other["access_token"])
    await login(client, user.username, PASSWORD)


@pytest.mark.parametrize(
    ("new_password", "message"),
    [
        ("short1", "password must be at least 8 characters"),
        ("password123", "password is too common; choose another"),
    ],
)
async def test_password_change_to_a_weak_password_is_422(
    client: httpx.AsyncClient, new_password: str, message: str
) -> None:
    user = await account(client)
    other = await second_session(client, user)
    response = await change_password(client, user.access_token, PASSWORD, new_password)
    assert assert_error(response, 422, "invalid_input")["message"] == message
    await assert_token_works(client, other["access_token"])
    await login(client, user.username, PASSWORD)


# Signing keys


async def test_key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = app.state.runtime
    user = await account(client)
    old_kid = runtime.keys.signing_key.kid
    assert jwt.get_unverified_header(user.access_token)["kid"] == old_kid

    new_kid = await keys.rotate(runtime.db, runtime.data_keys)
    await runtime.keys.reload()

    await assert_token_works(client, user.access_token)
    fresh = await login(client, user.username)
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    await assert_token_works(client, fresh["access_token"])

    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    published = {key["kid"]: key for key in response.json()["keys"]}
    assert {old_kid, new_kid} <= set(published)
    for key in published.values():
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private parts published"
