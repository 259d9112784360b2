"""Process logging: one line per record on stderr, JSON by default, secrets redacted.

``ultrachat serve`` installs this (``logging_config``) for our loggers and uvicorn's alike,
so every line of a server's stderr has one shape:

    {"ts":"2025-01-02T03:04:05.678Z","level":"info","logger":"ultrachat.access","msg":"request",
     "request_id":"…","user_id":"…","method":"GET","route":"/api/v1/channels/{channel_id}",
     "status":200,"duration_ms":1.234}

``request_id`` and ``user_id`` come from the request's context variables
(``gateway/context.py``), so any record logged while a request is handled carries them.
Anything passed as ``extra=`` becomes a field. An exception becomes one ``exc`` field (its
newlines escaped by JSON), so a traceback never spans lines.

``RedactSecrets`` runs on the handler, before either format: bearer tokens, JWTs and the value
of anything named like a secret (``password=``, ``"refresh_token": "…"``, ``token=`` in a
query string, ``master_key:``, SQL parameters in database errors) are replaced by
``[REDACTED]``. It is the second line of defence: nothing in UltraChat logs request bodies,
headers or tokens in the first place.

This is a top-level module rather than ``gateway/logging.py`` because the CLI configures it
before any app exists, and because a module named ``logging`` inside a package invites
``from ultrachat.gateway import logging`` shadowing the standard library's.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Literal

import orjson

from ultrachat.gateway.context import request_id_var, user_id_var

LogFormat = Literal["json", "text"]

REDACTED = "[REDACTED]"

# LogRecord attributes that are not ``extra=`` fields. ``color_message`` is uvicorn's
# coloured copy of the message (never redacted, never wanted); ``taskName`` is Python 3.12's.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}

# A bearer credential: long enough to be a token ("missing bearer token" is not one).
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/-]{16,}=*")
# A JWT, even one cut short (its header alone starts eyJ, base64 of '{"').
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}")
# key=value, key: value, "key": "value", 'key': 'value' where the key names a secret. The
# value is a quoted string (spaces and all) or a run up to a delimiter, after an optional
# scheme (Authorization: Bearer ...).
_SECRET_VALUE = re.compile(
    r"""(?ix)
    (?<![\w-])  # only at a word's start: no quadratic backtracking inside long words
    (?P<key>[\w-]*(?:token|password|passwd|passphrase|secret|master[_-]?key|api[_-]?key
        |authorization|cookie|credential)[\w-]*)
    (?P<sep>["']?\s*[:=]\s*)
    (?!\[REDACTED\])  # already done (a cookie header)
    (?P<value>(?:(?:bearer|basic)\s+)?
        (?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|["'][^\s"']*|[^\s"'&,;)}\]]+))
    """
)
# A cookie header holds several pairs: all of it goes, to the end of the line.
_COOKIE = re.compile(r"""(?i)\b((?:set-)?cookie["']?\s*[:=]\s*)[^\r\n]+""")
# SQLAlchemy puts a failed statement's bound values in its error text.
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n|$)", re.DOTALL)


# Words one of which every pattern above needs. Most messages hold none, and then no regex
# runs: chained ``in`` on the lowered text is several times cheaper than one regex search.
def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    return (
        "token" in lowered
        or "pass" in lowered
        or "key" in lowered
        or "auth" in lowered
        or "bearer" in lowered
        or "eyj" in lowered
        or "secret" in lowered
        or "cookie" in lowered
        or "credential" in lowered
        or "[parameters: " in text
    )


def redact(text: str) -> str:
    """``text`` with every secret it visibly carries replaced by ``[REDACTED]``."""
    if not _may_hold_secret(text):
        return text
    text = _SQL_PARAMETERS.sub("[parameters: " + REDACTED + "]", text)
    text = _COOKIE.sub(r"\1" + REDACTED, text)
    text = _SECRET_VALUE.sub(lambda m: m["key"] + m["sep"] + REDACTED, text)
    text = _BEARER.sub(r"\1 " + REDACTED, text)
    return _JWT.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites each record in place: message, string ``extra`` fields, exception text.

    Installed on the handler (not a logger) so that it sees records from every logger,
    third-party ones included, on their way to the output."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        fields = record.__dict__
        fields.pop("color_message", None)
        for name, value in fields.items():  # replacing values (not keys) while iterating
            if isinstance(value, str) and name not in _STANDARD_ATTRS:
                fields[name] = redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_EXC_FORMATTER = logging.Formatter()


# (second, its formatted text): strftime runs once a second. One tuple, read once, so that
# threads logging at once never pair one second with another's text.
_last_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds: 2025-01-02T03:04:05.678Z."""
    global _last_second
    second = int(created)
    cached = _last_second
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _last_second = cached
    return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id, user_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        user_id = user_id_var.get()
        if user_id:
            line["user_id"] = user_id
        line.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """For a person at a terminal: ``ts LEVEL logger [request_id user_id] msg key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record.created), f"{record.levelname:<7}", record.name]
        ids = " ".join(v for v in (request_id_var.get(), user_id_var.get()) if v)
        if ids:
            parts.append(f"[{ids}]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in _extras(record).items())
        text = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        return text


def logging_config(level: str, fmt: LogFormat = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict, also given to uvicorn as its ``log_config``.

    ``level`` applies to UltraChat's loggers. uvicorn's go no lower than INFO: its DEBUG is
    the websockets library's trace of every frame and handshake header (message bodies, the
    hello's token). Every other library logs at WARNING and above only, whatever ``level``
    says: at INFO SQLAlchemy logs each statement with its parameters.
    """
    level = level.upper()
    number = logging.getLevelNamesMapping()[level]
    server = logging.getLevelName(max(logging.INFO, number))
    third_party = logging.getLevelName(max(logging.WARNING, number))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "text": {"()": f"{__name__}.TextFormatter"},
        },
        "filters": {"redact": {"()": f"{__name__}.RedactSecrets"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": fmt,
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["stderr"], "level": third_party},
        "loggers": {
            "ultrachat": {"level": level},
            # SQLAlchemy's pool logs under its class's module, ours: checkouts at DEBUG,
            # disposals at INFO. It is third-party noise (pools.py itself logs nothing).
            "ultrachat.storage.pools": {"level": third_party},
            # picows, the native edge's WebSocket library: a line per connection at INFO,
            # frames at DEBUG. Third-party noise too.
            "ultrachat.realtime.wire": {"level": third_party},
            "uvicorn": {"handlers": [], "level": server, "propagate": True},
            "uvicorn.error": {"level": server},
            # access_log=False: the access line comes from the edge (ultrachat.access).
            "uvicorn.access": {"handlers": [], "level": server, "propagate": False},
        },
    }
