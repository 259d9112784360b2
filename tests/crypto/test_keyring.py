"""Data keys count their uses and hand over to a new key well before the limit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from tests.auth.factories import account
from tests.chat.factories import create, history, send
from tests.support.deployment import Deployment
from ultrachat.audit.models import AuditRecord
from ultrachat.crypto import CorruptCiphertext
from ultrachat.crypto.columns import MESSAGE_BODY
from ultrachat.crypto.keyring import DataKeyRing
from ultrachat.crypto.master import LocalMasterKey, MasterKeyError
from ultrachat.crypto.models import ACTIVE, PRIMARY, DataKey
from ultrachat.crypto.setup import data_key_ring, key_provider

SMALL_LIMIT = 64  # so that a test sees several automatic rotations


@pytest.fixture
def deployment_settings() -> dict[str, Any]:
    return {"data_key_max_uses": SMALL_LIMIT}


async def keys(deployment: Deployment) -> list[DataKey]:
    async with deployment.runtime.db.sessions() as session:
        return list((await session.scalars(select(DataKey).order_by(DataKey.id))).all())


async def test_keys_rotate_before_their_use_limit(deployment: Deployment) -> None:
    client = deployment.client
    alice = await account(client)
    channel = await create(client, alice)
    sent = [await send(client, alice, channel["id"], f"message {i}") for i in range(60)]

    made = await keys(deployment)
    # 60 messages are 120 encryptions (body and event frame) under a limit of 64 each.
    assert len(made) >= 2
    assert [k.state for k in made].count(PRIMARY) == 1
    assert all(k.state == ACTIVE for k in made[:-1])
    assert all(k.uses <= SMALL_LIMIT for k in made)
    assert sum(k.uses for k in made) >= 2 * len(sent)  # every encryption was counted
    # Old keys still decrypt: every message reads back.
    page = await history(client, alice, channel["id"], after_seq=0, limit=200)
    assert [m["body"] for m in page] == [f"message {i}" for i in range(60)]
    async with deployment.runtime.db.sessions() as session:
        rotations = (
            await session.scalars(
                select(AuditRecord).where(AuditRecord.event == "keys.data_rotated")
            )
        ).all()
    assert {r.target_id for r in rotations} >= {str(k.id) for k in made[1:]}


async def test_a_new_node_reads_keys_made_by_another(deployment: Deployment) -> None:
    runtime = deployment.runtime
    other = data_key_ring(runtime.settings, runtime.db)
    await other.start()
    new_key = await other.rotate("test")
    sealed = other.encrypt_text(MESSAGE_BODY, "row", "from the other node")
    # This node has not refreshed yet; the batch read path loads the new key by itself.
    assert runtime.data_keys.primary_id != new_key
    opened = await runtime.data_keys.decrypt_many(MESSAGE_BODY, [("row", sealed)])
    assert opened == ["from the other node"]
    await other.stop()


async def test_a_wrong_master_key_is_refused_by_name(deployment: Deployment) -> None:
    wrong = DataKeyRing(deployment.runtime.db, LocalMasterKey(b"\x01" * 32))
    with pytest.raises(MasterKeyError, match="wrapped by master key"):
        await wrong.start()


async def test_a_swapped_wrapped_key_does_not_unwrap(deployment: Deployment) -> None:
    runtime = deployment.runtime
    await runtime.data_keys.rotate("test")
    first, second = (await keys(deployment))[:2]
    async with runtime.db.transaction() as session:
        await session.execute(
            update(DataKey).where(DataKey.id == first.id).values(wrapped=second.wrapped)
        )
    fresh = data_key_ring(runtime.settings, runtime.db)
    with pytest.raises(MasterKeyError, match="failed to unwrap"):
        await fresh.start()


async def test_an_unknown_key_id_is_corruption(deployment: Deployment) -> None:
    ring = deployment.runtime.data_keys
    sealed = bytearray(ring.encrypt_text(MESSAGE_BODY, "row", "x"))
    sealed[1:5] = (999_999).to_bytes(4, "big")
    with pytest.raises(CorruptCiphertext, match="not loaded"):
        ring.decrypt(MESSAGE_BODY, "row", bytes(sealed))
    opened = await ring.decrypt_many(MESSAGE_BODY, [("row", bytes(sealed))])
    assert isinstance(opened[0], CorruptCiphertext)


def test_settings_refuse_a_malformed_master_key() -> None:
    from ultrachat.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match=r"ULTRACHAT_MASTER_KEY.*32 random bytes"):
        load_settings(master_key="too-short")


async def test_a_burst_between_reservations_is_still_counted(deployment: Deployment) -> None:
    runtime = deployment.runtime

    async def reserved() -> int:
        async with runtime.db.sessions() as session:
            uses = await session.scalar(select(DataKey.uses).where(DataKey.state == PRIMARY))
        assert uses is not None
        return uses

    before = await reserved()
    ring = DataKeyRing(runtime.db, key_provider(runtime.settings), max_uses=10**8, block=16)
    await ring.start()
    for _ in range(3):
        for _ in range(100):  # no await in between: the budget runs far below zero
            ring.encrypt_text(MESSAGE_BODY, "row", "burst")
        await ring.stop()  # the top-up the burst started has finished
    # Every encryption is covered by a reservation (blocks of 16, so several were made).
    assert await reserved() - before >= 300
