"""The app's life: start it, know when it is ready, restart it when it ends, and end it for good.

Guarantees:
- The app starts in its own session (and so its own process group); stopping sends SIGTERM to the
  whole group, waits `shutdown_grace` seconds, then SIGKILLs what is left. `sh -c 'app & wait'` and
  apps that ignore SIGTERM leave nothing behind. On Linux the app also gets SIGKILL if the proxy
  itself dies without a chance to clean up (PR_SET_PDEATHSIG).
- Ready means: any HTTP response at `ready_check_path` within `ready_timeout`. An app that is not
  ready in time is killed and reported as failed; the next request starts it again.
- An app that exits, with status 0 or not, is restarted after an exponential backoff (so a crash
  loop cannot spin), and must become ready again.
- The app's stdout and stderr are read continuously through pipes of our own, for every instance,
  so a chatty app never blocks on a full pipe; huge lines are cut, and the last lines are kept for
  the error page.

simpervisor starts and reaps each instance. Its own restart-on-crash is switched off: it restarts
at once with the same arguments, while we need a backoff and, with `--destport 0`, a fresh port.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.parse
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from simpervisor import SupervisedProcess, atexitasync

from .command import TemplateError, substitute, substitute_all
from .proxy.headers import header_problem
from .serverproxy import CALLABLE_ARGUMENTS, ConfigError, call_with_arguments
from .settings import Settings

log = logging.getLogger("jhsingle_native_proxy")
app_log = logging.getLogger("jhsingle_native_proxy.app")

# simpervisor installs process-wide SIGTERM/SIGINT handlers that forward the signal to the child
# and call sys.exit() from inside the handler. The server owns shutdown (stop accepting, end the
# whole process group with a grace period, then exit), so those handlers must never be installed.
atexitasync.signal_handler_set = True

OUTPUT_LINES_KEPT = 50
# Characters the readiness probe sends as they are in its request target; others are escaped.
_TARGET_SAFE = "/?&=%:@!$'()*+,;~-._"
# Variables that may hold the repository's credentials: for the checkout's stdin only, never in
# the environment of the checkout child or of the app.
REPO_SECRET_VARIABLES = frozenset({"JHSNP_REPO", "JHSNP_REPO_TOKEN"})
MAX_LINE_BYTES = 8192
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# An instance that had been ready this long is restarted at once when it ends, and resets the
# backoff; one that ends sooner (a crash loop at start) waits BACKOFF_FIRST, doubling.
STABLE_AFTER = 2.0


class AppState(enum.Enum):
    WAITING = "waiting"  # not started yet: the command needs the first request ({origin_host})
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class Failure:
    """Why the app is not running, for the error page and the logs."""

    reason: str
    output: list[str] = field(default_factory=list)
    # True if the app ran and exited: it is restarted by itself, after a backoff. Otherwise
    # (not prepared, not started, never ready) the next request retries.
    exited: bool = False
    # When the automatic restart is due (monotonic clock); None until one is scheduled.
    retry_at: float | None = None


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it if the proxy dies."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # pragma: no cover - best effort only
            pass


def describe_error(e: BaseException) -> str:
    """An unexpected exception as a short phrase for the failure page (the log has the rest)."""
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    return f"an internal error ({type(e).__name__}); the server log says more"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


class _AppProcess(SupervisedProcess):
    """One run of the app. Resolves `exited` with the exit status instead of restarting itself."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def _restart_process_if_needed(self) -> None:
        code = await self.proc.wait()
        with contextlib.suppress(ValueError):
            atexitasync.remove_handler(self._handle_signal)
        self.running = False
        if not self.exited.done():
            self.exited.set_result(code)


class OutputPump:
    """Reads one of the app's pipes until EOF, logging line by line and keeping the last lines."""

    def __init__(self, name: str, tail: deque[str], enabled: bool):
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


