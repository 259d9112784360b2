"""OpenAPI descriptions of the shared error envelope, so clients and fuzzers know its shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


# The envelope is JSON whatever an operation answers on success. Given only a ``model``,
# FastAPI files it under the route's own media type: text/event-stream for an event stream.
_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorEnvelope, "content": _JSON} for status in statuses}
