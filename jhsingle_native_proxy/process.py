"""The app's child process: start it in its own process group, read its output, end the group.

Nothing here knows about readiness, restarts or settings: `supervisor.py` decides when, this
module does. The child is started with asyncio's own subprocess API. simpervisor, which the
first versions used, was given up for it: we used only its start, while its restart (same
arguments at once) and its process-wide SIGTERM/SIGINT handlers (which call `sys.exit()`) had to
be switched off through its private parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("jhsingle_native_proxy")
app_log = logging.getLogger("jhsingle_native_proxy.app")

MAX_LINE_BYTES = 8192
# How often a stopping group is checked for members still alive.
GROUP_POLL = 0.05


class LineSink(Protocol):
    """Where an OutputPump puts each line: a deque, or a run's record (run_history.Run)."""

    def append(self, line: str, /) -> None: ...


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_death_signal() -> Callable[[], None] | None:
    """A function for the forked child that asks Linux to SIGKILL it when the proxy dies.

    Everything it needs (ctypes, libc, the prctl symbol) is looked up here, in the parent:
    the child runs it between fork and exec, where importing or loading a library could block
    on a lock that another thread of ours held at the fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - an unusual libc
        return None
    pr_set_pdeathsig = 1

    def ask_for_sigkill() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return ask_for_sigkill


_DIE_WITH_PARENT = _parent_death_signal()
# For the proxy's other children that must not outlive it (publish mode's git).
DIE_WITH_PARENT = _DIE_WITH_PARENT


def describe_exit(code: int) -> str:
    """An exit status as the end of "The app ...": `exited with status 1`, `was killed by ...`."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def describe_start_error(e: OSError, program: str) -> str:
    """Why the command could not be executed, for "The app could not be started: ..."."""
    if isinstance(e, FileNotFoundError):
        return f"command not found: {program}"
    return str(e.strerror or e)


class AppProcess:
    """One run of the app, the leader of its own process group; `exited` gives its status."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.pid = process.pid
        self.exited: asyncio.Future[int] = asyncio.ensure_future(process.wait())

    @classmethod
    async def start(
        cls, argv: list[str], env: dict[str, str], cwd: str | None, stdout: int, stderr: int
    ) -> AppProcess:
        """Start `argv` in a new session; raises OSError if it cannot be executed."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_DIE_WITH_PARENT,
            cwd=cwd,
            env=env,
        )
        return cls(process)

    async def end_group(self, grace: float) -> None:
        """SIGTERM the whole group, wait up to `grace` seconds, then SIGKILL what is left."""
        pgid = self.pid
        if not signal_group(pgid, signal.SIGTERM):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                break
            await asyncio.sleep(GROUP_POLL)
        else:
            log.warning("The app did not exit within %gs of SIGTERM; killing it", grace)
        signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), 5)


async def spawn_with_output(
    argv: list[str], env: dict[str, str], cwd: str | None, tail: LineSink, logs: bool
) -> tuple[AppProcess, list[asyncio.Task]]:
    """Start the app with its stdout and stderr each read by an OutputPump task.

    The pipes are our own (not asyncio's), so the pumps run for exactly this instance and
    close with it. Raises OSError when the command cannot be executed.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = await AppProcess.start(argv, env, cwd, out_w, err_w)
    except OSError:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        # The child holds its copies of the write ends; ours must go so EOF can arrive.
        for fd in (out_w, err_w):
            with contextlib.suppress(OSError):
                os.close(fd)
    pumps = [
        asyncio.create_task(OutputPump(f"app[{process.pid}] {name}", tail, logs).run(fd))
        for name, fd in (("out", out_r), ("err", err_r))
    ]
    return process, pumps


class OutputPump:
    """Reads one of the app's pipes until EOF, logging line by line and keeping the last lines.

    Read continuously for every instance, so a chatty app never blocks on a full pipe; a huge
    line is cut at MAX_LINE_BYTES.
    """

    def __init__(self, name: str, tail: LineSink, enabled: bool):
        self.name = name
        self.tail = tail
        self.enabled = enabled

    async def run(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        pending = b""
        skipping = False  # inside a line that was already cut
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if skipping:
                        skipping = False
                        continue
                    self._line(line)
                if len(pending) > MAX_LINE_BYTES:
                    if not skipping:
                        self._line(pending[:MAX_LINE_BYTES], cut=True)
                    skipping = True
                    pending = b""
            if pending and not skipping:
                self._line(pending)
        finally:
            transport.close()

    def _line(self, raw: bytes, cut: bool = False) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if cut:
            text += " [... line cut]"
        self.tail.append(text)
        if self.enabled:
            app_log.info("%s| %s", self.name, text)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    """True while any process of the group lives (zombies of our direct child excepted)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # The group leader may be a zombie we have not reaped yet; look for live members.
    try:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
        return False
    except OSError:
        return True
