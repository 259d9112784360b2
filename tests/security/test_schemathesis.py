"""Schemathesis against /openapi.json: every operation, authenticated, then its stateful phase.

Passing means no request got a 5xx, and every response matched the schema (status code,
content type, body, headers), for generated valid and invalid requests alike. Schemathesis's
other checks run too (invalid data refused, 401 without a token, a 405's ``Allow`` header,
no use after delete, ...), all but ``positive_data_acceptance``: it wants every request the
schema allows to succeed, and the API has rules JSON Schema cannot state (a too-common
password, a name Python does not call printable, 1 to 200 presence ids, what
``datetime.fromisoformat`` reads), so it fails on 422s that are meant.

- The schema is the app's own (``test_the_schema_is_the_served_one``), loaded at import:
  schemathesis makes one pytest test per operation when it collects them.
  (``schemathesis.pytest.from_fixture`` would load it in a fixture, but it sets
  ``Item._nodeid``, which pytest 9.2 no longer has.)
- The app runs in process, through schemathesis's ASGI transport, on SQLite only: what this
  fuzzes is the API layer, the same on both backends, and a PostgreSQL run would double the
  time; the storage differences have tests of their own.
- Every request carries an admin's access token, so /api/v1/admin is reached too. The calls
  that end the caller's sessions (logout, logout-all, a password change, revoking a session)
  are made as another user, signed in afresh for each, so the admin's token lasts the run.
- Bounded and reproducible: a fixed seed; ``MAX_EXAMPLES`` generated requests per operation
  (plus schemathesis's example and coverage cases); ``STATEFUL_SCENARIOS`` scenarios of at
  most ``STATEFUL_STEPS`` calls, chained by the links schemathesis infers from the schema
  (the ``id`` a POST answers is the path parameter of the operations on that resource).
"""

from __future__ import annotations

import itertools
import sqlite3
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from schemathesis.python import asgi
from sqlalchemy.engine import make_url
from starlette.types import Receive, Scope, Send

from tests.auth.factories import PASSWORD
from tests.support.app import migrate, settings_for
from tests.support.backends import Backend, provision
from ultrachat.auth.passwords import PasswordHasherPool
from ultrachat.auth.service import create_admin
from ultrachat.config import Settings
from ultrachat.gateway.app import create_app
from ultrachat.storage import Database

SEED = 20251126
MAX_EXAMPLES = 50
STATEFUL_SCENARIOS = 50
STATEFUL_STEPS = 15

ADMIN = "fuzz_admin"
# The user of the calls that end sessions, signed in afresh for each.
MEMBER = "fuzz_member"
SESSION_ENDERS = [
    "/api/v1/auth/logout",
    "/api/v1/auth/logout-all",
    "/api/v1/auth/password",
    "/api/v1/auth/sessions/{session_id}",
]
EMOJI = "\N{THUMBS UP SIGN}"


def openapi_document() -> dict[str, Any]:
    """What /openapi.json serves, from an app that is never started (no I/O)."""
    app = create_app(settings_for(Backend("sqlite", "sqlite+aiosqlite://", "", "uc:")))
    document: dict[str, Any] = app.openapi()
    return document


