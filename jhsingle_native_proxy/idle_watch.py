"""Sleeping apps (`--idle-stop`) and idle shutdown (`--idle-shutdown`): a periodic look at
whether anyone uses the app, and what to do when nobody has for long enough.

Use is what the activity tracker records (a proxied request, a websocket message either way;
our own endpoints, the hub's probes and --activity-exclude paths leave it alone), or an open
connection to the app (`AppSupervisor.connections`): a websocket open without a message is in
use, so the app is never stopped under it.

The app sleeps through the supervisor's own life cycle (`AppSupervisor.sleep`: its group ended,
SLEEPING until the next request wakes it); a woken app counts as used from when it is ready
again, so the visit that woke it finds it there. The server's shutdown is the one SIGTERM gives
(serve's stop event). The look runs every tenth of the shorter timeout (0.2 s to 30 s): it costs
a few attribute reads, and nothing here waits unbounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .app_state import AppState
from .background import end_task
from .sleep_options import SleepSettings

log = logging.getLogger("jhsingle_native_proxy")

CHECK_MIN = 0.2
CHECK_MAX = 30.0


def check_interval(sleep: SleepSettings) -> float:
    """How often to look: a tenth of the shorter timeout, within CHECK_MIN and CHECK_MAX."""
    shortest = min(t for t in (sleep.idle_stop, sleep.idle_shutdown) if t)
    return min(CHECK_MAX, max(CHECK_MIN, shortest / 10))


class IdleWatch:
    """Puts the app to sleep, or the server to an end, after the configured time without use.

    `services` is the server's (base.Services): its `supervisor` is read at each look, so in
    publish mode it is always the live revision's; `shutdown` is the event serve() waits on.
    """

    def __init__(self, sleep: SleepSettings, services: Any, shutdown: asyncio.Event):
        self.sleep = sleep
        self.services = services
        self.shutdown = shutdown
        # The last time a connection to the app was seen open (wall clock).
        self.open_at = time.time()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.sleep.watched:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await end_task(self._task)

    def last_use(self, now: float) -> float:
        """The last time the app was used: its last activity, or now if a connection is open."""
        if self.services.supervisor.connections:
            self.open_at = now
        return max(self.services.activity.last, self.open_at)

    async def check(self, now: float | None = None) -> None:
        """One look: end the server, or put the app to sleep, if it has been idle long enough."""
        now = time.time() if now is None else now
        sleep, supervisor = self.sleep, self.services.supervisor
        last = self.last_use(now)
        if sleep.idle_shutdown and now - last >= sleep.idle_shutdown:
            log.info("Nobody has used the app for %.0f s: shutting down", now - last)
            self.shutdown.set()
            return
        if not sleep.idle_stop or supervisor.state is not AppState.READY:
            return
        # The request that woke it (or started it) counts from when the app became ready.
        since = max(last, supervisor.status().ready_since or 0.0)
        if now - since >= sleep.idle_stop:
            await supervisor.sleep()

    async def _run(self) -> None:
        interval = check_interval(self.sleep)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:  # a bug of ours must not end the watch, nor the server
                log.exception("The idle check failed")
