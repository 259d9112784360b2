"""Monitoring fixtures: admins, a fresh deployment per test, and snapshot factories.

SLO tests that only read the history use the shared app and a window of their own (in the
future, where no collector writes), so that they need no deployment of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.factories import Account, account
from tests.support.app import running_app, settings_for
from tests.support.backends import Backend, provision
from ultrachat.auth.service import grant_role
from ultrachat.gateway.runtime import Runtime


async def admin_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    admin = await account(client)
    await grant_role(app.state.runtime.db, admin.username, "admin")
    return admin


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await admin_account(app, client)


class Deployment:
    def __init__(self, backend: Backend, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.backend = backend
        self.app = app
        self.client = client

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with provision(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
def deployment_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def deployment(
    fresh_backend: Backend, deployment_settings: dict[str, Any], tmp_path: Path
) -> AsyncIterator[Deployment]:
    """A new deployment: its metrics history holds only what the test writes."""
    settings = settings_for(fresh_backend, data_dir=tmp_path / "var", **deployment_settings)
    async with running_app(settings) as (app, client):
        yield Deployment(fresh_backend, app, client)
