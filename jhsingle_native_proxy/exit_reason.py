"""Why a run of the app ended, in words for its owner: "killed by the kernel: out of memory
(limit 2 GiB)", "exited with status 1", "killed by signal 9 (SIGKILL)", "stopped: restart asked".

An OOM kill looks like any SIGKILL from the outside. The kernel counts its OOM kills per memory
cgroup, and the app runs in the proxy's own cgroup (the same container), so the count is read
from the proxy's cgroup when a run starts and again when it ends: if it grew and the app died of
SIGKILL, the kernel killed it for memory. The limit said is the smallest one on the way up from
our cgroup (a container's limit is often set on a parent).

cgroup v2: `memory.events` (`oom_kill N`, counted over the subtree) and `memory.max`.
cgroup v1: `memory.oom_control` (`oom_kill N`) and `memory.limit_in_bytes`.
Where neither can be read (no cgroup, another OS) nothing is said about memory: plain words.

The parsing functions are pure (unit-tested with both versions' file contents); `MemoryCgroup`
reads the files.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

# A v1 "no limit" is a page-rounded 2**63; anything this large is no limit either.
_NO_LIMIT_FROM = 1 << 60


def parse_memory_cgroup_path(proc_cgroup: str) -> tuple[int, str] | None:
    """From /proc/self/cgroup: (1, path) of the v1 memory controller, else (2, path) of the v2
    hierarchy (`0::/path`), else None."""
    unified = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if "memory" in controllers.split(","):
            return 1, path
        if number == "0" and controllers == "":
            unified = (2, path)
    return unified


def parse_cgroup_mounts(mountinfo: str) -> dict[int, tuple[str, str]]:
    """From /proc/self/mountinfo: {version: (root inside the hierarchy, mount point)} of the v1
    memory controller's mount and of the cgroup2 mount (the first of each)."""
    found: dict[int, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3:
            continue
        fstype, options = after[0], after[2].split(",")
        root, point = fields[3], fields[4].replace("\\040", " ")
        if fstype == "cgroup2":
            found.setdefault(2, (root, point))
        elif fstype == "cgroup" and "memory" in options:
            found.setdefault(1, (root, point))
    return found


def cgroup_directory(path: str, root: str, mount_point: str) -> str | None:
    """Where the cgroup `path` (as /proc/self/cgroup says it) is under `mount_point`, whose
    hierarchy starts at `root` (a container's cgroup namespace shows its own cgroup as `/`)."""
    root = root.rstrip("/")
    if ".." in path.split("/") or path != root and not path.startswith(root + "/"):
        return None  # outside the mounted part (`/..` in a namespace): not ours to read
    inside = path[len(root) :].strip("/")
    return os.path.join(mount_point, inside) if inside else mount_point


def parse_oom_kills(text: str) -> int | None:
    """The `oom_kill N` line of v2's memory.events or v1's memory.oom_control."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def parse_limit(text: str) -> int | None:
    """memory.max (`max` or bytes) or memory.limit_in_bytes: bytes, or None for no limit."""
    value = text.strip()
    if not value.isdigit():
        return None
    n = int(value)
    return None if n >= _NO_LIMIT_FROM else n


def describe_bytes(n: float) -> str:
    """`2 GiB`, `400 MiB`, `1.5 GiB`, `512 KiB`: a size for people."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            text = f"{n:.1f}".removesuffix(".0") if unit != "B" else str(int(n))
            return f"{text} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def describe_signal(number: int) -> str:
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"killed by signal {number}"


def describe_end(
    code: int | None,
    stopped_for: str | None = None,
    *,
    oom_killed: bool = False,
    limit: int | None = None,
) -> str:
    """The words for one run's end. `code`: its exit status (negative: the signal), None if it
    never ran; `stopped_for`: why the supervisor stopped it ("restart asked", "idle", ...), None
    if it ended on its own; `oom_killed`: the cgroup's OOM-kill count grew during the run.

    An OOM kill wins over a stop (the SIGKILL was the kernel's, not ours)."""
    killed = code is not None and code in (-signal.SIGKILL, 128 + signal.SIGKILL)
    if oom_killed and killed:
        where = f" (limit {describe_bytes(limit)})" if limit is not None else ""
        return f"killed by the kernel: out of memory{where}"
    if stopped_for:
        return f"stopped: {stopped_for}"
    if code is None:
        return "did not run"
    if code < 0:
        return describe_signal(-code)
    return f"exited with status {code}"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(65536)
    except OSError:
        return None


@dataclass(frozen=True)
class MemoryCgroup:
    """The proxy's memory cgroup (its directory and version), for OOM kills and the limit."""

    version: int
    directory: str
    mount_point: str

    @classmethod
    def of_this_process(cls) -> MemoryCgroup | None:
        """Ours, or None where there is none to read."""
        own, mounts = _read("/proc/self/cgroup"), _read("/proc/self/mountinfo")
        if own is None or mounts is None:
            return None
        found = parse_memory_cgroup_path(own)
        if found is None or found[0] not in (mounted := parse_cgroup_mounts(mounts)):
            return None
        version, path = found
        root, point = mounted[version]
        directory = cgroup_directory(path, root, point)
        events = "memory.events" if version == 2 else "memory.oom_control"
        if directory is None or not os.path.exists(os.path.join(directory, events)):
            return None
        return cls(version, directory, point)

    def oom_kills(self) -> int | None:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        text = _read(os.path.join(self.directory, name))
        return None if text is None else parse_oom_kills(text)

    def limit(self) -> int | None:
        """The smallest memory limit from our cgroup up to the hierarchy's mounted root."""
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        smallest = None
        directory = self.directory
        while True:
            text = _read(os.path.join(directory, name))
            value = None if text is None else parse_limit(text)
            if value is not None and (smallest is None or value < smallest):
                smallest = value
            if os.path.normpath(directory) == os.path.normpath(self.mount_point):
                return smallest
            parent = os.path.dirname(directory)
            if parent == directory:
                return smallest
            directory = parent
