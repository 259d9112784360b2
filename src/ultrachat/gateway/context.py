"""Per-request context readable anywhere (logs, error bodies) without passing it around."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="")
user_id_var: ContextVar[str] = ContextVar("user_id", default="")
# The peer's address as the edge saw it (after uvicorn applied trusted X-Forwarded-For).
client_ip_var: ContextVar[str] = ContextVar("client_ip", default="")
