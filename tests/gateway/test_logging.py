"""Structured logs (ultrachat/logs.py): the access line, the format, and no secret in any line.

Two ways in: the app in process with every logger at DEBUG (what any code logs, before and
after redaction), and a real server process at ULTRACHAT_LOG_LEVEL=debug (what uvicorn and
the configured handler write to stderr, WebSocket hello included).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.auth.factories import PASSWORD, account
from tests.support.backends import Backend
from tests.support.server import cluster, stop_node
from tests.support.wsclient import RealtimeClient
from ultrachat.config import SettingsError, load_settings
from ultrachat.gateway.context import request_id_var, user_id_var
from ultrachat.logs import JsonFormatter, RedactSecrets, TextFormatter, logging_config, redact

FIELDS = {"ts", "level", "logger", "msg"}
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def access_line(lines: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [
        x for x in lines if x["logger"] == "ultrachat.access" and x["request_id"] == request_id
    ]
    assert len(found) == 1, f"one access line per request, got {found}"
    return found[0]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Every record at DEBUG: raw in ``caplog.text``, formatted and redacted in the stream."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        # caplog's handler was installed before ours, so it records each message unredacted.
        with caplog.at_level(logging.DEBUG):
            yield stream
    finally:
        root.removeHandler(handler)


async def test_no_secret_reaches_a_log_and_each_request_has_one_access_line(
    client: httpx.AsyncClient, captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    user = await account(client)
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refreshed.status_code == 200, refreshed.text
    new_tokens = refreshed.json()
    headers = {"Authorization": f"Bearer {new_tokens['access_token']}"}
    wrong = await client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": "wrong-" + PASSWORD}
    )
    assert wrong.status_code == 401
    forged = "forged-bearer-credential-123456"
    refused = await client.get("/api/v1/channels", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
    made = await client.post(
        "/api/v1/channels", json={"name": "logs", "kind": "public"}, headers=headers
    )
    assert made.status_code == 201, made.text
    channel_id = made.json()["id"]
    body_marker = "message-body-that-must-not-be-logged"
    sent = await client.post(
        f"/api/v1/channels/{channel_id}/messages",
        json={"body": body_marker},
        headers={**headers, "X-Request-ID": "log-test.send"},
    )
    assert sent.status_code == 201, sent.text
    query = await client.get(f"/healthz?token={new_tokens['access_token']}")
    anonymous = await client.get("/healthz")

    secrets = {
        "password": PASSWORD,
        "access token": user.access_token,
        "refresh token": user.refresh_token,
        "new access token": new_tokens["access_token"],
        "new refresh token": new_tokens["refresh_token"],
        "forged bearer": forged,
        "message body": body_marker,
    }
    formatted = captured.getvalue()
    for name, secret in secrets.items():
        assert secret not in caplog.text, f"the {name} was logged (before redaction)"
        assert secret not in formatted, f"the {name} reached a log line"

    lines = json_lines(formatted)
    assert all(line.keys() >= FIELDS for line in lines)
    send = access_line(lines, sent.headers["x-request-id"])
    assert send["request_id"] == "log-test.send"
    assert send["user_id"] == user.id
    assert send["route"] == "/api/v1/channels/{channel_id}/messages"
    assert all(channel_id not in line.get("route", "") for line in lines)
    assert (send["method"], send["status"], send["level"]) == ("POST", 201, "info")
    assert isinstance(send["duration_ms"], float) and send["duration_ms"] > 0
    for response in (query, anonymous):
        line = access_line(lines, response.headers["x-request-id"])
        assert (line["route"], line["status"]) == ("/healthz", 200)
        assert "user_id" not in line, "the user id is scoped to the request that set it"
    failed = access_line(lines, wrong.headers["x-request-id"])
    assert (failed["route"], failed["status"]) == ("/api/v1/auth/login", 401)


async def test_the_server_logs_json_lines_through_uvicorn_and_websockets_without_secrets(
    backend: Backend, tmp_path: Path
) -> None:
    async with cluster(backend, tmp_path, 1, log_level="debug", log_format="json") as (node,):
        async with httpx.AsyncClient(base_url=node.http) as http:
            user = await account(http)
            refreshed = await http.post(
                "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
            )
            assert refreshed.status_code == 200, refreshed.text
            listed = await http.get(
                "/api/v1/channels", headers={**user.headers, "X-Request-ID": "live-list"}
            )
            assert listed.status_code == 200
        socket = RealtimeClient(node.ws, user.access_token)
        assert (await socket.connect())["user_id"] == user.id
        await socket.close()
        # A token in the query string is not how clients authenticate, but uvicorn logs the
        # path it was asked for: the redaction must catch it.
        leaky = RealtimeClient(f"{node.ws}?token={user.access_token}", user.access_token)
        await leaky.connect()
        await leaky.close()
        stop_node(node)
        text = node.log()

    lines = json_lines(text)  # every line is one JSON object: no bare tracebacks or banners
    assert all(line.keys() >= FIELDS for line in lines), text
    assert any(line["logger"].startswith("uvicorn") for line in lines), "uvicorn's own lines"
    new = refreshed.json()
    for secret in (
        PASSWORD,
        user.access_token,
        user.refresh_token,
        new["access_token"],
        new["refresh_token"],
    ):
        assert secret not in text
    assert "token=[REDACTED]" in text
    assert "< TEXT" not in text, "websockets' frame trace (bodies, tokens) stays off at debug"
    listing = access_line(lines, "live-list")
    assert (listing["user_id"], listing["route"], listing["status"]) == (
        user.id,
        "/api/v1/channels",
        200,
    )


def test_text_format_and_a_bad_format_setting() -> None:
    assert load_settings().log_format == "json"
    assert load_settings(log_format="text").log_format == "text"
    with pytest.raises(SettingsError, match="ULTRACHAT_LOG_FORMAT"):
        load_settings(log_format="xml")
    record = logging.LogRecord("ultrachat.x", logging.INFO, "f.py", 1, "hi %s", ("there",), None)
    record.status = 200
    rid, uid = request_id_var.set("r-1"), user_id_var.set("u-1")
    try:
        text = TextFormatter().format(record)
    finally:
        request_id_var.reset(rid)
        user_id_var.reset(uid)
    assert text.split(" ", 1)[1] == "INFO    ultrachat.x [r-1 u-1] hi there status=200"


def test_an_exception_is_one_escaped_field() -> None:
    try:
        raise ValueError("bad\nthing password=hunter2-secret")
    except ValueError:
        record = logging.LogRecord(
            "ultrachat.x", logging.ERROR, "f.py", 1, "failed", None, sys.exc_info()
        )
    RedactSecrets().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed["exc"].startswith("Traceback") and "ValueError: bad\nthing" in parsed["exc"]
    assert "hunter2" not in line
    assert parsed["level"] == "error" and "request_id" not in parsed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: [REDACTED]"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=[REDACTED]"),
        ("sent bearer abcDEF123456789xyz", "sent bearer [REDACTED]"),
        ('"WebSocket /api/v1/ws?token=abc123&x=1" [accepted]', "token=[REDACTED]&x=1"),
        ('{"refresh_token": "a b c", "ok": 1}', '{"refresh_token": [REDACTED], "ok": 1}'),
        ("{'password': 'pa ss'}", "{'password': [REDACTED]}"),
        ("ULTRACHAT_MASTER_KEY=6a6a6a6a", "ULTRACHAT_MASTER_KEY=[REDACTED]"),
        ("< cookie: a=1; session=abc\n< host: x", "< cookie: [REDACTED]\n< host: x"),
        ("master_key: 0011", "master_key: [REDACTED]"),
        ("hello eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2ln end", "hello [REDACTED] end"),
        ("cut eyJhbGciOiJFZERTQSJ9...", "cut [REDACTED]"),
        ("""< TEXT '{"type":"hello","token":"abc...xyz' [790 bytes]""", ":[REDACTED]' [790"),
        (
            "[SQL: INSERT INTO t VALUES ($1)]\n[parameters: ('secret value',)]\n(Background)",
            "[parameters: [REDACTED]]\n(Background)",
        ),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    redacted = redact(text)
    assert expected in redacted, redacted


@pytest.mark.parametrize(
    "text",
    [
        "request",
        "encryption at rest uses the generated master key var/master.key; in production supply"
        " your own (ULTRACHAT_MASTER_KEY or ULTRACHAT_MASTER_KEY_FILE)",
        "missing bearer token",
        "signing key reload failed; keeping the current keys",
    ],
)
def test_redaction_leaves_ordinary_messages_alone(text: str) -> None:
    assert redact(text) == text


def test_the_config_keeps_third_party_loggers_at_warning() -> None:
    config = logging_config("debug", "text")
    assert config["root"]["level"] == "WARNING"  # SQLAlchemy at INFO logs its parameters
    assert config["loggers"]["ultrachat"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.error"]["level"] == "INFO"  # websockets' frame trace
    assert config["handlers"]["stderr"]["formatter"] == "text"
    assert config["handlers"]["stderr"]["filters"] == ["redact"]
    assert logging_config("error")["root"]["level"] == "ERROR"
