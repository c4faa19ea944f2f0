"""Is the app answering yet? Probes until it does, it exits, or `--ready-timeout` passes.

A probe is a plain HTTP request on a fresh connection, read up to its status line, so the
supervisor needs no HTTP client of its own: the app is launched before the proxy's client is
even imported (see server.py). Any status counts: a 404 or a 500 still means it is serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from .settings import Settings

# Characters the probe sends as they are in its request target; others are escaped.
_TARGET_SAFE = "/?&=%:@!$'()*+,;~-._"
FIRST_INTERVAL = 0.02
MAX_INTERVAL = 0.5
# One probe waits at most this long for a connection and a status line.
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class AppAddress:
    unix_socket: str  # "" for TCP on 127.0.0.1
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_socket:
            return await asyncio.open_unix_connection(self.unix_socket)
        return await asyncio.open_connection("127.0.0.1", self.port)

    @property
    def host(self) -> str:
        return "localhost" if self.unix_socket else f"127.0.0.1:{self.port}"


async def answers(address: AppAddress, path: str, raw: bool, timeout: float) -> bool:
    """One probe: any HTTP response at `path` (for a raw socket app: a connection)."""
    deadline = time.monotonic() + timeout
    writer = None
    try:
        reader, writer = await asyncio.wait_for(address.connect(), timeout)
        if raw:
            return True
        target = urllib.parse.quote(path, safe=_TARGET_SAFE)
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {address.host}\r\n"
            "User-Agent: jhsingle-native-proxy readiness probe\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        status_line = await asyncio.wait_for(
            reader.readline(), max(deadline - time.monotonic(), 0.001)
        )
        return status_line.startswith(b"HTTP/")
    except (asyncio.TimeoutError, OSError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()


async def wait_until_ready(
    address: AppAddress,
    settings: Settings,
    exited: asyncio.Future,
    stopping: Callable[[], bool],
) -> bool:
    """Probe, more and more slowly, until an answer (True), or the app exits, the server stops
    or `ready_timeout` passes (False)."""
    deadline = time.monotonic() + settings.ready_timeout
    interval = FIRST_INTERVAL
    while not stopping() and not exited.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        probe_time = min(remaining, PROBE_TIMEOUT)
        if await answers(address, settings.ready_check_path, settings.raw_socket_proxy, probe_time):
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(exited), min(interval, max(deadline - time.monotonic(), 0))
            )
        interval = min(interval * 1.5, MAX_INTERVAL)
    return False
