"""Upgrading a database written before encryption at rest seals what it already holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.app import TEST_MASTER_KEY
from tests.support.backends import postgres_database
from ultrachat.crypto.columns import EVENT_DATA, MESSAGE_BODY, SIGNING_KEY
from ultrachat.crypto.keyring import DataKeyRing
from ultrachat.crypto.master import LocalMasterKey, parse_master_key
from ultrachat.storage import Database, new_id
from ultrachat.storage.ids import id_timestamp
from ultrachat.storage.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgres"])
async def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database at the last schema without encryption."""
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        await upgrade(db, "0005_audit_log")
        yield db
        await db.close()
        return
    async with postgres_database() as url:
        db = Database(url)
        await upgrade(db, "0005_audit_log")
        yield db
        await db.close()


async def test_existing_plaintext_is_sealed_by_the_migration(old_database: Database) -> None:
    db = old_database
    message_id, channel_id, kid = new_id(), new_id(), new_id()
    now = datetime.now(UTC)
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO messages (id, created_at, channel_id, seq, user_id, body)"
                " VALUES (:id, :at, :c, 1, :u, 'legacy secret body')"
            ),
            {"id": message_id, "at": id_timestamp(message_id), "c": channel_id, "u": new_id()},
        )
        await conn.execute(
            text(
                "INSERT INTO channel_events VALUES"
                " (:c, 1, 'message.created', :u, '', '{\"body\":\"legacy secret frame\"}', :at)"
            ),
            {"c": channel_id, "u": new_id(), "at": now},
        )
        await conn.execute(
            text("INSERT INTO signing_keys VALUES (:k, 'legacy private pem', 'public', :at)"),
            {"k": kid, "at": now},
        )

    with pytest.raises(RuntimeError, match="run `ultrachat migrate`"):
        await upgrade(db)  # without the master key there is no way to seal them
    provider = LocalMasterKey(parse_master_key(TEST_MASTER_KEY))
    await upgrade(db, key_provider=lambda: provider)

    async with db.engine.connect() as conn:
        body = (await conn.execute(text("SELECT body FROM messages"))).scalar_one()
        frame = (await conn.execute(text("SELECT data FROM channel_events"))).scalar_one()
        pem = (await conn.execute(text("SELECT private_pem FROM signing_keys"))).scalar_one()
    assert all(b"legacy" not in bytes(value) for value in (body, frame, pem))
    ring = DataKeyRing(db, provider)
    await ring.start()
    assert ring.decrypt_text(MESSAGE_BODY, message_id, bytes(body)) == "legacy secret body"
    assert ring.decrypt_text(EVENT_DATA, f"{channel_id}/1", bytes(frame)) == (
        '{"body":"legacy secret frame"}'
    )
    assert ring.decrypt_text(SIGNING_KEY, kid, bytes(pem)) == "legacy private pem"
    await ring.stop()
