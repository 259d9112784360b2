"""The operator's monitoring API under /api/v1/admin: admins only (auth's ``require_admin``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.sse import EventSourceResponse

from ultrachat.auth.dependencies import AdminClaims
from ultrachat.gateway.openapi import error_responses
from ultrachat.monitoring.live import LiveFeed
from ultrachat.monitoring.schemas import LiveFrame, SloReportOut, report_out
from ultrachat.monitoring.slo import slo_report

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
MAX_WINDOW_SECONDS = 90 * 86_400


@router.get("/slo", responses=error_responses(401, 403, 422))
async def slo(
    request: Request,
    claims: AdminClaims,
    window: Annotated[
        int,
        Query(
            ge=60,
            le=MAX_WINDOW_SECONDS,
            description="The window, in seconds, ending now (60 s to 90 days).",
        ),
    ] = 3600,
) -> SloReportOut:
    """The plan's technical KPIs over the window, all nodes: each line pass, fail or no data
    (docs/monitoring.md#the-slo-report)."""
    report = await slo_report(request.app.state.runtime.db, timedelta(seconds=window))
    return report_out(report)


@router.get("/live", response_class=EventSourceResponse, responses=error_responses(401, 403))
async def live(request: Request, claims: AdminClaims) -> AsyncIterator[LiveFrame]:
    """Server-sent events: this node's live figures, one event at once and then one every
    ``ULTRACHAT_METRICS_LIVE_INTERVAL_SECONDS``, until the client leaves or the server stops
    (docs/monitoring.md#the-live-feed)."""
    feed: LiveFeed = request.app.state.runtime.live
    async for frame in feed.frames():
        yield frame
