"""Presence over REST: for clients that want a snapshot rather than a live stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from ultrachat.auth.dependencies import Claims
from ultrachat.errors import InvalidInput
from ultrachat.gateway.openapi import error_responses

router = APIRouter(prefix="/api/v1", tags=["realtime"])
MAX_USERS = 200


class PresenceOut(BaseModel):
    presence: dict[str, str]


@router.get("/presence", responses=error_responses(401, 422))
async def presence(
    request: Request,
    claims: Claims,
    user_ids: Annotated[str, Query(description="comma-separated user ids", max_length=8000)],
) -> PresenceOut:
    ids = [u for u in (part.strip() for part in user_ids.split(",")) if u]
    if not ids or len(ids) > MAX_USERS:
        raise InvalidInput(f"give 1 to {MAX_USERS} user ids")
    return PresenceOut(presence=await request.app.state.runtime.presence.store.of(ids))
