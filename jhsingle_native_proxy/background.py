"""The server's background tasks (the activity reporter, the idle watch, the usage sampler, the
heap trimmer): ending one the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib


async def end_task(task: asyncio.Task | None) -> None:
    """Cancel `task` (None: nothing to end) and wait until it has ended, so nothing it does
    outlives the server's shutdown."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
