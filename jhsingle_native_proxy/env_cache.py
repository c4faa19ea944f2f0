"""The cache of environments under --env-cache: one folder per cache key, the last few kept.

    <cache>/<key>/                 the environment (a venv)
    <cache>/<key>/.jhsnp-complete  written last, when the install succeeded; touched at each use
    <cache>/<key>.lock             flock: exclusive while building, shared while an app uses it

A folder without its marker is a build that did not finish (a crash, a stop, a failed
install): it is removed and built again, never used. Two proxies sharing a home never build
the same environment at once (the exclusive lock), and an environment an app of any proxy uses
is never evicted (its shared lock makes the evictor's non-blocking exclusive lock fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from collections import deque

MARKER = ".jhsnp-complete"
# Environments kept, by last use; more are removed after a build (never one in use).
KEEP = 3
# Environments this process keeps its shared lock on: the live revision's and a new one's
# (publish mode runs two apps at most); older ones may be evicted once no one uses them.
LEASES_KEPT = 2
LOCK_POLL = 0.2

_leases: deque[tuple[str, int]] = deque()


class EnvCacheError(Exception):
    """The cache folder cannot be used; str(e) is one line for the owner."""


def env_folder(cache: str, key: str) -> str:
    return os.path.join(cache, key)


def is_complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, MARKER))


def mark_complete(folder: str, about: dict) -> None:
    """Write the marker last: from now on the environment is used as it is."""
    path = os.path.join(folder, MARKER)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(about, f)
    os.replace(path + ".tmp", path)


def touch(folder: str) -> None:
    """Note a use (eviction removes the least recently used)."""
    with contextlib.suppress(OSError):
        os.utime(os.path.join(folder, MARKER))


def remove_incomplete(folder: str) -> None:
    """A build that did not finish goes (the caller holds the exclusive lock)."""
    if os.path.lexists(folder) and not is_complete(folder):
        shutil.rmtree(folder, ignore_errors=True)


def cache_problem(cache: str) -> str:
    """Why the cache folder must not be used, or "": it must be ours and closed to others, as
    whoever can write in it decides which Python the app runs with (a planted environment with
    its marker would be used as it is)."""
    info = os.stat(cache)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a folder"
    if info.st_uid != os.geteuid():
        return "it belongs to another user"
    if info.st_mode & 0o022:
        return "other users can write in it (chmod go-w, or another --env-cache)"
    return ""


def _open_lock(cache: str, key: str) -> int:
    try:
        os.makedirs(cache, mode=0o700, exist_ok=True)
        if problem := cache_problem(cache):
            raise EnvCacheError(f"cannot use the environment cache {cache}: {problem}")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        return os.open(os.path.join(cache, key + ".lock"), flags, 0o600)
    except OSError as e:
        why = e.strerror or e
        raise EnvCacheError(f"cannot use the environment cache {cache}: {why}") from None


async def lock(cache: str, key: str, exclusive: bool, timeout: float) -> int:
    """The lock file's descriptor, locked; EnvCacheError after `timeout` seconds of waiting
    (another proxy builds the same environment for longer than an install may take)."""
    fd = _open_lock(cache, key)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise EnvCacheError(
                    f"another process has been building the environment {key} for "
                    f"{timeout:g} s; try again later"
                ) from None
            await asyncio.sleep(LOCK_POLL)


def share(fd: int) -> None:
    """Turn a builder's exclusive lock into a user's shared one."""
    fcntl.flock(fd, fcntl.LOCK_SH)


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def lease(folder: str, fd: int) -> None:
    """Keep `fd`'s shared lock while the app uses `folder`: the last LEASES_KEPT are held."""
    for i, (held, old_fd) in enumerate(_leases):
        if held == folder:
            del _leases[i]
            unlock(old_fd)
            break
    _leases.append((folder, fd))
    while len(_leases) > LEASES_KEPT:
        unlock(_leases.popleft()[1])


def environments(cache: str) -> list[tuple[float, str]]:
    """(last use, key) of each complete environment, the most recently used first."""
    found = []
    try:
        names = os.listdir(cache)
    except OSError:
        return []
    for name in names:
        marker = os.path.join(cache, name, MARKER)
        with contextlib.suppress(OSError):
            found.append((os.stat(marker).st_mtime, name))
    return sorted(found, reverse=True)


def to_evict(found: list[tuple[float, str]], keep: int, in_use: str) -> list[str]:
    """The keys beyond the `keep` most recently used, never `in_use`."""
    kept = [key for _, key in found if key == in_use]
    out = []
    for _, key in found:
        if key == in_use:
            continue
        if len(kept) < keep:
            kept.append(key)
        else:
            out.append(key)
    return out


def evict(cache: str, in_use: str, keep: int = KEEP) -> list[str]:
    """Remove the environments beyond the last `keep` used, except any an app uses (anyone's
    shared lock) and `in_use`; the keys removed."""
    removed = []
    for key in to_evict(environments(cache), keep, in_use):
        try:
            fd = _open_lock(cache, key)
        except EnvCacheError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            unlock(fd)
            continue
        try:
            # The marker first: a folder without one is never used, whatever is left of it.
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(cache, key, MARKER))
            shutil.rmtree(os.path.join(cache, key), ignore_errors=True)
            removed.append(key)
        finally:
            unlock(fd)
    return removed
