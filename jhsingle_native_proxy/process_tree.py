"""How much memory and CPU the app's processes use, read from /proc.

The app is not one process: Voilà starts kernels, Streamlit and Panel may start workers, and a
kernel manager puts its kernels in sessions of their own, so the app's process group misses
them. What counts is every live descendant of the app's first process (found by parent pid),
plus any member of its process group that was reparented away from it.

Read on demand (the console's poll, a metrics scrape, the usage ring's tick): one pass over
/proc costs about a millisecond for a few hundred processes, and nothing is kept between reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class TreeUsage:
    """One reading of the app's process tree."""

    # Resident memory summed over the processes (shared pages counted in each: an upper bound,
    # as `ps` and most dashboards count it).
    rss_bytes: int
    # CPU time used so far by the live processes and the children they have reaped.
    cpu_seconds: float
    # How many live processes were counted (0 when the app is not running).
    processes: int


NOTHING = TreeUsage(rss_bytes=0, cpu_seconds=0.0, processes=0)


@dataclass(frozen=True)
class _Stat:
    pid: int
    ppid: int
    pgrp: int
    state: bytes
    cpu_ticks: int
    rss_pages: int


def _read_stat(pid: str) -> _Stat | None:
    """One process's /proc/PID/stat; None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    try:
        fields = data.rsplit(b")", 1)[1].split()
        # fields[0] is field 3 of proc(5): state; utime is field 14, rss field 24.
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        return _Stat(
            pid=int(pid),
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            state=fields[0],
            cpu_ticks=utime + stime + cutime + cstime,
            rss_pages=int(fields[21]),
        )
    except (IndexError, ValueError):
        return None


def tree_usage(root_pid: int | None) -> TreeUsage:
    """Memory and CPU of `root_pid` and all its live descendants (and its process group).

    Zombies count for CPU (their time is final) but hold no memory. Returns NOTHING when
    `root_pid` is None or /proc cannot be read.
    """
    if root_pid is None:
        return NOTHING
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return NOTHING
    stats = [s for s in map(_read_stat, entries) if s is not None]
    children: dict[int, list[_Stat]] = {}
    members: list[_Stat] = []
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
        if s.pgrp == root_pid:
            members.append(s)
    seen: set[int] = set()
    todo = [s for s in stats if s.pid == root_pid] + members
    rss = ticks = 0
    while todo:
        s = todo.pop()
        if s.pid in seen:
            continue
        seen.add(s.pid)
        ticks += s.cpu_ticks
        if s.state != b"Z":
            rss += s.rss_pages * _PAGE_SIZE
        todo.extend(children.get(s.pid, ()))
    return TreeUsage(rss_bytes=rss, cpu_seconds=ticks / _TICKS, processes=len(seen))
