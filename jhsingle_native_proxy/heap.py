"""Give the C heap's free memory back to the system after a burst of traffic.

Why (issue 18): 500 uploads aborted at 1 MiB, 25 senders at a time, took the proxy's RSS from
43 to ~125 MiB, and six such rounds to 123-158 MiB, where it stayed. Nothing leaked: descriptors
and Python objects went back to where they were, and so did the C heap's bytes in use (glibc's
`mallinfo2`: ~12 MiB). What stayed was *free* memory that glibc kept (60-130 MiB of it). A sender
that aborts is gone as soon as its bytes sit in the kernel's buffers, so far more uploads are in
flight in the proxy than there are senders; their 64 KiB body chunks and buffers, all above
CPython's small-object size, come from glibc's heap, and the small allocations that outlive them
pin that heap, so glibc can give back only its top.

Measured and not enough: fewer arenas (`MALLOC_ARENA_MAX=1` or `2`: no change; the memory is in
the main arena, not the threads'); a fixed mmap threshold (64 KiB: no bound; 32 KiB: nearly,
for an mmap, 16 page faults and a munmap per body chunk); freeing aborted requests at once
(tornado leaves a handler whose streamed body was cut short in reference cycles until a full
collection: 8-10 MiB per 500, and breaking them takes tornado's private parts). `malloc_trim(0)`
also returns the free pages inside the heap: the RSS went back to 52-59 MiB after every round,
for 3-20 ms per trim of 60-80 MiB.

So: every TRIM_INTERVAL seconds, read our RSS (one read of /proc/self/statm); when it is
TRIM_GROWTH above the lowest it has been, trim. Idle or steady traffic costs a /proc read; a
burst costs a trim. Without glibc's `malloc_trim` or /proc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable

from .background import end_task

log = logging.getLogger("jhsingle_native_proxy")

TRIM_INTERVAL = 2.0
TRIM_GROWTH = 16 * 2**20
TRIM_MAX_WAIT = 64.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory, or None where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """Trims the heap when the RSS is `growth` bytes above the lowest it has been.

    When a trim gives back less than half of `growth`, the memory is in use: another trim comes
    only once the RSS has grown by `growth` again (a new burst) or after a wait that doubles each
    time (up to `max_wait`), so a process that needs its memory pays for a trim a minute at most.
    """

    def __init__(
        self,
        trim: Callable[[], object] | None,
        resident: Callable[[], int | None] = resident_bytes,
        growth: int = TRIM_GROWTH,
        max_wait: float = TRIM_MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._trim, self._resident, self._clock = trim, resident, clock
        self.growth, self.max_wait = growth, max_wait
        self._low = resident() if trim is not None else None
        self._after_trim: int | None = None  # the RSS a trim that freed little left
        self._wait = TRIM_INTERVAL
        self._not_before = 0.0
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None and self._low is not None

    def check(self) -> bool:
        """Trim if the RSS has grown enough; True when it trimmed."""
        now = self._resident() if self.enabled else None
        if now is None or self._trim is None or self._low is None:
            return False
        self._low = min(self._low, now)
        if now < self._low + self.growth:
            self._after_trim, self._wait = None, TRIM_INTERVAL
            return False
        new_burst = self._after_trim is None or now >= self._after_trim + self.growth
        if not new_burst and self._clock() < self._not_before:
            return False
        self._trim()
        after = self._resident() or now
        self.trims += 1
        log.debug("Gave %d MiB of free heap back to the system", (now - after) >> 20)
        if now - after >= self.growth // 2:
            self._after_trim, self._wait = None, TRIM_INTERVAL
        else:
            self._after_trim, self._wait = after, min(self._wait * 2, self.max_wait)
        self._not_before = self._clock() + self._wait
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL)
            self.check()


def start_heap_trimmer() -> asyncio.Task | None:
    """The trimmer as a task of the running loop, or None where it cannot work."""
    trimmer = HeapTrimmer(malloc_trim())
    if not trimmer.enabled:
        return None
    return asyncio.ensure_future(trimmer.run())


async def stop_heap_trimmer(task: asyncio.Task | None) -> None:
    await end_task(task)
