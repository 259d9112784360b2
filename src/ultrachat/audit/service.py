"""Recording security events, and reading them back.

Each record is appended in its own short transaction right after the change it describes has
committed (docs/security.md): the services that make the changes keep their transactions and
tables to themselves, and a failed change (a wrong password) is still recorded. Appends take
turns on the chain's head row, so the chain stays one line across requests and nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ultrachat.audit import repository
from ultrachat.audit.chain import canonical_json
from ultrachat.audit.models import AuditRecord
from ultrachat.gateway.context import client_ip_var, request_id_var, user_id_var
from ultrachat.metrics.audit import AUDIT_APPEND_FAILURES
from ultrachat.storage import Database, new_id

log = logging.getLogger(__name__)
# Never stored, whatever a caller passes: a details key containing any of these is dropped.
_SECRET_WORDS = ("password", "token", "secret", "private", "hash")


def _clean(details: Mapping[str, Any] | None) -> str:
    safe = {
        k: v
        for k, v in (details or {}).items()
        if not any(word in k.lower() for word in _SECRET_WORDS)
    }
    return canonical_json(safe)


def _text(value: str, limit: int) -> str:
    # Stored as text: no control characters (PostgreSQL refuses NUL), bounded length.
    return "".join(ch for ch in value if ch.isprintable())[:limit]


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        event: str,
        *,
        actor_id: str | None = None,
        target_type: str = "",
        target_id: str = "",
        ip: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord | None:
        """Append one record; actor, ip and request id default to the request's context.

        The change it describes has already committed, so a failure here is logged and
        counted, never raised to the caller.
        """
        record = AuditRecord(
            id=new_id(),
            event=event,
            actor_id=user_id_var.get() if actor_id is None else actor_id,
            target_type=target_type,
            target_id=_text(target_id, 128),
            ip=_text(client_ip_var.get() if ip is None else ip, 64),
            request_id=request_id_var.get(),
            details=_clean(details),
        )
        try:
            async with self._db.transaction() as session:
                await repository.append(session, record)
        except Exception:
            AUDIT_APPEND_FAILURES.inc()
            log.exception("could not append audit record %s", event)
            return None
        return record

    async def query(
        self,
        *,
        actor_id: str | None = None,
        event: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRecord]:
        async with self._db.sessions() as session:
            return await repository.query(
                session, actor_id=actor_id, event=event, since=since, until=until, limit=limit
            )
