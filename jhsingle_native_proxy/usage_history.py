"""The app's memory, CPU and requests per minute over the last hour, for the console's chart, and
its memory and CPU right now.

A bounded ring: one sample every SAMPLE_INTERVAL seconds, the last KEPT_SECONDS of them (a deque
with a fixed maxlen, so it never grows past SAMPLES_KEPT). A task the server starts takes the
samples (`tree_usage` of the app's current pid: one pass over /proc, about a millisecond) and
the count of proxied requests, which app.log_request increments.

CPU is a percentage of one core: the tree's CPU seconds used between two readings over the wall
seconds between them (so a busy app on 2 cores can show 200 %). A reading of a new pid (the app
restarted) counts the new tree's whole CPU time: it started after the previous reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .background import end_task
from .exit_reason import describe_bytes
from .process_tree import tree_usage

log = logging.getLogger("jhsingle_native_proxy")

SAMPLE_INTERVAL = 15.0
KEPT_SECONDS = 3600.0
SAMPLES_KEPT = int(KEPT_SECONDS // SAMPLE_INTERVAL)
# The live reading's CPU is over at least this many seconds, and polls closer than this share
# the reading itself: one scan of /proc (every process on the machine, ~10 µs each, on the event
# loop) per window, however many viewers poll console.json and usage.json, and how often.
LIVE_CPU_WINDOW = 1.0


@dataclass(frozen=True)
class Sample:
    time: float  # wall clock, seconds since the epoch
    rss_bytes: int
    cpu_percent: float
    requests_per_minute: float


class CpuMeter:
    """CPU percent of one core between consecutive readings at least `window` seconds apart."""

    def __init__(self, window: float):
        self.window = window
        self._last: tuple[float, int | None, float] | None = None  # (monotonic, pid, cpu s)
        self._percent = 0.0

    def percent(self, pid: int | None, cpu_seconds: float, now: float) -> float:
        if self._last is not None and now - self._last[0] < self.window:
            return self._percent
        if self._last is not None and pid is not None:
            then, last_pid, last_cpu = self._last
            used = cpu_seconds - last_cpu if pid == last_pid else cpu_seconds
            self._percent = round(max(0.0, used) / (now - then) * 100.0, 1)
        self._last = (now, pid, cpu_seconds)
        return self._percent if pid is not None else 0.0


class UsageHistory:
    """The ring of samples, the proxied-request counter and the live reading."""

    def __init__(self, size: int = SAMPLES_KEPT):
        self.samples: deque[Sample] = deque(maxlen=size)
        # Requests proxied to the app so far (app.log_request counts them).
        self.requests = 0
        self._sample_cpu = CpuMeter(0.0)
        self._live_cpu = CpuMeter(LIVE_CPU_WINDOW)
        self._last_requests: tuple[float, int] | None = None
        self._last_live: tuple[float, int | None, dict[str, object]] | None = None
        self._task: asyncio.Task | None = None

    def take_sample(self, pid: int | None, now: float | None = None) -> Sample:
        """Read the app's tree now and add one sample to the ring."""
        now = time.monotonic() if now is None else now
        usage = tree_usage(pid)
        cpu = self._sample_cpu.percent(pid, usage.cpu_seconds, now)
        per_minute = 0.0
        if self._last_requests is not None and now > self._last_requests[0]:
            then, count = self._last_requests
            per_minute = round((self.requests - count) / (now - then) * 60.0, 1)
        self._last_requests = (now, self.requests)
        sample = Sample(time.time(), usage.rss_bytes, cpu, per_minute)
        self.samples.append(sample)
        return sample

    def live(self, pid: int | None, now: float | None = None) -> dict[str, object]:
        """The app's memory and CPU now, for console.json (the same reading for LIVE_CPU_WINDOW
        seconds, while the pid is the same)."""
        now = time.monotonic() if now is None else now
        if self._last_live is not None:
            then, last_pid, reading = self._last_live
            if last_pid == pid and 0 <= now - then < LIVE_CPU_WINDOW:
                return dict(reading)
        usage = tree_usage(pid)
        cpu = self._live_cpu.percent(pid, usage.cpu_seconds, now)
        reading = {
            "memory_bytes": usage.rss_bytes,
            "memory": describe_bytes(usage.rss_bytes) if usage.processes else "—",
            "cpu_percent": cpu,
            "cpu": f"{cpu:g} %" if usage.processes else "—",
            "processes": usage.processes,
        }
        self._last_live = (now, pid, reading)
        return dict(reading)

    def view(self) -> dict[str, object]:
        """The ring as JSON: [time, memory bytes, CPU %, requests per minute] per sample."""
        return {
            "interval": SAMPLE_INTERVAL,
            "requests": self.requests,
            "samples": [
                [round(s.time, 1), s.rss_bytes, s.cpu_percent, s.requests_per_minute]
                for s in self.samples
            ],
        }

    def start(self, current_pid: Callable[[], int | None]) -> None:
        """Sample every SAMPLE_INTERVAL seconds (the first at once) until `stop`."""
        self._task = asyncio.create_task(self._sample_forever(current_pid))

    async def stop(self) -> None:
        await end_task(self._task)

    async def _sample_forever(self, current_pid: Callable[[], int | None]) -> None:
        while True:
            try:
                self.take_sample(current_pid())
            except Exception:  # a reading must never end the sampling
                log.exception("Could not sample the app's usage")
            await asyncio.sleep(SAMPLE_INTERVAL)
