"""Ciphertexts open only in their own row and column, unaltered; anything else is corruption."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from tests.auth.factories import account
from tests.chat.factories import API, create, get_message, history, send
from tests.support.deployment import Deployment
from ultrachat.chat.log import ChannelLog
from ultrachat.chat.models import ChannelEvent, Message
from ultrachat.crypto import CorruptCiphertext
from ultrachat.crypto.columns import EVENT_DATA, MESSAGE_BODY, SIGNING_KEY
from ultrachat.crypto.envelope import HEADER, NONCE_BYTES, OVERHEAD


@pytest.fixture
def deployment_settings() -> dict[str, Any]:
    return {"cache_enabled": False}  # tampering happens under the cache's feet


async def test_a_value_opens_in_its_own_row_and_nowhere_else(deployment: Deployment) -> None:
    ring = deployment.runtime.data_keys
    sealed = ring.encrypt_text(MESSAGE_BODY, "row-1", "the launch is on friday")
    assert b"friday" not in sealed
    assert len(sealed) == len("the launch is on friday") + OVERHEAD
    assert ring.decrypt_text(MESSAGE_BODY, "row-1", sealed) == "the launch is on friday"
    # The same value in another row, or another column of the same row, does not open.
    for column, row_id in [(MESSAGE_BODY, "row-2"), (EVENT_DATA, "row-1"), (SIGNING_KEY, "row-1")]:
        with pytest.raises(CorruptCiphertext, match="authentication failed"):
            ring.decrypt(column, row_id, sealed)


async def test_every_flipped_bit_is_detected(deployment: Deployment) -> None:
    ring = deployment.runtime.data_keys
    sealed = ring.encrypt_text(MESSAGE_BODY, "row-1", "hi")
    for index in range(len(sealed)):
        for bit in (0, 7):
            damaged = bytearray(sealed)
            damaged[index] ^= 1 << bit
            with pytest.raises(CorruptCiphertext):
                ring.decrypt(MESSAGE_BODY, "row-1", bytes(damaged))
    for cut in (0, HEADER.size, HEADER.size + NONCE_BYTES, len(sealed) - 1):
        with pytest.raises(CorruptCiphertext):
            ring.decrypt(MESSAGE_BODY, "row-1", sealed[:cut])


async def test_nonces_are_never_repeated(deployment: Deployment) -> None:
    ring = deployment.runtime.data_keys
    nonces = {
        ring.encrypt_text(MESSAGE_BODY, "r", "same")[HEADER.size : HEADER.size + NONCE_BYTES]
        for _ in range(2000)
    }
    assert len(nonces) == 2000
    batch = ring.encrypt_many(MESSAGE_BODY, [(f"row-{i}", "same") for i in range(2000)])
    assert len({sealed[HEADER.size : HEADER.size + NONCE_BYTES] for sealed in batch}) == 2000
    assert ring.decrypt_text(MESSAGE_BODY, "row-7", batch[7]) == "same"


async def test_swapped_bodies_are_reported_as_corrupt_not_empty(deployment: Deployment) -> None:
    client = deployment.client
    alice = await account(client)
    channel = await create(client, alice)
    first = await send(client, alice, channel["id"], "first secret")
    second = await send(client, alice, channel["id"], "second secret")
    third = await send(client, alice, channel["id"], "third, untouched")
    db = deployment.runtime.db
    async with db.transaction() as session:
        query = select(Message.id, Message.body).where(Message.id.in_([first["id"], second["id"]]))
        bodies = {row.id: row.body for row in (await session.execute(query)).all()}
        for target, source in [(first, second), (second, first)]:
            await session.execute(
                update(Message).where(Message.id == target["id"]).values(body=bodies[source["id"]])
            )

    page = await history(client, alice, channel["id"], after_seq=0)
    by_id = {m["id"]: m for m in page}
    for damaged in (first, second):
        assert by_id[damaged["id"]]["body"] is None
        assert by_id[damaged["id"]]["corrupt"] is True
    assert by_id[third["id"]]["body"] == "third, untouched"
    assert by_id[third["id"]]["corrupt"] is False
    single = await get_message(client, alice, first["id"])
    assert (single["body"], single["corrupt"]) == (None, True)
    metrics = (await client.get("/metrics")).text
    assert 'ultrachat_decrypt_failures_total{column="messages.body"}' in metrics


async def test_a_damaged_event_is_replayed_as_corrupt(deployment: Deployment) -> None:
    client = deployment.client
    alice = await account(client)
    channel = await create(client, alice)
    sent = await send(client, alice, channel["id"], "replayed later")
    db = deployment.runtime.db
    async with db.transaction() as session:
        where = (ChannelEvent.channel_id == channel["id"]) & (ChannelEvent.seq == sent["seq"])
        data = await session.scalar(select(ChannelEvent.data).where(where))
        assert data is not None
        flipped = data[:-1] + bytes([data[-1] ^ 1])
        await session.execute(update(ChannelEvent).where(where).values(data=flipped))
    log = ChannelLog(db, deployment.runtime.ledger.sealer)
    replay = await log.after(channel["id"], 0, 100)
    assert [e.seq for e in replay] == [1, sent["seq"]]
    assert replay[-1].kind == "event.corrupt"
    assert "replayed later" not in replay[-1].frame
    assert '"kind":"message.created"' in replay[-1].frame


async def test_the_api_never_returns_ciphertext(deployment: Deployment) -> None:
    client = deployment.client
    alice = await account(client)
    channel = await create(client, alice)
    sent = await send(client, alice, channel["id"], "plain to the reader")
    edited = await client.patch(
        f"{API}/messages/{sent['id']}", json={"body": "edited, still plain"}, headers=alice.headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "edited, still plain"
    assert (await get_message(client, alice, sent["id"]))["body"] == "edited, still plain"
