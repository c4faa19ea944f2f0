"""Activity for JupyterHub's idle culler: remember the last real traffic and report it to the hub.

0.8.3 reported "now" every time, so a server was never idle and never culled. Here the time sent
is the last real traffic (a proxied request, a websocket message either way), so an idle server
looks idle; `--force-alive` brings back the old behaviour for those who want it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import aiohttp

from .background import end_task
from .settings import HUB_CALL_TIMEOUT, Settings

log = logging.getLogger("jhsingle_native_proxy")

FIRST_REPORT_AFTER = 1.0
RETRY_FIRST = 1.0


class ActivityTracker:
    """The wall-clock time of the last real traffic. `touch` is cheap enough for every message."""

    def __init__(self) -> None:
        self.last = time.time()

    def touch(self) -> None:
        self.last = time.time()


def isoformat(timestamp: float) -> str:
    """The hub's format: ISO 8601 in UTC with a Z."""
    return (
        datetime.fromtimestamp(timestamp, tz=timezone.utc)
        .replace(tzinfo=None)
        .isoformat(timespec="microseconds")
        + "Z"
    )


def activity_body(timestamp: float, server_name: str) -> dict:
    """What POST /hub/api/users/{name}/activity expects, for the default or a named server."""
    when = isoformat(timestamp)
    return {"servers": {server_name: {"last_activity": when}}, "last_activity": when}


class ActivityReporter:
    """Posts the last activity to JUPYTERHUB_ACTIVITY_URL every --last-activity-interval seconds.

    The first report goes out soon after start; a hub that is down is retried with a backoff
    (doubling up to the interval). Nothing here can stop the proxy.
    """

    def __init__(self, settings: Settings, tracker: ActivityTracker, ssl_context=None):
        self.settings = settings
        self.tracker = tracker
        self.ssl_context = ssl_context
        self.reports_sent = 0
        self._task: asyncio.Task | None = None

    @property
    def enabled(self) -> bool:
        s = self.settings
        return bool(
            s.update_last_activity
            and s.last_activity_interval > 0
            and s.hub.activity_url
            and s.hub.api_token
        )

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await end_task(self._task)

    async def _run(self) -> None:
        s = self.settings
        interval = s.last_activity_interval
        timeout = aiohttp.ClientTimeout(total=s.aiohttp_request_timeout or HUB_CALL_TIMEOUT)
        ssl = False if s.aiohttp_no_ssl_connector else (self.ssl_context or True)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.sleep(min(FIRST_REPORT_AFTER, interval))
            while True:
                retry = RETRY_FIRST
                when = time.time() if s.force_alive else self.tracker.last
                while not await self._post(session, when, ssl):
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, interval)
                await asyncio.sleep(interval)

    async def _post(self, session: aiohttp.ClientSession, when: float, ssl) -> bool:
        hub = self.settings.hub
        try:
            async with session.post(
                hub.activity_url,
                json=activity_body(when, hub.server_name),
                headers={"Authorization": f"token {hub.api_token}"},
                ssl=ssl,
            ) as response:
                if response.status < 400:
                    self.reports_sent += 1
                    log.info("Reported activity at %s to the hub", isoformat(when))
                    return True
                log.warning(
                    "The hub refused the activity report: %d %s",
                    response.status,
                    (await response.text())[:200],
                )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            log.warning("Cannot report activity to the hub (%s); retrying", e or type(e).__name__)
        return False
