"""Users, channels and tokens for a run, made through the REST API, or reused from a state file.

There is no bulk or admin path for accounts over HTTP, so each user costs a registration
and a login (two argon2 hashes on the server, and both are rate-limited per client IP):
creating thousands of users takes minutes and needs the server's auth limits raised
(``ULTRACHAT_RATE_LIMIT_AUTH_MAX``, ``ULTRACHAT_RATE_LIMIT_ACCOUNT_MAX``). ``--state FILE``
saves what was made (ids, tokens, channels and their members) so later runs of the same
scenario reuse it; tokens about to expire are refreshed (or the user signs in again).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from ultrachat.loadtest.scenario import Scenario

STATE_VERSION = 1
MAX_CREATE_MEMBERS = 1000  # member_ids in one POST /channels; the rest are invited
TOKEN_MARGIN_SECONDS = 300.0  # tokens must outlive the run by this much (connect, drain)

Progress = Callable[[str, int, int], None]


SETUP_ATTEMPTS = 3  # for a read or a sign-in whose connection dropped


class SetupError(RuntimeError):
    """Setting up failed; the message is one line for the operator."""


@dataclass
class User:
    id: str
    username: str
    access_token: str
    refresh_token: str
    expires_at: float  # wall clock, seconds


@dataclass
class Channel:
    id: str
    members: list[int]  # indexes into RunState.users; the first is the owner


@dataclass
class RunState:
    tag: str
    password: str
    made_for: dict[str, Any]
    users: list[User]
    channels: list[Channel]
    token_ttl: float = 3600.0

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        return cls(
            tag=data["tag"],
            password=data["password"],
            made_for=data["made_for"],
            users=[User(**u) for u in data["users"]],
            channels=[Channel(**c) for c in data["channels"]],
            token_ttl=float(data.get("token_ttl", 3600.0)),
        )


def made_for(scenario: Scenario) -> dict[str, Any]:
    """What a state file must have been made for to be reused by this scenario."""
    return {
        "users": scenario.users,
        "channels": scenario.channels,
        "members": str(scenario.members),
        "seed": scenario.seed,
    }


def _hint(status: int) -> str:
    if status == 429:
        return (
            " (rate-limited: raise ULTRACHAT_RATE_LIMIT_AUTH_MAX and "
            "ULTRACHAT_RATE_LIMIT_ACCOUNT_MAX on the server under test, or reuse a --state file)"
        )
    return ""


def _fail(what: str, response: httpx.Response) -> SetupError:
    try:
        error = response.json().get("error", {})
        detail = f"{error.get('code', '')}: {error.get('message', '')}"
    except (ValueError, AttributeError):
        detail = response.text[:120].replace("\n", " ")
    return SetupError(f"{what}: HTTP {response.status_code} {detail}{_hint(response.status_code)}")


async def _each(
    items: Iterable[int],
    count: int,
    concurrency: int,
    job: Callable[[int], Awaitable[None]],
    progress: Progress,
    stage: str,
) -> None:
    """Run ``job`` on every item, ``concurrency`` at a time; the first failure stops all."""
    queue = iter(items)
    done = 0
    progress(stage, 0, count)

    async def runner() -> None:
        nonlocal done
        for item in queue:
            await job(item)
            done += 1
            progress(stage, done, count)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, count))):
            group.create_task(runner())


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):  # the first failure stands for all
        exc = exc.exceptions[0]
    return exc


class Provisioner:
    """Talks to one node's REST API on behalf of the setup."""

    def __init__(self, http: httpx.AsyncClient, scenario: Scenario, progress: Progress) -> None:
        self.http = http
        self.scenario = scenario
        self.progress = progress

    async def _again_if_dropped(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request tried again on a fresh connection if the one it went out on dropped (a
        keep-alive the server closed as it was reused: about once in 20,000 calls, and it
        stopped the whole run). Only for requests that are harmless twice: reads, and a
        sign-in (each attempt makes a session of its own)."""
        for attempt in range(1, SETUP_ATTEMPTS):
            try:
                return await self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                await asyncio.sleep(0.2 * attempt)
        return await self.http.request(method, path, **kwargs)  # the last try: it may raise

    async def _login(self, state: RunState, index: int) -> None:
        user = state.users[index]
        body = {"username": user.username, "password": state.password}
        response = await self._again_if_dropped("POST", "/api/v1/auth/login", json=body)
        if response.status_code != 200:
            raise _fail(f"login of {user.username}", response)
        self._take_tokens(state, user, response.json())

    @staticmethod
    def _take_tokens(state: RunState, user: User, body: dict[str, Any]) -> None:
        user.access_token = body["access_token"]
        user.refresh_token = body["refresh_token"]
        user.expires_at = time.time() + float(body["expires_in"])
        state.token_ttl = float(body["expires_in"])

    async def create(self) -> RunState:
        s = self.scenario
        state = RunState(
            tag=secrets.token_hex(4),
            password="lt-" + secrets.token_urlsafe(18),
            made_for=made_for(s),
            users=[],
            channels=[],
        )
        state.users = [User("", f"lt{state.tag}u{i}", "", "", 0.0) for i in range(s.users)]

        async def make_user(index: int) -> None:
            user = state.users[index]
            response = await self.http.post(
                "/api/v1/auth/register",
                json={"username": user.username, "password": state.password},
            )
            if response.status_code != 201:
                raise _fail(f"registering {user.username}", response)
            user.id = response.json()["id"]
            await self._login(state, index)

        await _each(range(s.users), s.users, s.setup_concurrency, make_user, self.progress, "users")

        rng = random.Random(s.seed)  # noqa: S311 - a workload, reproducible
        plans = []
        for _ in range(s.channels):
            members = rng.sample(range(s.users), s.members.sample(rng, s.users))
            plans.append(members)
        state.channels = [Channel("", members) for members in plans]

        async def make_channel(index: int) -> None:
            channel = state.channels[index]
            owner = state.users[channel.members[0]]
            others = [state.users[m].id for m in channel.members[1:]]
            response = await self.http.post(
                "/api/v1/channels",
                headers={"Authorization": f"Bearer {owner.access_token}"},
                json={
                    "name": f"lt-{state.tag}-{index}",
                    "kind": "private",
                    "member_ids": others[:MAX_CREATE_MEMBERS],
                },
            )
            if response.status_code != 201:
                raise _fail(f"creating channel {index}", response)
            channel.id = response.json()["id"]
            for user_id in others[MAX_CREATE_MEMBERS:]:
                invited = await self.http.post(
                    f"/api/v1/channels/{channel.id}/members",
                    headers={"Authorization": f"Bearer {owner.access_token}"},
                    json={"user_id": user_id},
                )
                if invited.status_code != 200:
                    raise _fail(f"inviting into channel {index}", invited)

        await _each(
            range(s.channels),
            s.channels,
            s.setup_concurrency,
            make_channel,
            self.progress,
            "channels",
        )
        return state

    async def freshen(self, state: RunState, valid_for: float) -> int:
        """Refresh (or sign in again) every user whose token would expire within the run."""
        deadline = time.time() + valid_for
        stale = [i for i, u in enumerate(state.users) if u.expires_at < deadline]

        async def renew(index: int) -> None:
            user = state.users[index]
            try:
                response = await self.http.post(
                    "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
                )
            except httpx.TransportError:
                # Not presented again: the server may still take (or have taken) this one,
                # and a second use of a refresh token revokes its session. A new session.
                await self._login(state, index)
                return
            if response.status_code == 200:
                self._take_tokens(state, user, response.json())
            elif response.status_code == 401:  # session expired or revoked: sign in again
                await self._login(state, index)
            else:
                raise _fail(f"refreshing {user.username}'s token", response)

        await _each(
            stale, len(stale), self.scenario.setup_concurrency, renew, self.progress, "tokens"
        )
        return len(stale)

    async def check_or_renew(self, state: RunState, valid_for: float) -> None:
        """The state belongs to this server: the first user's token (renewed if it is
        about to expire) works and is theirs."""
        await self.freshen(state, valid_for)
        user = state.users[0]
        response = await self._again_if_dropped(
            "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {user.access_token}"}
        )
        if response.status_code != 200 or response.json().get("id") != user.id:
            raise _fail("the state file's first user on this server (GET /users/me)", response)

    async def channel_heads(self, state: RunState) -> list[int]:
        """Each channel's last seq now (before the run sends anything)."""
        heads = [0] * len(state.channels)

        async def head(index: int) -> None:
            channel = state.channels[index]
            owner = state.users[channel.members[0]]
            response = await self._again_if_dropped(
                "GET",
                f"/api/v1/channels/{channel.id}",
                headers={"Authorization": f"Bearer {owner.access_token}"},
            )
            if response.status_code != 200:
                raise _fail(f"reading channel {index}", response)
            heads[index] = int(response.json()["last_seq"])

        await _each(
            range(len(heads)),
            len(heads),
            max(8, self.scenario.setup_concurrency),
            head,
            self.progress,
            "channel heads",
        )
        return heads


