"""Monitoring fixtures: admins, a fresh deployment per test, and snapshot factories.

SLO tests that only read the history use the shared app and a window of their own (in the
future, where no collector writes), so that they need no deployment of their own.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.factories import Account, account
from tests.support.deployment import Deployment, deployment, deployment_settings, fresh_backend
from ultrachat.auth.service import grant_role

__all__ = [
    "Deployment",
    "admin",
    "admin_account",
    "deployment",
    "deployment_settings",
    "fresh_backend",
]


async def admin_account(app: FastAPI, client: httpx.AsyncClient) -> Account:
    admin = await account(client)
    await grant_role(app.state.runtime.db, admin.username, "admin")
    return admin


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    return await admin_account(app, client)
