"""One JSON error envelope for every 4xx and 5xx: ``{"error": {code, message, request_id}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import TimeoutError as DatabasePoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from ultrachat.errors import UltraChatError
from ultrachat.gateway.context import request_id_var

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    503: "unavailable",
}


# Seconds a client should wait after a 503 (pool exhausted, backend down, send not stored).
RETRY_AFTER_SECONDS = 1


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id_var.get()}}
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        if error.get("type") == "json_invalid":
            return f"request body is not valid JSON: {error.get('ctx', {}).get('error', '')}"
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# Methods a route of this API can serve; an Allow header lists those served at the path.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (RFC 9110: a 405 names them all).

    Starlette's 405 names only the methods of the first route whose path matched, so
    ``OPTIONS /api/v1/channels`` would answer ``Allow: GET`` though POST is served too.
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    )


def _redis_unavailable_errors() -> tuple[type[Exception], ...]:
    """redis-py's errors for "no connection": its pool timed out, or Redis is unreachable."""
    try:
        from redis.exceptions import ConnectionError, TimeoutError
    except ImportError:  # pragma: no cover (redis is a dependency; only its use is optional)
        return ()
    return (ConnectionError, TimeoutError)


def unavailable_response(message: str) -> JSONResponse:
    return error_response(503, "unavailable", message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UltraChatError)
    async def domain_error(_: Request, exc: UltraChatError) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 503 and "Retry-After" not in headers:
            headers = {**headers, "Retry-After": str(RETRY_AFTER_SECONDS)}
        return error_response(exc.status_code, exc.code, exc.message, headers)

    # A bounded pool that stayed exhausted for the pool timeout: the server is busy, not
    # broken. 503 + Retry-After tells clients and load balancers to back off and retry.
    @app.exception_handler(DatabasePoolTimeout)
    async def database_busy(_: Request, exc: DatabasePoolTimeout) -> JSONResponse:
        log.warning("no database connection became free in time: %s", exc)
        return unavailable_response(
            "the server is busy (no database connection free); retry shortly"
        )

    async def redis_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable: %s", exc)
        return unavailable_response("the server is busy (Redis busy or unreachable); retry shortly")

    for error in _redis_unavailable_errors():
        app.add_exception_handler(error, redis_unavailable)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", _describe_validation(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
