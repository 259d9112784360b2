"""A fresh deployment per test: key rotation and retirement must not see other tests' rows."""

from __future__ import annotations

from tests.support.deployment import Deployment, deployment, deployment_settings, fresh_backend

__all__ = ["Deployment", "deployment", "deployment_settings", "fresh_backend"]
