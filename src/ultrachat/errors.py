"""Domain errors: each carries its HTTP status and a stable code; one handler renders them.

Services raise these and never build responses themselves. The codes are part of the API
(clients switch on them), so they are listed in docs/api-errors.md.
"""

from __future__ import annotations


class UltraChatError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(UltraChatError):
    status_code = 422
    code = "invalid_input"


class Unauthorized(UltraChatError):
    status_code = 401
    code = "unauthorized"


class Forbidden(UltraChatError):
    status_code = 403
    code = "forbidden"


class NotFound(UltraChatError):
    status_code = 404
    code = "not_found"


class Conflict(UltraChatError):
    status_code = 409
    code = "conflict"


class RateLimited(UltraChatError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(UltraChatError):
    status_code = 503
    code = "unavailable"


class Overloaded(ServiceUnavailable):
    """This node refuses new work for a moment so that what it accepted stays on time
    (chat/admission.py). Nothing was written: retry after ``Retry-After``, same request."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after