def copy_database(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


class UltraChat:
    """The app under test as schemathesis calls it, and what it is called with.

    A new app for each lifespan: schemathesis's pytest plugin ends the ASGI lifespans it
    started when a test ends (and starts one on the next test's first request), and an app's
    runtime starts only once. Accounts, sessions and signing keys are in the database, so
    tokens outlast the apps.
    """

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.app: FastAPI | None = None
        self.member_id = ""
        self._admin_token: str | None = None
        self._resources: dict[str, dict[str, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            assert self.settings is not None, "the `ultrachat` fixture configures the app"
            self.app = create_app(self.settings)
        assert self.app is not None, "schemathesis starts the lifespan before any request"
        await self.app(scope, receive, send)

    def use(self, settings: Settings | None) -> None:
        """Serve from this database from the next request on (in a new app)."""
        asgi.shutdown_lifespans()
        self.settings, self.app = settings, None

    def forget(self) -> None:
        self.member_id, self._admin_token, self._resources = "", None, {}

    def client(self) -> asgi.ASGIClient:
        """A client of the app; entering it starts the app's lifespan if need be."""
        return asgi.get_client(self)

    def login(self, username: str) -> str:
        """The access token of a new session."""
        with self.client() as client:
            response = client.post(
                "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.login(ADMIN)
        return self._admin_token

    def member_token(self) -> str:
        return self.login(MEMBER)

    def resources_for(self, label: str) -> dict[str, str]:
        """Path parameters naming things that exist, made anew for each operation: a public
        channel of the admin's with the member in it, a message there, a reaction to it.
        """
        if label not in self._resources:
            with self.client() as client:
                client.headers["Authorization"] = f"Bearer {self.admin_token()}"
                channel = client.post(
                    "/api/v1/channels",
                    json={"kind": "public", "name": "fuzzed", "member_ids": [self.member_id]},
                )
                assert channel.status_code == 201, channel.text
                channel_id = channel.json()["id"]
                message = client.post(
                    f"/api/v1/channels/{channel_id}/messages", json={"body": "hello"}
                )
                assert message.status_code == 201, message.text
                message_id = message.json()["id"]
                reaction = client.put(f"/api/v1/messages/{message_id}/reactions/{EMOJI}")
                assert reaction.status_code == 204, reaction.text
            self._resources[label] = {
                "channel_id": channel_id,
                "message_id": message_id,
                "user_id": self.member_id,
                "emoji": EMOJI,
            }
        return self._resources[label]

    def aim(self, case: schemathesis.Case) -> None:
        """Point half of the valid fuzzed requests at things that exist (``resources_for``).

        Random ids find nothing (404), so without this no success answer of an operation on
        a channel or message would be checked. Invalid requests, and the example and coverage
        cases (which probe the path parameters themselves), keep their generated ids.
        """
        meta = case.meta
        if (
            meta is None
            or meta.phase.name != "fuzzing"
            or meta.generation.mode is not schemathesis.GenerationMode.POSITIVE
            or not case.path_parameters
            or zlib.crc32(repr(sorted(case.path_parameters.items())).encode()) % 2
        ):
            return
        existing = self.resources_for(case.operation.label)
        case.path_parameters = {
            name: existing.get(name, value) for name, value in case.path_parameters.items()
        }


class Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``, the token fetched as the request is sent.

    Schemathesis makes its example and coverage cases, auth included, while it collects the
    tests, before the app runs; a requests auth is applied when the request is sent.
    """

    def __init__(self, token: Callable[[], str]) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


OPENAPI = openapi_document()
TARGET = UltraChat()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # A server-sent event stream is read up to its first event; no answer may take
            # longer than the timeout (a request that hangs fails the test).
            "max-stream-events": 1,
            "request-timeout": 30,
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "generation": {"database": "none"},
            # Scenarios chain valid calls; invalid ones are test_every_operation's part.
            "phases": {"stateful": {"generation": {"mode": "positive"}}},
        }
    ),
)
schema.app = TARGET
# The first that applies wins: the member for the calls that end sessions, else the admin.
schema.auth.set_from_requests(Bearer(TARGET.member_token)).apply_to(path=SESSION_ENDERS)
schema.auth.set_from_requests(Bearer(TARGET.admin_token))

SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.filter_too_much,
        hypothesis.HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    """A migrated SQLite database with an admin (made as ``ultrachat users`` makes one)."""
    async with provision("sqlite", tmp_path_factory.mktemp("schemathesis")) as backend:
        # Thousands of calls with one token: stay far below the per-user API limit.
        settings = settings_for(backend, rate_limit_api_max=1_000_000)
        await migrate(settings)
        db = Database(settings.effective_database_url, 1)
        hasher = PasswordHasherPool(
            settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
        )
        try:
            await create_admin(db, hasher, ADMIN, PASSWORD)
        finally:
            hasher.close()
            await db.close()
        yield settings


@dataclass
class Snapshot:
    """The database as the tests start from it; each stateful scenario gets a copy."""

    settings: Settings
    path: Path
    copies: Iterator[int] = field(default_factory=itertools.count)

    def fresh_copy(self) -> Settings:
        copy = self.path.with_name(f"scenario-{next(self.copies)}.db")
        copy_database(self.path, copy)
        return self.settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{copy}"})


@pytest.fixture(scope="module")
def ultrachat(database: Settings) -> Iterator[Snapshot]:
    """The app on that database, with the member registered and the admin signed in."""
    TARGET.use(database)
    try:
        with TARGET.client() as client:
            response = client.post(
                "/api/v1/auth/register", json={"username": MEMBER, "password": PASSWORD}
            )
        assert response.status_code == 201, response.text
        TARGET.member_id = response.json()["id"]
        TARGET.admin_token()
        TARGET.use(database)  # stops the app: the database is quiet while it is copied
        path = Path(make_url(database.effective_database_url).database or "")
        snapshot = Snapshot(database, path.with_name("snapshot.db"))
        copy_database(path, snapshot.path)
        yield snapshot
    finally:
        TARGET.use(None)
        TARGET.forget()


def test_the_schema_is_the_served_one(ultrachat: Snapshot) -> None:
    with TARGET.client() as client:
        assert client.get("/openapi.json").json() == OPENAPI


@schema.parametrize()
@SETTINGS
def test_every_operation(case: schemathesis.Case, ultrachat: Snapshot) -> None:
    TARGET.aim(case)
    case.call_and_validate()


def test_stateful(ultrachat: Snapshot) -> None:
    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Every scenario starts from the same database, so the same choices meet the
            # same answers: Hypothesis stops a run whose draws change under it.
            TARGET.use(ultrachat.fresh_copy())

    try:
        # Generation only, as schemathesis runs its stateful phase (a scenario's database is
        # gone when it ends; nothing to shrink against). Seeded rather than derandomized:
        # derandomized scenarios keep retrying the simplest choices.
        hypothesis.seed(SEED)(Scenario).run(
            settings=hypothesis.settings(
                SETTINGS,
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=STATEFUL_STEPS,
                derandomize=False,
                phases=[hypothesis.Phase.generate],
            )
        )
    finally:
        TARGET.use(ultrachat.settings)
