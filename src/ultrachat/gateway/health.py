"""Liveness, readiness, the Prometheus scrape, and the JWKS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse

from ultrachat.gateway.context import request_id_var
from ultrachat.gateway.runtime import Runtime

router = APIRouter(include_in_schema=True, tags=["operations"])


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database and Redis are reachable",
    responses={503: {"description": "a dependency is down"}},
)
async def readyz(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    checks: dict[str, Any] = {"database": "ok" if await runtime.db.ping() else "down"}
    if runtime.redis is not None:
        checks["redis"] = "ok" if await runtime.shared_state.ping() else "down"
        # The bus has its own connection; while it reconnects, live delivery waits (and
        # is caught up from the log afterwards), so the node reports itself not ready.
        checks["bus"] = "ok" if runtime.bus.healthy else "down"
    down = [name for name, value in checks.items() if value != "ok"]
    if runtime.replicas is not None:
        # Never a reason to be unready: without replicas, reads go to the primary.
        checks["replicas"] = runtime.replicas.readiness()
    if not down:
        body: dict[str, Any] = {"status": "ready", "checks": checks}
        if runtime.replicas is not None and checks["replicas"]["status"] != "ok":
            body["degraded"] = ["replicas"]
        return JSONResponse(body)
    # A 503 like any other: the error envelope, plus the checks for whoever probes.
    error = {
        "code": "unavailable",
        "message": f"not ready: {', '.join(down)} unreachable",
        "request_id": request_id_var.get(),
    }
    return JSONResponse({"status": "not_ready", "checks": checks, "error": error}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> dict[str, Any]:
    return _runtime(request).keys.jwks()
