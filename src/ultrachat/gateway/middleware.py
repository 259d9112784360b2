"""The edge every HTTP request crosses: request id, body size limit, and API metrics.

It is one pure-ASGI layer rather than three ``BaseHTTPMiddleware`` classes because each of
those costs a task and a queue per request; on the hot path that is most of our budget.
It also answers unhandled errors itself: Starlette's outermost error middleware runs after
this layer has reset the request id, so its 500 would carry neither the id nor the header.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ultrachat.gateway.context import client_ip_var, request_id_var, user_id_var
from ultrachat.gateway.errors import error_response
from ultrachat.metrics.http import REQUEST_DURATION

log = logging.getLogger(__name__)
# One line per HTTP request (ultrachat/logs.py): INFO, or WARNING for a 5xx, so that at
# ULTRACHAT_LOG_LEVEL=warning a successful request costs one isEnabledFor and no formatting.
access_log = logging.getLogger("ultrachat.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Any other method is labelled "other": clients choose the method, and labels must stay bounded.
_METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The matched route's path template, so metric labels stay low-cardinality."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


WS_SEND_KEY = "ultrachat.ws_send"  # the ASGI server's send, in a WebSocket scope


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        on_user: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Told the id of each authenticated caller, after the response (active users).
        self.on_user = on_user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        client = scope.get("client")
        ip_token = client_ip_var.set(str(client[0]) if client else "")
        # The auth dependency sets the user id; this layer scopes it to the request.
        user_token = user_id_var.set("")
        try:
            if scope["type"] == "websocket":
                # The server's own send, for the real-time writer's per-frame fast path
                # (realtime/connection.py): it skips the framework's per-message wrappers.
                scope[WS_SEND_KEY] = send
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send, request_id)
        finally:
            user_id_var.reset(user_token)
            client_ip_var.reset(ip_token)
            request_id_var.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", request_id.encode())
        limit = self.max_body_bytes
        received = 0

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            receive = _refuse_body(limit)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds {limit} bytes")
            return message

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            if started_response:
                raise
            log.exception("unhandled error")
            await error_response(500, "internal_error", "internal server error")(
                scope, receive, send_with_id
            )
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"] if scope["method"] in _METRIC_METHODS else "other"
            REQUEST_DURATION.labels(route, method, str(status)).observe(elapsed)
            if self.on_user is not None and (user_id := user_id_var.get()):
                self.on_user(user_id)
            level = logging.WARNING if status >= 500 else logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return valid_request_id(value.decode("latin-1"))
    return None


def valid_request_id(text: str | None) -> str | None:
    """A caller's X-Request-ID if it is one we may log and echo, else None."""
    return text if text is not None and _VALID_REQUEST_ID.fullmatch(text) else None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _refuse_body(limit: int) -> Receive:
    async def receive() -> Message:
        raise HTTPException(413, f"request body exceeds {limit} bytes")

    return receive


class EnvelopeCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, but a refused preflight gets the JSON error envelope, not plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        message = bytes(response.body).decode()
        return error_response(response.status_code, "bad_request", message, headers)
