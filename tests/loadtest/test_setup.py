"""Renewing a reused state's tokens survives a dropped connection, and never loses a user."""

from __future__ import annotations

import httpx
import orjson

from ultrachat.loadtest.scenario import Scenario
from ultrachat.loadtest.setup import Channel, Provisioner, RunState, User


def stale_state(users: int) -> RunState:
    return RunState(
        tag="t",
        password="pw",
        made_for={},
        users=[User(f"u{i}", f"user{i}", "old", f"refresh-{i}", 0.0) for i in range(users)],
        channels=[],
    )


def tokens(name: str) -> httpx.Response:
    body = {"access_token": f"access-{name}", "refresh_token": f"next-{name}", "expires_in": 900}
    return httpx.Response(200, json=body)


async def test_a_dropped_refresh_signs_in_instead_and_a_dropped_sign_in_is_retried() -> None:
    calls: list[tuple[str, str]] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        calls.append((request.url.path, body.get("refresh_token") or body.get("username")))
        if request.url.path == "/api/v1/auth/login":
            if body["username"] == "user1" and calls.count(calls[-1]) == 1:
                raise httpx.RemoteProtocolError("the keep-alive was closed under us")
            return tokens(body["username"])
        if body["refresh_token"] in ("refresh-0", "refresh-1"):
            raise httpx.ReadError("answer lost: the server may have taken it")
        return tokens(body["refresh_token"])

    state = stale_state(3)
    async with httpx.AsyncClient(
        base_url="http://node", transport=httpx.MockTransport(server)
    ) as http:
        provisioner = Provisioner(http, Scenario(), lambda *_: None)
        renewed = await provisioner.freshen(state, valid_for=60)
    assert renewed == 3
    assert [u.access_token for u in state.users] == [
        "access-user0",  # a new session: the dropped refresh token is never presented again
        "access-user1",  # its sign-in dropped once, then went through
        "access-refresh-2",
    ]
    refreshes = [t for path, t in calls if path == "/api/v1/auth/refresh"]
    assert sorted(refreshes) == ["refresh-0", "refresh-1", "refresh-2"]  # each once
    assert calls.count(("/api/v1/auth/login", "user1")) == 2


async def test_a_node_that_keeps_dropping_fails_the_setup() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("down")

    state = stale_state(1)
    async with httpx.AsyncClient(
        base_url="http://node", transport=httpx.MockTransport(server)
    ) as http:
        provisioner = Provisioner(http, Scenario(), lambda *_: None)
        try:
            await provisioner.freshen(state, valid_for=60)
        except* httpx.ReadError:
            pass
        else:
            raise AssertionError("a node that never answers must fail the setup")
    assert state.users[0].access_token == "old"


async def test_reading_the_channel_heads_survives_a_dropped_connection() -> None:
    # The run's baseline: one dropped keep-alive among the reads used to stop the run.
    dropped: set[str] = set()

    def server(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/c1") and path not in dropped:
            dropped.add(path)
            raise httpx.ReadError("the keep-alive was closed under us")
        return httpx.Response(200, json={"last_seq": int(path[-1]) * 10})

    state = stale_state(1)
    state.channels = [Channel(f"c{i}", [0]) for i in range(3)]
    async with httpx.AsyncClient(
        base_url="http://node", transport=httpx.MockTransport(server)
    ) as http:
        heads = await Provisioner(http, Scenario(), lambda *_: None).channel_heads(state)
    assert heads == [0, 10, 20] and dropped == {"/api/v1/channels/c1"}