class AppSupervisor:
    """Keeps the app running and tells the proxy where it is and whether it is ready."""

    def __init__(
        self,
        settings: Settings,
        unix_socket: str = "",
        environ: dict[str, str] | None = None,
        resolve_command=None,
    ):
        """`environ` is the app's environment (the conda environment's, if any, activated at
        start-up); `resolve_command` turns the command's first word into a path in it."""
        self.settings = settings
        self.base_environ = dict(settings.environ if environ is None else environ)
        self.resolve_command = resolve_command or (lambda argv, env: argv)
        # The app's unix socket path, or "" for TCP on 127.0.0.1.
        self.unix_socket = unix_socket
        self.state = AppState.WAITING
        self.failure: Failure | None = None
        self.port: int | None = None
        self.origin_host: str | None = None
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        # Headers every request to the app carries (--request-header, request_headers_override).
        self.request_headers: list[tuple[str, str]] = []
        # What happens now, for the progress page: a phase and its latest lines.
        self.phase = "Waiting for the first visit" if settings.starts_at_first_request else ""
        self.progress: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        # The app's environment, once prepared (checkout done, conda environment activated).
        self.app_environ: dict[str, str] | None = None
        self._changed = asyncio.Event()
        # Set once the first start is under way (the app spawned, or a checkout begun) or has
        # ended early: the server waits for it before its own heavy imports, so both overlap.
        self.launched = asyncio.Event()
        self._kick = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._process: _AppProcess | None = None
        self._checkout_process: asyncio.subprocess.Process | None = None

    # -- what the proxy asks ------------------------------------------------------------------

    def start(self) -> None:
        """Start the lifecycle at launch (unless the command waits for the first request)."""
        if not self.settings.starts_at_first_request:
            self._ensure_task()

    @property
    def started(self) -> bool:
        """Whether the lifecycle runs (it waits for the first request otherwise)."""
        return self._task is not None

    def request_arrived(self, host: str) -> None:
        """A request wants the app: start it if it waits for one, retry it if it failed."""
        if self.origin_host is None:
            self.origin_host = host
        if self._task is None:
            self._ensure_task()
        elif self.state is AppState.FAILED and self.failure and not self.failure.exited:
            # Starting again from now on: this request already sees the progress page.
            # `failure` stays, so that page can say what went wrong last time.
            self._set_state(AppState.STARTING)
            self._kick.set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the app is ready (True), or it failed or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        while self.state not in (AppState.READY, AppState.FAILED, AppState.STOPPED):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return self.state is AppState.READY

    async def stop(self) -> None:
        """End the app and everything it started; no restart after this."""
        self._stopping = True
        self._kick.set()
        if self._checkout_process is not None:
            # A checkout under way ends now (git included); the next start repairs it.
            _signal_group(self._checkout_process.pid, signal.SIGKILL)
        if self._process is not None and self._process.pid:
            await self._end_group(self._process)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_state(AppState.STOPPED)

    # -- the lifecycle --------------------------------------------------------------------------

    def _ensure_task(self) -> None:
        if self._task is None:
            self._set_state(AppState.STARTING)
            self._task = asyncio.create_task(self._lifecycle())

    def _set_state(self, state: AppState) -> None:
        self.state = state
        # Wake every waiter, then give later waiters a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _lifecycle(self) -> None:
        restarts = 0
        while not self._stopping:
            self._set_state(AppState.STARTING)
            try:
                failure, up_for = await self._run_once()
            except Exception as e:
                # A bug of ours or an environment we did not foresee must end in the failed
                # state, never in a lifecycle task that died with the state left "starting".
                log.exception("The app could not be started")
                failure, up_for = Failure(f"could not be started: {describe_error(e)}", []), 0.0
            self.launched.set()
            if self._stopping:
                break
            if not failure.exited:
                # Failed to start or never ready: wait for a request before trying again.
                self.failure = failure
                self._set_state(AppState.FAILED)
                self._kick.clear()
                await self._kick.wait()
                restarts = 0
                continue
            if up_for >= STABLE_AFTER:
                # It had been serving: a crash or an OOM kill, not a start that cannot work.
                # Back at once, as 0.8.3 did; the backoff is for apps that die while starting.
                restarts, delay = 0, 0.0
            else:
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**restarts)
                restarts += 1
            failure.retry_at = time.monotonic() + delay
            self.failure = failure
            self._set_state(AppState.FAILED)
            if delay:
                log.warning("Restarting the app in %.1f s", delay)
                await asyncio.sleep(delay)
            else:
                log.warning("Restarting the app now: it had been serving for %.0f s", up_for)

    @property
    def origin(self) -> str:
        """The app's HTTP origin for the pooled client (its host is ignored on a unix socket)."""
        if self.unix_socket:
            return "http://localhost"
        return f"http://127.0.0.1:{self.port}"

    def _build(self, port: int) -> tuple[list[str], dict[str, str], list[tuple[str, str]]]:
        """The command, environment and request headers for one start, templates filled in.

        Callables from a config file or plugin are called here, at each start, with the
        arguments they ask for, as jupyter-server-proxy does.
        """
        s = self.settings
        values = self._substitutions(port)
        arguments = {k: values[k] for k in CALLABLE_ARGUMENTS}

        def resolved(value, what: str):
            if callable(value):
                value = call_with_arguments(value, arguments, what)
            return value

        command = (
            resolved(s.command_factory, "the server's command")
            if s.command_factory
            else list(s.command)
        )
        if not isinstance(command, (list, tuple)) or not all(isinstance(a, str) for a in command):
            raise ConfigError(f"the server's command must give a list of strings, not {command!r}")
        argv = substitute_all(command, values)
        env = dict(self.app_environ or {})
        extra = {
            **_mapping(resolved(s.server_env, "the server's environment"), "environment"),
            **s.env,
        }
        env.update({k: substitute(str(v), values) for k, v in extra.items()})
        headers = {
            **_mapping(
                resolved(s.server_request_header, "the server's request_headers_override"),
                "request_headers_override",
            ),
            **s.request_header,
        }
        header_list = [(k, substitute(str(v), values)) for k, v in headers.items()]
        for name, value in header_list:
            if problem := header_problem(name, value):
                raise ConfigError(f"the server's request_headers_override: {problem}")
        return self.resolve_command(argv, env), env, header_list

    def _substitutions(self, port: int) -> dict[str, object]:
        s = self.settings
        return {
            "port": port,
            "base_url": s.base_url,
            "unix_socket": self.unix_socket,
            "presentation_path": s.presentation_abspath,
            "presentation_basename": os.path.basename(s.presentation_abspath),
            "presentation_dirname": os.path.dirname(s.presentation_abspath)
            if s.presentation_abspath
            else "",
            "origin_host": self.origin_host or "",
            "repofolder": s.repofolder,
        }

    def recent_lines(self, count: int = 30) -> list[str]:
        """What the progress page shows: preparation steps, then the app's latest output."""
        return (list(self.progress) + list(self.output))[-count:]

    def _progress_line(self, line: str) -> None:
        """Add a progress line; a percentage update replaces the line it updates (as a terminal
        would with a carriage return), so the page shows git's progress without a flood."""
        line = line.rstrip()
        if not line:
            return
        if self.progress and ":" in line:
            head = line.split(":", 1)[0]
            last = self.progress[-1]
            if last.split(":", 1)[0] == head and "%" in line and "%" in last:
                self.progress[-1] = line
                return
        self.progress.append(line)

    async def _prepare(self) -> Failure | None:
        """Before the first start: the git checkout and the conda environment, once.

        Runs again after a failure, when the next request (or the page's retry button) asks.
        """
        s = self.settings
        self.progress.clear()
        if s.repo:
            from .checkout import redact

            if s.repo_credentials_on_command_line and self.failure is None:
                # Once: a retry after a failed checkout comes back here with a failure set.
                log.warning(
                    "--repo holds credentials, which anyone on this machine can read in the "
                    "process list: give the URL in JHSNP_REPO, or the token in "
                    "JHSNP_REPO_TOKEN or a file (--repo-token-file, JHSNP_REPO_TOKEN_FILE)"
                )
            self.phase = f"Getting {redact(s.repo)}"
            self._progress_line(self.phase)
            failure = await self._checkout()
            if failure is not None:
                self.phase = "The checkout failed"
                return failure
        # The repository's credentials are for the checkout only, not for the app.
        self.app_environ = {
            k: v for k, v in self.base_environ.items() if k not in REPO_SECRET_VARIABLES
        }
        return None

    async def _checkout(self) -> Failure | None:
        """The git checkout, in a child process (see checkout_runner) that stop() can end.

        The URL's credentials and the token go on the child's stdin, never on its command line
        nor in its environment; a token file is read again each time (a rotated secret works on
        "Try again").
        """
        from .git_credentials import read_token_file

        # A checkout can take minutes: the server does not wait for it to begin its own start.
        self.launched.set()
        s = self.settings
        password = s.repo_password
        if s.repo_token_file:
            try:
                password = read_token_file(s.repo_token_file)
            except OSError as e:
                reason = f"the token file {s.repo_token_file} cannot be read: {e.strerror or e}"
                return Failure(f"could not be prepared: {reason}", list(self.progress))
            except ValueError as e:
                return Failure(f"could not be prepared: {e}", list(self.progress))
        request = {
            "url": s.repo,
            "username": s.repo_username,
            "password": password,
            "folder": s.repofolder,
            "branch": s.repobranch,
            "depth": s.checkout_depth or None,
            "debug": s.debug,
        }
        environ = {k: v for k, v in s.environ.items() if k not in REPO_SECRET_VARIABLES}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jhsingle_native_proxy.checkout_runner",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=environ,
        )
        self._checkout_process = process
        try:
            process.stdin.write(json.dumps(request).encode())
            await process.stdin.drain()
            process.stdin.close()
            outcome = None
            async for raw in process.stdout:
                kind, _, text = raw.decode("utf-8", "replace").rstrip("\n").partition(" ")
                if kind == "P":
                    self._progress_line(text)
                elif kind in ("R", "E"):
                    outcome = (kind, text)
            code = await process.wait()
        finally:
            self._checkout_process = None
        if outcome is None or outcome[0] == "E":
            reason = outcome[1] if outcome else f"the checkout ended with status {code}"
            return Failure(f"could not be prepared: {reason}", list(self.progress))
        result = json.loads(outcome[1])
        self._progress_line(f"{result['action']}: {result['branch']} at {result['commit'][:12]}")
        for note in result["notes"]:
            self._progress_line(note)
        return None

    async def _run_once(self) -> tuple[Failure, float]:
        """Start one instance and return why it ended and how long it was ready for."""
        s = self.settings
        if self.app_environ is None:
            failure = await self._prepare()
            if failure is not None:
                return failure, 0.0
        self.phase = "Starting the app"
        self._progress_line(self.phase)
        if self.unix_socket:
            port = 0
            # A socket file left by an earlier instance would make the app's bind fail.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_socket)
        else:
            port = s.destport or free_port()
        try:
            argv, env, self.request_headers = self._build(port)
        except (ConfigError, TemplateError) as e:
            log.error("The app cannot be started: %s", e)
            return Failure(f"could not be started: {e}", []), 0.0
        self.output.clear()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        process = _AppProcess(
            "app",
            *argv,
            always_restart=False,
            log=logging.getLogger("jhsingle_native_proxy.simpervisor"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            cwd=s.app_dir,
            env=env,
        )
        where = f"socket {self.unix_socket}" if self.unix_socket else f"port {port}"
        log.info("Starting the app on %s: %s", where, " ".join(argv))
        try:
            await process.start()
        except OSError as e:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            reason = f"could not be started: {e.strerror or e}"
            if isinstance(e, FileNotFoundError):
                reason = f"could not be started: command not found: {argv[0]}"
            log.error("The app %s", reason)
            return Failure(reason, []), 0.0
        finally:
            self.launched.set()
            # The child holds its copies of the write ends; ours must go so EOF can arrive.
            for fd in (out_w, err_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._process = process
        self.port = port
        pumps = [
            asyncio.create_task(
                OutputPump(f"app[{process.pid}] out", self.output, s.logs).run(out_r)
            ),
            asyncio.create_task(
                OutputPump(f"app[{process.pid}] err", self.output, s.logs).run(err_r)
            ),
        ]
        try:
            ready = await self._wait_until_ready(process, port)
            if ready:
                ready_at = time.monotonic()
                log.info("The app is ready on %s (pid %d)", where, process.pid)
                self.failure = None
                self._set_state(AppState.READY)
                code = await asyncio.shield(process.exited)
                up_for = time.monotonic() - ready_at
                reason = describe_exit(code)
                exited = True
            elif process.exited.done():
                reason, up_for, exited = describe_exit(process.exited.result()), 0.0, True
            else:
                what = (
                    "accept connections"
                    if s.raw_socket_proxy
                    else (f"answer HTTP at {s.ready_check_path}")
                )
                reason = f"did not {what} within {s.ready_timeout:g} seconds"
                up_for, exited = 0.0, False
            if not self._stopping:
                log.error("The app %s", reason)
            # Leftover members of the group (an `sh -c` app's children) must not hold the port.
            await self._end_group(process)
            await asyncio.wait(pumps, timeout=2)
            failure = Failure(reason, list(self.output), exited=exited)
            return failure, up_for
        finally:
            for pump in pumps:
                pump.cancel()
            self.port = None

    async def _answers(self, timeout: float) -> bool:
        """One readiness probe: any HTTP response (or, for a raw socket app, a connection).

        A plain request on a fresh connection, read up to its status line: the supervisor needs
        no HTTP client of its own, so it can start the app before the proxy's client is imported.
        """
        deadline = time.monotonic() + timeout
        writer = None
        try:
            if self.unix_socket:
                connecting = asyncio.open_unix_connection(self.unix_socket)
                host = "localhost"
            else:
                connecting = asyncio.open_connection("127.0.0.1", self.port)
                host = f"127.0.0.1:{self.port}"
            reader, writer = await asyncio.wait_for(connecting, timeout)
            if self.settings.raw_socket_proxy:
                return True
            target = urllib.parse.quote(self.settings.ready_check_path, safe=_TARGET_SAFE)
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
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

    async def _wait_until_ready(self, process: _AppProcess, port: int) -> bool:
        deadline = time.monotonic() + self.settings.ready_timeout
        interval = 0.02
        while not self._stopping and not process.exited.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if await self._answers(min(remaining, 5.0)):
                return True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(process.exited),
                    min(interval, max(deadline - time.monotonic(), 0)),
                )
            interval = min(interval * 1.5, 0.5)
        return False

    async def _end_group(self, process: _AppProcess) -> None:
        """SIGTERM the app's process group, wait for the grace period, SIGKILL what is left."""
        pgid = process.pid
        if not _signal_group(pgid, signal.SIGTERM):
            return
        deadline = time.monotonic() + self.settings.shutdown_grace
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                break
            await asyncio.sleep(0.05)
        else:
            log.warning(
                "The app did not exit within %gs of SIGTERM; killing it",
                self.settings.shutdown_grace,
            )
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.exited), 5)


def _mapping(value, key: str) -> Mapping:
    """A config value that must be a dict (or None): anything else is the config's error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"the server's {key} must be a dict, not {type(value).__name__}")
    return value


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
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
