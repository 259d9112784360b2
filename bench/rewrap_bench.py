"""The re-wrap job's speed: rows re-encrypted per second after ``keys rotate-data``.

Fills the database with messages through the group committer (each message is a sealed body
and a sealed event frame), makes a new primary data key, and runs the re-wrap job to the end
with no grace period, timing each sealed column.

    ULTRACHAT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/uc_bench \\
    ULTRACHAT_MASTER_KEY=$(uv run ultrachat keys generate-master) \\
        uv run python bench/rewrap_bench.py --messages 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime

from ultrachat.config import load_settings
from ultrachat.crypto.rewrap import Progress, RewrapJob
from ultrachat.gateway.runtime import Runtime
from ultrachat.storage import Database, new_id
from ultrachat.storage.migrate import upgrade


async def fill(runtime: Runtime, messages: int, producers: int = 200) -> None:
    from ultrachat.chat.schemas import ChannelCreate

    async def exist(user_ids: object) -> set[str]:
        return set(user_ids)  # type: ignore[call-overload]

    runtime.users.existing = exist  # type: ignore[method-assign]
    layout = []
    for _ in range(20):
        users = [new_id() for _ in range(5)]
        channel, _ = await runtime.channels.create(
            users[0], ChannelCreate(name="bench", kind="public", member_ids=users[1:])
        )
        layout.append((channel["id"], users))

    async def producer(index: int) -> None:
        channel_id, users = layout[index % len(layout)]
        for i in range(messages // producers):
            body = f"message {index}-{i} with a body of a typical length for chat, about 80 chars"
            await runtime.committer.submit(users[index % 5], channel_id, body, None, None, [])

    await asyncio.gather(*(producer(i) for i in range(producers)))


async def main(args: argparse.Namespace) -> dict[str, object]:
    settings = load_settings(rate_limit_api_max=0, rewrap_batch_size=args.batch)
    db = Database(settings.effective_database_url)
    await upgrade(db)
    await db.close()
    runtime = Runtime(settings)
    await runtime.start()
    try:
        started = time.perf_counter()
        await fill(runtime, args.messages)
        fill_seconds = time.perf_counter() - started
        await runtime.data_keys.rotate("benchmark")
        timings: dict[str, float] = {}
        last = {"at": time.perf_counter()}

        def timed(progress: Progress) -> None:
            if progress.finished and progress.column not in timings:
                now = time.perf_counter()
                timings[progress.column] = now - last["at"]
                last["at"] = now

        job = RewrapJob(
            runtime.db,
            runtime.data_keys,
            owner="bench",
            batch_size=args.batch,
            on_progress=timed,
        )
        last["at"] = time.perf_counter()
        results = await job.run()
    finally:
        await runtime.stop()
    return {
        "database": settings.effective_database_url.split("@")[-1],
        "messages": args.messages,
        "fill_seconds": round(fill_seconds, 1),
        "batch": args.batch,
        "columns": {
            r.column: {
                "rows": r.rewrapped,
                "seconds": round(timings.get(r.column, 0.0), 2),
                "rows_per_s": round(r.rewrapped / timings[r.column])
                if timings.get(r.column)
                else None,
            }
            for r in results
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    os.environ.setdefault("ULTRACHAT_LOG_LEVEL", "warning")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
