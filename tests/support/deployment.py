"""A fresh deployment per test, for tests that must not see other tests' rows (key rotation
and retirement, the metrics history). Conftests re-export the fixtures; a test overrides
``deployment_settings`` to change the deployment's settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.app import running_app, settings_for
from tests.support.backends import Backend, provision
from ultrachat.gateway.runtime import Runtime


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
    """Overrides for the ``deployment`` fixture's settings; tests override this fixture."""
    return {}


@pytest.fixture
async def deployment(
    fresh_backend: Backend, deployment_settings: dict[str, Any], tmp_path: Path
) -> AsyncIterator[Deployment]:
    """A new, started deployment on its own database, Redis prefix and data directory."""
    settings = settings_for(fresh_backend, data_dir=tmp_path / "var", **deployment_settings)
    async with running_app(settings) as (app, client):
        yield Deployment(fresh_backend, app, client)
