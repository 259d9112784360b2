"""The hash chain: verify passes intact, names the first bad record after tampering."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.auth.factories import PASSWORD, register
from ultrachat.audit import AuditLog
from ultrachat.audit.verify import Verdict, verify_chain
from ultrachat.storage import Database


async def _chain(url: str, count: int = 6) -> tuple[Database, list[str]]:
    db = Database(url)
    audit = AuditLog(db)
    ids = []
    for n in range(count):
        record = await audit.record(
            "test.event", actor_id=f"actor-{n}", target_type="user", target_id=f"t{n}", ip=""
        )
        assert record is not None
        ids.append(record.id)
    return db, ids


async def _tampered(url: str, *statements: str) -> tuple[Verdict, list[str]]:
    db, ids = await _chain(url)
    try:
        assert (await verify_chain(db)).ok
        async with db.transaction() as session:
            for statement in statements:
                await session.execute(text(statement))
        return await verify_chain(db), ids
    finally:
        await db.close()


async def test_an_intact_chain_verifies(fresh_url: str) -> None:
    db, _ = await _chain(fresh_url)
    try:
        verdict = await verify_chain(db)
    finally:
        await db.close()
    assert verdict == Verdict(6)


async def test_an_edit_is_named(fresh_url: str) -> None:
    verdict, ids = await _tampered(
        fresh_url, "UPDATE audit_log SET actor_id = 'someone-else' WHERE seq = 3"
    )
    assert (verdict.bad_seq, verdict.bad_id, verdict.count) == (3, ids[2], 2)
    assert "edited" in verdict.reason


async def test_a_delete_is_named(fresh_url: str) -> None:
    verdict, ids = await _tampered(fresh_url, "DELETE FROM audit_log WHERE seq = 4")
    assert (verdict.bad_seq, verdict.bad_id) == (5, ids[4])
    assert "seq 4 is missing (deleted)" in verdict.reason


async def test_deleting_the_newest_records_is_detected(fresh_url: str) -> None:
    verdict, _ = await _tampered(fresh_url, "DELETE FROM audit_log WHERE seq >= 5")
    assert not verdict.ok and verdict.bad_seq == 5
    assert "missing (deleted)" in verdict.reason


async def test_a_reorder_is_named(fresh_url: str) -> None:
    verdict, ids = await _tampered(
        fresh_url,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -1",
    )
    assert (verdict.bad_seq, verdict.bad_id) == (2, ids[2])
    assert "reordered" in verdict.reason


async def test_an_anchor_verifies_what_retention_kept(fresh_url: str) -> None:
    db, _ = await _chain(fresh_url)
    try:
        async with db.sessions() as session:
            saved = (
                await session.execute(text("SELECT seq, hash FROM audit_log WHERE seq = 2"))
            ).one()
        async with db.transaction() as session:
            await session.execute(text("DELETE FROM audit_log WHERE seq <= 2"))
        assert not (await verify_chain(db)).ok
        assert await verify_chain(db, (int(saved[0]), str(saved[1]))) == Verdict(4)
        assert not (await verify_chain(db, (2, "f" * 64))).ok
    finally:
        await db.close()


async def test_concurrent_appends_form_one_chain(app: FastAPI, client: httpx.AsyncClient) -> None:
    async def one() -> None:
        _, username = await register(client)
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 200

    await asyncio.gather(*(one() for _ in range(30)))
    verdict = await verify_chain(app.state.runtime.db)
    assert verdict.ok, verdict
    assert verdict.count >= 60


@pytest.mark.parametrize("nodes", [3])
async def test_appends_from_several_nodes_form_one_chain(fresh_url: str, nodes: int) -> None:
    # Separate engines (separate pools) stand in for separate nodes.
    dbs = [Database(fresh_url) for _ in range(nodes)]
    try:
        logs = [AuditLog(db) for db in dbs]
        await asyncio.gather(
            *(logs[n % nodes].record("test.node", actor_id=str(n), ip="") for n in range(60))
        )
        assert await verify_chain(dbs[0]) == Verdict(60)
    finally:
        for db in dbs:
            await db.close()
