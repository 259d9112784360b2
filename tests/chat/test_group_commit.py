"""Group commit: concurrent sends share a transaction and keep every promise of a single send."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.factories import Account
from tests.chat.factories import accounts, create, events, kinds
from ultrachat.chat import batch_repository
from ultrachat.chat.models import ChannelEvent
from ultrachat.errors import Forbidden, ServiceUnavailable
from ultrachat.metrics.chat import GROUP_COMMIT_BATCH


def _batches_so_far() -> tuple[float, float]:
    sample = {s.name: s.value for s in GROUP_COMMIT_BATCH.collect()[0].samples}
    return sample["ultrachat_group_commit_batch_size_count"], sample[
        "ultrachat_group_commit_batch_size_sum"
    ]


async def _send(app: FastAPI, user: Account, channel_id: str, body: str, cmid: str | None) -> Any:
    return await app.state.runtime.messages.send(user.id, channel_id, body, cmid)


async def test_concurrent_sends_are_batched_and_stay_gap_free(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, *others = await accounts(client, 4)
    channels = [(await create(client, owner, "public", *others))["id"] for _ in range(3)]
    batches_before, sends_before = _batches_so_far()
    sends = [
        _send(app, user, channel_id, f"m{i}", f"cm{i}")
        for i in range(60)
        for user, channel_id in [((owner, *others)[i % 4], channels[i % 3])]
    ]
    results = await asyncio.gather(*sends)
    assert all(created for _, created in results)
    batches_after, sends_after = _batches_so_far()
    assert sends_after - sends_before == 60
    assert batches_after - batches_before < 60, "concurrent sends should share transactions"
    for channel_id in channels:
        log = await events(app, channel_id)
        seqs = [seq for seq, _, _ in log]
        assert seqs == list(range(1, len(log) + 1))
        assert sum(1 for _, kind, _ in log if kind == "message.created") == 20
    by_seq = {(m["channel_id"], m["seq"]) for m, _ in results}
    assert len(by_seq) == 60


async def test_retries_within_one_batch_make_one_message(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    owner, member = await accounts(client, 2)
    channel_id = (await create(client, owner, "public", member))["id"]
    results = await asyncio.gather(
        *(_send(app, member, channel_id, "once", "same") for _ in range(8))
    )
    ids = {message["id"] for message, _ in results}
    assert len(ids) == 1
    assert [created for _, created in results].count(True) == 1
    assert (await kinds(app, channel_id)).count("message.created") == 1


async def test_a_refused_send_fails_alone(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner, member, outsider = await accounts(client, 3)
    channel_id = (await create(client, owner, "public", member))["id"]
    results = await asyncio.gather(
        _send(app, member, channel_id, "fine", "a"),
        _send(app, outsider, channel_id, "not a member", "b"),
        _send(app, owner, channel_id, "also fine", "c"),
        return_exceptions=True,
    )
    assert isinstance(results[1], Forbidden)
    assert results[1].message == "join the channel first"
    assert results[0][1] is True and results[2][1] is True
    seqs = sorted(r[0]["seq"] for r in (results[0], results[2]))
    assert seqs == [2, 3]


async def test_a_failed_batch_fails_only_its_senders_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, member = await accounts(client, 2)
    channel_id = (await create(client, owner, "public", member))["id"]
    real_insert = batch_repository.insert_rows

    async def failing_insert(session: Any, model: Any, rows: list[dict[str, Any]]) -> None:
        if model is ChannelEvent:
            raise RuntimeError("disk full")
        await real_insert(session, model, rows)

    monkeypatch.setattr(batch_repository, "insert_rows", failing_insert)
    failed = await asyncio.gather(
        *(_send(app, member, channel_id, f"lost {i}", f"f{i}") for i in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ServiceUnavailable) for r in failed)
    assert failed[0].message == "the message was not stored; retry with the same client_msg_id"

    monkeypatch.setattr(batch_repository, "insert_rows", real_insert)
    # Nothing was half-written: no message, no seq taken, and retries succeed as new sends.
    history = await client.get(f"/api/v1/channels/{channel_id}/messages", headers=member.headers)
    assert history.json()["messages"] == []
    retried = await asyncio.gather(
        *(_send(app, member, channel_id, f"lost {i}", f"f{i}") for i in range(5))
    )
    assert all(created for _, created in retried)
    assert sorted(m["seq"] for m, _ in retried) == [2, 3, 4, 5, 6]