def client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=60.0,
        trust_env=False,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


def load_state(path: Path) -> RunState | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SetupError(f"state file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise SetupError(f"state file {path}: not a version-{STATE_VERSION} load test state")
    try:
        return RunState.from_json(data)
    except (KeyError, TypeError) as exc:
        raise SetupError(f"state file {path}: malformed ({exc})") from None


def save_state(path: Path, state: RunState) -> None:
    """Written whole and atomically, readable by its owner only (it holds tokens)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state.to_json(), out)
    os.replace(tmp, path)


async def prepare(scenario: Scenario, base_url: str, progress: Progress) -> tuple[RunState, bool]:
    """The run's users and channels with tokens valid for the run; True when reused."""
    path = Path(scenario.state) if scenario.state else None
    state = load_state(path) if path is not None else None
    if state is not None and state.made_for != made_for(scenario):
        raise SetupError(
            f"state file {path} was made for {state.made_for}, not {made_for(scenario)}; "
            "use another --state file"
        )
    valid_for = scenario.duration + TOKEN_MARGIN_SECONDS
    try:
        async with client(base_url, scenario.setup_concurrency) as http:
            provisioner = Provisioner(http, scenario, progress)
            reused = state is not None
            if state is None:
                state = await provisioner.create()
                if path is not None:
                    save_state(path, state)
            else:
                await provisioner.check_or_renew(state, valid_for)
            if state.token_ttl < valid_for:
                raise SetupError(
                    f"access tokens live {state.token_ttl:g} s, less than the run plus "
                    f"{TOKEN_MARGIN_SECONDS:g} s: raise ULTRACHAT_ACCESS_TOKEN_TTL_SECONDS on "
                    "the server under test, or run shorter"
                )
            if not reused:  # after a long setup, the first users' tokens are the oldest
                await provisioner.freshen(state, valid_for)
            if path is not None:
                save_state(path, state)
            return state, reused
    except* httpx.HTTPError as group:
        exc = _unwrap(group)
        raise SetupError(f"setup against {base_url}: {type(exc).__name__}: {exc}") from None
    except* SetupError as group:
        raise _unwrap(group) from None


async def channel_heads(scenario: Scenario, base_url: str, state: RunState) -> list[int]:
    try:
        async with client(base_url, max(8, scenario.setup_concurrency)) as http:
            return await Provisioner(http, scenario, lambda *_: None).channel_heads(state)
    except* httpx.HTTPError as group:
        exc = _unwrap(group)
        raise SetupError(f"reading channel heads: {type(exc).__name__}: {exc}") from None
    except* SetupError as group:
        raise _unwrap(group) from None
