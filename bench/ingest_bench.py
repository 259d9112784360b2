"""Persisted message ingest through group commit, compared with raw COPY into the same table.

Each message is acknowledged only after its transaction commits (the same path as REST and
WebSocket sends, minus the network). Producers send into 50 channels of 5 members each.
Then the same number of rows is written with PostgreSQL's COPY into ``messages`` to give the
ceiling of the machine, and ingest is reported as a ratio of it.

    ULTRACHAT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/uc_bench \\
        uv run python bench/ingest_bench.py --messages 50000 --producers 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime

from ultrachat.config import load_settings
from ultrachat.gateway.runtime import Runtime
from ultrachat.storage import Database, new_id
from ultrachat.storage.ids import id_timestamp
from ultrachat.storage.migrate import upgrade


async def setup(runtime: Runtime, channels: int, members: int) -> list[tuple[str, list[str]]]:
    from ultrachat.chat.schemas import ChannelCreate

    made = []
    for _ in range(channels):
        users = [new_id() for _ in range(members)]
        # Users are ids only here: membership is chat's own table, auth is not on this path.
        runtime.users.existing = _all_exist  # type: ignore[method-assign]
        channel, _ = await runtime.channels.create(
            users[0], ChannelCreate(name="bench", kind="public", member_ids=users[1:])
        )
        made.append((channel["id"], users))
    return made


async def _all_exist(user_ids: object) -> set[str]:
    return set(user_ids)  # type: ignore[call-overload]


async def ingest(
    runtime: Runtime, layout: list[tuple[str, list[str]]], total: int, producers: int
) -> tuple[float, list[float]]:
    per_producer = total // producers
    latencies: list[float] = []

    async def producer(index: int) -> None:
        channel_id, users = layout[index % len(layout)]
        user = users[index % len(users)]
        for i in range(per_producer):
            started = time.perf_counter()
            await runtime.committer.submit(
                user, channel_id, f"m{index}-{i}", f"{index}-{i}", None, []
            )
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(producers)))
    return per_producer * producers / (time.perf_counter() - started), latencies


async def copy_rate(url: str, rows: int) -> float:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        channel_id = new_id()
        records = []
        for seq in range(1, rows + 1):
            message_id = new_id()
            records.append(
                (
                    message_id,
                    id_timestamp(message_id),
                    channel_id,
                    seq,
                    new_id(),
                    # a sealed body's size: the text plus 33 bytes of envelope
                    os.urandom(len(f"copy {seq}") + 33),
                    None,
                    None,
                    None,
                    f"c{seq}",
                )
            )
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "messages",
                records=records,
                columns=[
                    "id",
                    "created_at",
                    "channel_id",
                    "seq",
                    "user_id",
                    "body",
                    "thread_id",
                    "edited_at",
                    "deleted_at",
                    "client_msg_id",
                ],
            )
        return rows / (time.perf_counter() - started)
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, object]:
    settings = load_settings(rate_limit_api_max=0)
    db = Database(settings.effective_database_url)
    await upgrade(db)
    await db.close()
    runtime = Runtime(settings)
    await runtime.start()
    if args.encryption == "off":
        # Measurement only, never a product mode: the same path with the sealing step
        # replaced by a plain encode, so the difference is exactly what encryption costs.
        sealer = runtime.ledger.sealer
        sealer.seal_bodies = lambda items: [b.encode() for _, b in items]  # type: ignore[method-assign]
        sealer.seal_frames = lambda items: [f.encode() for _, _, f in items]  # type: ignore[method-assign]
    try:
        layout = await setup(runtime, 50, 5)
        rate, latencies = await ingest(runtime, layout, args.messages, args.producers)
    finally:
        await runtime.stop()
    latencies.sort()
    report: dict[str, object] = {
        "database": settings.effective_database_url.split("@")[-1],
        "messages": len(latencies),
        "producers": args.producers,
        "encryption": args.encryption,
        "ingest_msgs_per_s": round(rate),
        "ack_ms_p50": round(latencies[len(latencies) // 2], 2),
        "ack_ms_p99": round(latencies[int(len(latencies) * 0.99)], 2),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if settings.is_postgres:
        copy = await copy_rate(settings.effective_database_url, args.messages)
        report["copy_rows_per_s"] = round(copy)
        report["ingest_over_copy"] = round(rate / copy, 3)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--producers", type=int, default=400)
    parser.add_argument("--encryption", choices=["on", "off"], default="on")
    os.environ.setdefault("ULTRACHAT_LOG_LEVEL", "warning")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
