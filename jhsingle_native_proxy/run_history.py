"""The last RUNS_KEPT runs of the app: when each started and ended, why it ended (in words,
exit_reason.py), and its output, for the console's list and its downloads.

Bounded: RUNS_KEPT runs, each keeping its last RUN_LINES_KEPT lines and at most RUN_BYTES_KEPT
bytes of them (a line is at most process.MAX_LINE_BYTES); older lines are dropped and counted,
and the download says how many. So at most RUNS_KEPT * RUN_BYTES_KEPT (1.25 MiB) is held.

The supervisor calls `begin` before it spawns an instance (the run's output goes through the
returned `Run`, which also feeds the supervisor's own tail) and `end` when that instance is over.
"""

from __future__ import annotations

import datetime
import time
from collections import deque
from dataclasses import dataclass, field

from .app_state import Failure
from .exit_reason import MemoryCgroup, describe_end

RUNS_KEPT = 5
RUN_LINES_KEPT = 2000
RUN_BYTES_KEPT = 256 * 1024


def utc_text(t: float) -> str:
    """`2026-01-01 12:00:05 UTC`."""
    moment = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Run:
    """One instance of the app: its times, its end in words ("" while it runs), its output."""

    number: int
    started: float  # wall clock
    # The supervisor's tail of recent lines: every line goes there too.
    tail: deque[str] = field(repr=False)
    ended: float | None = None
    end: str = ""
    lines: deque[str] = field(default_factory=deque, repr=False)
    kept_bytes: int = 0
    dropped: int = 0
    oom_kills_at_start: int | None = None

    def append(self, line: str) -> None:
        """One line of the app's output (process.OutputPump calls this)."""
        self.tail.append(line)
        self.lines.append(line)
        self.kept_bytes += len(line) + 1
        while len(self.lines) > RUN_LINES_KEPT or self.kept_bytes > RUN_BYTES_KEPT:
            self.kept_bytes -= len(self.lines.popleft()) + 1
            self.dropped += 1

    def text(self) -> str:
        """The run's output as a text file."""
        head = [f"[... {self.dropped} earlier lines not kept]"] if self.dropped else []
        return "".join(line + "\n" for line in head + list(self.lines))

    def view(self) -> dict[str, object]:
        return {
            "number": self.number,
            "started": utc_text(self.started),
            "ended": utc_text(self.ended) if self.ended is not None else "",
            "end": self.end or "running",
            "lines": len(self.lines) + self.dropped,
        }


class RunHistory:
    """The last RUNS_KEPT runs, newest last."""

    def __init__(self, cgroup: MemoryCgroup | None = None, read_cgroup: bool = True):
        self.cgroup = cgroup or (MemoryCgroup.of_this_process() if read_cgroup else None)
        self.runs: deque[Run] = deque(maxlen=RUNS_KEPT)
        self._count = 0

    def begin(self, tail: deque[str]) -> Run:
        """A new run starts now; its OOM-kill count is taken before the app exists."""
        self._count += 1
        run = Run(self._count, time.time(), tail)
        run.oom_kills_at_start = self.cgroup.oom_kills() if self.cgroup else None
        self.runs.append(run)
        return run

    def end(self, run: Run, failure: Failure, stopped_for: str | None = None) -> None:
        """`run` is over: `failure` says how (its exit code, if it ran), `stopped_for` why the
        supervisor ended it ("restart asked", "idle", ...; None: it ended by itself)."""
        if run.ended is not None:
            return
        run.ended = time.time()
        if failure.code is None and not stopped_for:
            run.end = failure.reason  # never ran, or never ready: the failure's own words
            return
        oom_killed, limit = False, None
        if self.cgroup is not None and run.oom_kills_at_start is not None:
            now = self.cgroup.oom_kills()
            oom_killed = now is not None and now > run.oom_kills_at_start
            limit = self.cgroup.limit() if oom_killed else None
        run.end = describe_end(failure.code, stopped_for, oom_killed=oom_killed, limit=limit)

    def find(self, number: int) -> Run | None:
        return next((r for r in self.runs if r.number == number), None)

    def last_end(self) -> str:
        """How the latest run that ended, ended ("" if none has)."""
        return next((r.end for r in reversed(self.runs) if r.ended is not None), "")

    def view(self) -> list[dict[str, object]]:
        """The runs for the console, newest first."""
        return [r.view() for r in reversed(self.runs)]
