"""The admin API under /api/v1/admin: admins only (auth's ``require_admin``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from ultrachat.audit.schemas import AuditPage, parse_moment, record_out
from ultrachat.audit.service import AuditLog
from ultrachat.auth.dependencies import AdminClaims
from ultrachat.errors import InvalidInput
from ultrachat.gateway.openapi import error_responses

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def _moment(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None


@router.get("/audit", responses=error_responses(401, 403, 422))
async def audit_records(
    request: Request,
    claims: AdminClaims,
    actor: Annotated[str | None, Query(max_length=36)] = None,
    type: Annotated[str | None, Query(max_length=48)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Audit records, newest first, filtered by actor id, event type and time [since, until)."""
    audit: AuditLog = request.app.state.runtime.audit
    start, end = _moment("since", since), _moment("until", until)
    records = await audit.query(
        actor_id=actor,
        event=type,
        since=start,
        until=end,
        limit=limit,
    )
    filters = {"actor": actor, "type": type, "since": since, "until": until, "limit": limit}
    await audit.record(
        "admin.audit_query",
        actor_id=claims.user_id,
        details={k: v for k, v in filters.items() if v is not None},
    )
    return AuditPage(records=[record_out(r) for r in records])
