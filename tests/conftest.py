"""Fixtures shared by every test: the two backends, and an app running on each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.support.app import running_app, settings_for
from tests.support.backends import Backend, provision

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    async with provision(request.param, tmp_path_factory.mktemp(request.param)) as b:
        yield b


@pytest.fixture(scope="session")
async def app_and_client(backend: Backend) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings_for(backend)) as pair:
        yield pair


@pytest.fixture
def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture
def app(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_and_client[0]


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path
