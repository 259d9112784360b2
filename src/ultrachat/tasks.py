"""Small asyncio helpers every long-lived background task shares."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

# How long to wait for a cancelled task before cancelling it again.
CANCEL_AGAIN_SECONDS = 0.1


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if there is one) and wait until it has really finished, so that a
    stopping service never leaves its loop running into the closed resources behind it.

    One cancel is not always enough. redis-py can swallow a ``CancelledError`` that lands
    inside one of its commands, and the task's loop then simply goes on: cancelling a loop of
    PUBLISHes at random moments, half of the tasks needed 2 to 7 cancels. A server whose
    send admission probed Redis four times a second hung in shutdown that way. So this
    cancels again until the task has finished."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task
