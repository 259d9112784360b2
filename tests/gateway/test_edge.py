"""The gateway edge: request ids, the error envelope, body limits, health, metrics, CORS, docs."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.factories import PASSWORD, account, assert_error, unique_username
from tests.support.backends import Backend
from tests.support.isolated import isolated_settings, unstarted_app

LOGIN = "/api/v1/auth/login"
JSON = {"Content-Type": "application/json"}
MAX_BODY = 1_048_576  # the default ULTRACHAT_MAX_BODY_BYTES
CLOSED_PORT = "127.0.0.1:1"


# Request ids


async def test_a_valid_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "edge-42.a:b_c"})
    assert response.headers["x-request-id"] == "edge-42.a:b_c"
    missing = await client.get("/nowhere", headers={"X-Request-ID": "trace-7"})
    assert assert_error(missing, 404, "not_found")["request_id"] == "trace-7"


@pytest.mark.parametrize(
    "incoming", [None, "", "has spaces", "<script>", "x" * 129, "ünïcode".encode()], ids=repr
)
async def test_a_missing_or_invalid_request_id_is_replaced(
    client: httpx.AsyncClient, incoming: str | bytes | None
) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    response = await client.get("/healthz", headers=headers)
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    again = await client.get("/healthz", headers=headers)
    assert again.headers["x-request-id"] != generated


# The error envelope, never a 500


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/no-such-thing"), 404, "not_found")
    wrong = await client.put(LOGIN, json={})
    assert_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"


BAD_BODIES = [
    pytest.param(b'{"username": "abc", "password": ', 422, "invalid_input", id="malformed-json"),
    pytest.param(b"[" * 50_000 + b"]" * 50_000, 400, "bad_request", id="deeply-nested"),
    pytest.param(b'{"username": "\xff\xfe"}', 400, "bad_request", id="invalid-utf8"),
    pytest.param(b'{"username": ' + b"9" * 5000 + b"}", 400, "bad_request", id="huge-integer"),
    pytest.param(b"", 422, "invalid_input", id="empty"),
    pytest.param(b"null", 422, "invalid_input", id="null"),
    pytest.param(b'["alice", "secret"]', 422, "invalid_input", id="array"),
    pytest.param(b'"alice"', 422, "invalid_input", id="string"),
    pytest.param(b'{"username": 123, "password": "x"}', 422, "invalid_input", id="int-username"),
    pytest.param(b'{"username": "abc", "password": ["x"]}', 422, "invalid_input", id="list-pw"),
    pytest.param(b'{"username": "abc", "password": true}', 422, "invalid_input", id="bool-pw"),
    pytest.param(b'{"username": "abc", "password": "\\ud800x"}', 422, "invalid_input", id="surr"),
    pytest.param(b'{"username": "abc"}', 422, "invalid_input", id="missing-field"),
]


@pytest.mark.parametrize("path", [LOGIN, "/api/v1/auth/register"])
@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_bad_input_gets_a_4xx_envelope(
    client: httpx.AsyncClient, path: str, body: bytes, status: int, code: str
) -> None:
    assert_error(await client.post(path, content=body, headers=JSON), status, code)


async def test_unknown_fields_are_refused_by_name(client: httpx.AsyncClient) -> None:
    body = {"username": unique_username(), "password": PASSWORD, "is_admin": True}
    response = await client.post("/api/v1/auth/register", json=body)
    assert "is_admin" in assert_error(response, 422, "invalid_input")["message"]


async def test_a_non_json_content_type_is_refused(client: httpx.AsyncClient) -> None:
    body = b'{"username": "abc", "password": "abcdefgh"}'
    response = await client.post(LOGIN, content=body, headers={"Content-Type": "text/plain"})
    assert_error(response, 422, "invalid_input")


async def test_a_username_no_account_can_have_is_just_a_failed_sign_in(
    client: httpx.AsyncClient,
) -> None:
    # A NUL byte used to reach PostgreSQL, which refuses it: a 500.
    response = await client.post(LOGIN, json={"username": "ab\x00cd", "password": PASSWORD})
    assert assert_error(response, 401, "unauthorized")["message"] == "invalid username or password"


async def test_an_unhandled_error_is_a_500_envelope_with_the_request_id(backend: Backend) -> None:
    async with unstarted_app(isolated_settings(backend)) as (app, client):

        async def explode() -> None:
            raise RuntimeError("boom")

        app.add_api_route("/explode", explode)
        response = await client.get("/explode", headers={"X-Request-ID": "crash-1"})
        error = assert_error(response, 500, "internal_error")
        assert error == {
            "code": "internal_error",
            "message": "internal server error",
            "request_id": "crash-1",
        }
        metrics = (await client.get("/metrics")).text
        assert 'method="GET",route="/explode",status="500"' in metrics


# Body size


async def test_a_body_over_the_limit_is_413_by_content_length(client: httpx.AsyncClient) -> None:
    response = await client.post(LOGIN, content=b"x" * (MAX_BODY + 1), headers=JSON)
    error = assert_error(response, 413, "payload_too_large")
    assert error["message"] == f"request body exceeds {MAX_BODY} bytes"


async def test_a_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65_536

    response = await client.post(LOGIN, content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


async def test_a_body_at_the_limit_is_read(client: httpx.AsyncClient) -> None:
    body = b"{" + b" " * (MAX_BODY - 2) + b"}"
    assert_error(await client.post(LOGIN, content=body, headers=JSON), 422, "invalid_input")


# Health


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient, backend: Backend) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    expected = (
        {"database": "ok", "redis": "ok", "bus": "ok"} if backend.redis_url else {"database": "ok"}
    )
    assert response.json() == {"status": "ready", "checks": expected}


async def test_readyz_is_503_while_the_bus_reconnects(
    app: FastAPI, client: httpx.AsyncClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not backend.redis_url:
        pytest.skip("the embedded bus is in process and never disconnects")
    # The outage itself (a killed pub/sub connection) is exercised in tests/bus; here: that
    # /readyz reports what the bus says about itself.
    monkeypatch.setattr(type(app.state.runtime.bus), "healthy", property(lambda _: False))
    response = await client.get("/readyz")
    assert_error(response, 503, "unavailable")
    assert response.json()["checks"]["bus"] == "down"


@pytest.mark.parametrize("dependency", ["database", "redis"])
async def test_readyz_is_503_when_a_dependency_is_unreachable(
    backend: Backend, dependency: str
) -> None:
    broken = {
        "database": {"database_url": f"postgresql+asyncpg://ultrachat@{CLOSED_PORT}/none"},
        "redis": {"redis_url": f"redis://{CLOSED_PORT}/0"},
    }[dependency]
    async with unstarted_app(isolated_settings(backend, **broken)) as (_, client):
        response = await client.get("/readyz")
    assert_error(response, 503, "unavailable")
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"][dependency] == "down"
    assert dependency in body["error"]["message"]


# Metrics


async def test_metrics_label_route_templates_never_raw_paths(client: httpx.AsyncClient) -> None:
    user = await account(client)
    await client.delete(f"/api/v1/auth/sessions/{user.session_id}", headers=user.headers)
    stray = f"/api/v1/{secrets.token_hex(8)}"
    await client.get(stray)
    await client.request("BREW", "/healthz")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE ultrachat_http_request_duration_seconds histogram" in text
    assert (
        'ultrachat_http_request_duration_seconds_count{method="DELETE",'
        'route="/api/v1/auth/sessions/{session_id}",status="204"}'
    ) in text
    assert 'route="unmatched"' in text
    assert user.session_id not in text
    assert stray not in text
    # Methods are the client's choice too: unknown ones share one label.
    assert 'method="other",route="/healthz",status="405"' in text
    assert "BREW" not in text


# CORS


async def test_cors_allows_only_configured_origins(backend: Backend) -> None:
    settings = isolated_settings(backend, cors_origins="https://chat.example")
    async with unstarted_app(settings) as (_, client):
        allowed = await client.get("/healthz", headers={"Origin": "https://chat.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://chat.example"
        assert "X-Request-ID" in allowed.headers["access-control-expose-headers"]

        other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers

        preflight = {"Access-Control-Request-Method": "POST"}
        ok = await client.options(LOGIN, headers={"Origin": "https://chat.example", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://chat.example"
        refused = await client.options(
            LOGIN, headers={"Origin": "https://evil.example", **preflight}
        )
        assert assert_error(refused, 400, "bad_request")["message"] == "Disallowed CORS origin"
        assert "access-control-allow-origin" not in refused.headers


async def test_without_configured_origins_there_are_no_cors_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://chat.example"})
    assert "access-control-allow-origin" not in response.headers


# API docs


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    document = spec.json()
    assert document["info"]["title"] == "UltraChat"
    for path in (LOGIN, "/api/v1/auth/sessions/{session_id}", "/api/v1/users/me", "/readyz"):
        assert path in document["paths"]
    assert "ErrorEnvelope" in document["components"]["schemas"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()
