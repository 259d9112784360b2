"""Billing fixtures: an admin account on an app, and a fresh deployment per test.

The shared app (tests/conftest.py) is used by every test of the session, so exact business
metrics are computed on a deployment of their own (like tests/crypto/conftest.py's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.factories import Account, account
from tests.support.app import running_app, settings_for
from tests.support.backends import Backend, provision
from ultrachat.auth.service import grant_role
from ultrachat.billing.service import BillingService


async def admin_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    """A new account with the admin role (read from the database on every admin request)."""
    admin = await account(client)
    await grant_role(app.state.runtime.db, admin.username, "admin")
    return admin


class Deployment:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, admin: Account) -> None:
        self.app = app
        self.client = client
        self.admin = admin

    @property
    def billing(self) -> BillingService:
        service: BillingService = self.app.state.runtime.billing
        return service


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await admin_account(app, client)


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with provision(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
async def deployment(fresh_backend: Backend) -> AsyncIterator[Deployment]:
    """A new, empty deployment: no plans, no subscriptions, one admin."""
    async with running_app(settings_for(fresh_backend)) as (app, client):
        yield Deployment(app, client, await admin_account(app, client))
