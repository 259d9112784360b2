"""Preferences' HTTP API under /api/v1."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from ultrachat.auth.dependencies import Claims
from ultrachat.gateway.openapi import error_responses
from ultrachat.preferences.service import MAX_BYTES, PreferencesService, parse

router = APIRouter(prefix="/api/v1", tags=["preferences"])

_OBJECT = {
    "description": f"Any JSON object of at most {MAX_BYTES} bytes, e.g. "
    '{"theme": "dark", "notifications": {"mentions": true}, "muted_channels": []}',
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
}


def _service(request: Request) -> PreferencesService:
    service: PreferencesService = request.app.state.runtime.preferences
    return service


def _json(value: dict[str, Any]) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


@router.get(
    "/users/me/preferences",
    responses={200: _OBJECT, **error_responses(401)},
    response_class=Response,
)
async def get_preferences(request: Request, claims: Claims) -> Response:
    return _json(await _service(request).get(claims.user_id))


@router.put(
    "/users/me/preferences",
    responses={200: _OBJECT, **error_responses(401, 413, 422)},
    response_class=Response,
    openapi_extra={"requestBody": {"required": True, **_OBJECT}},
)
async def put_preferences(request: Request, claims: Claims) -> Response:
    preferences = parse(await request.body())
    return _json(await _service(request).replace(claims.user_id, preferences))
