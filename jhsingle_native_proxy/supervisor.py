"""The app's life: start it, know when it is ready, restart it when it ends, and end it for good.

Guarantees:
- The app starts in its own session (and so its own process group); stopping sends SIGTERM to the
  whole group, waits `shutdown_grace` seconds, then SIGKILLs what is left. `sh -c 'app & wait'` and
  apps that ignore SIGTERM leave nothing behind. On Linux the app also gets SIGKILL if the proxy
  itself dies without a chance to clean up (PR_SET_PDEATHSIG).
- Ready means: any HTTP response at `ready_check_path` within `ready_timeout`. An app that is not
  ready in time is killed and reported as failed; the next request starts it again.
- An app that exits, with status 0 or not, is restarted: at once if it had been serving, after
  an exponential backoff if it dies while starting (so a crash loop cannot spin), and with
  `--destport 0` on a fresh port. It must become ready again.
- An app put to sleep (`sleep()`, asked by idle_watch.py) has its group ended like at a stop and
  waits, SLEEPING, for the next request, which starts it again ("waking up").

The parts: `prepare.py` (the checkout), `launch.py` (argv, environment, headers of one start),
`process.py` (the child, its output, its process group), `readiness.py` (is it answering yet).
This module is the state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque

from . import metrics
from .app_preparation import AppPreparation
from .app_state import AppState, AppStatus, Failure, FailureKind
from .command import TemplateError
from .env_file import AppEnvironmentError, check_required, read_env_files
from .launch import CommandResolver, build_launch
from .prepare import (
    Checkout,
    NotPrepared,
    ProgressLog,
    app_environment,
    warn_if_credentials_visible,
)
from .process import (
    AppProcess,
    LineSink,
    describe_start_error,
    free_port,
    spawn_with_output,
)
from .readiness import AppAddress, wait_until_ready
from .run_history import RunHistory
from .serverproxy import ConfigError
from .settings import Settings

log = logging.getLogger("jhsingle_native_proxy")

OUTPUT_LINES_KEPT = 50
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# An instance that had been ready this long is restarted at once when it ends, and resets the
# backoff; one that ends sooner (a crash loop at start) waits BACKOFF_FIRST, doubling.
STABLE_AFTER = 2.0
# The phase of a start that wakes a sleeping app (the loading page's heading follows it).
WAKING_UP = "Waking up the app"


def restart_delay(up_for: float, restarts: int) -> tuple[int, float]:
    """After the app exited having served `up_for` seconds: (the new count of quick restarts,
    the seconds to wait). An app that had been serving (a crash, an OOM kill) is back at once,
    as 0.8.3 did; one that dies while starting waits BACKOFF_FIRST, doubling up to BACKOFF_MAX."""
    if up_for >= STABLE_AFTER:
        return 0, 0.0
    return restarts + 1, min(BACKOFF_MAX, BACKOFF_FIRST * 2**restarts)


def describe_error(e: BaseException) -> str:
    """An unexpected exception as a short phrase for the failure page (the log has the rest)."""
    if isinstance(e, OSError) and e.strerror:
        where = f" ({e.filename})" if e.filename else ""
        return f"{e.strerror}{where}"
    return f"an internal error ({type(e).__name__}); the server log says more"


async def spawn(
    s: Settings, argv: list[str], env: dict[str, str], where: str, output: LineSink
) -> tuple[AppProcess | Failure, list[asyncio.Task]]:
    """Start the child with its output pumped; a Failure if it cannot be executed."""
    log.info("Starting the app on %s: %s", where, " ".join(argv))
    try:
        return await spawn_with_output(argv, env, s.app_dir, output, s.logs)
    except OSError as e:
        failure = Failure(FailureKind.NOT_STARTED, describe_start_error(e, argv[0]))
        log.error("%s", failure.sentence)
        return failure, []


def fresh_address(s: Settings, unix_socket: str) -> int:
    """The port for the next instance (0 on a unix socket, whose stale file goes)."""
    if not unix_socket:
        return s.destport or free_port()
    # A socket file left by an earlier instance would make the app's bind fail.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(unix_socket)
    return 0


class AppSupervisor:
    """Keeps the app running and tells the proxy where it is and whether it is ready."""

    def __init__(
        self,
        settings: Settings,
        unix_socket: str = "",
        environ: dict[str, str] | None = None,
        resolve_command: CommandResolver | None = None,
    ):
        """`environ` is the app's environment (the conda environment's, if any, activated at
        start-up); `resolve_command` turns the command's first word into a path in it."""
        self.settings = settings
        # The settings as the server was started with them: each preparation lays what the
        # repository says about its app under these again (app_preparation.py).
        self.given_settings = settings
        self.base_environ = dict(settings.environ if environ is None else environ)
        self.resolve_command = resolve_command
        # Where the app is: its unix socket path ("" for TCP on 127.0.0.1), its port.
        self.unix_socket = unix_socket
        self.port: int | None = None
        # `{origin_host}`: from the hub's public URL or --allow-host if they give it, else from
        # the owner's (or an admin's) request (see request_arrived), taken again at a restart.
        self.origin_host: str | None = settings.trusted_origin_host or None
        # Headers every request to the app carries (--request-header, request_headers_override).
        self.request_headers: list[tuple[str, str]] = []
        # The names (never the values) the --env-file files set at the latest start.
        self.env_file_names: tuple[str, ...] = ()
        self.state = AppState.WAITING
        self.failure: Failure | None = None
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        self.runs = RunHistory()  # the last runs' times, ends and output (run_history.py)
        # What happens now, for the progress page: a phase and its latest lines.
        waits = settings.starts_at_first_request
        self.phase = "Waiting for its owner's first visit" if waits else ""
        self.progress = ProgressLog()
        # The app's environment, once prepared (checkout done, conda environment activated).
        self.app_environ: dict[str, str] | None = None
        # Set once the first start is under way (the app spawned, or a checkout begun) or has
        # ended early: the server waits for it before its own heavy imports, so both overlap.
        self.launched = asyncio.Event()
        self._changed = asyncio.Event()
        self._kick = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._process: AppProcess | None = None
        self._checkout: Checkout | None = None
        self._preparation: AppPreparation | None = None
        self._spawned = 0  # instances started
        self._ready_since: float | None = None
        # A restart was asked for: the instance that ends next is not a failure.
        self._restart_asked = False
        # Sleep was asked for (sleep()): the instance that ends next is not a failure either.
        self._sleep_asked = False
        self._sleeping_since: float | None = None
        self._waking = False  # the next start wakes it: the loading page says so
        # The proxy's connections to this app under way (requests, websockets): publish mode's
        # switch lets them end before it ends an old revision's app (deployment.py).
        self.connections: set[object] = set()

    # -- what the proxy asks ------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """The app's HTTP origin for the pooled client (its host is ignored on a unix socket)."""
        return "http://localhost" if self.unix_socket else f"http://127.0.0.1:{self.port}"

    @property
    def started(self) -> bool:
        """Whether the lifecycle runs (it waits for the first request otherwise)."""
        return self._task is not None

    def status(self) -> AppStatus:
        retry_in = None
        if self.failure is not None and self.failure.retry_at is not None:
            retry_in = max(0.0, self.failure.retry_at - time.monotonic())
        pid = self._process.pid if self._process is not None else None
        return AppStatus(
            state=self.state,
            phase=self.phase,
            lines=self.recent_lines(),
            failure=self.failure,
            retry_in=retry_in,
            ready_since=self._ready_since,
            restarts=max(0, self._spawned - 1),
            pid=pid,
            sleeping_since=self._sleeping_since if self.state is AppState.SLEEPING else None,
            env_file_names=self.env_file_names,
        )

    def recent_lines(self, count: int = 30) -> list[str]:
        """What the progress page shows: preparation steps, then the app's latest output."""
        return (list(self.progress.lines) + list(self.output))[-count:]

    def start(self) -> None:
        """Start the lifecycle at launch (unless the command waits for the first request)."""
        if not self.settings.starts_at_first_request:
            self._ensure_task()

    def request_arrived(self, host: str | None = None) -> None:
        """A request wants the app: start it if it waits for one, retry it if it failed.

        `host` is the request's Host when its viewer may give `{origin_host}` (the owner or an
        admin; anyone with --authtype none), else None. A shared viewer's Host is theirs to
        choose: it never becomes part of the app's command, and a command that needs it goes on
        waiting for the owner.
        """
        if self.origin_host is None and host:
            self.origin_host = host
        if self._task is None:
            if self.settings.starts_at_first_request and self.origin_host is None:
                return
            self._ensure_task()
        elif self.state is AppState.FAILED and self.failure and not self.failure.exited:
            # Starting again from now on: this request already sees the progress page.
            # `failure` stays, so that page can say what went wrong last time.
            self._set_state(AppState.STARTING)
            self._kick.set()
        elif self.state is AppState.SLEEPING:
            self.phase, self._waking = WAKING_UP, True
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

    async def restart(self, *, pull: bool = False, origin_host: str | None = None) -> None:
        """End the running instance (its whole group) and start it again at once, whatever its
        state; with `pull`, run the checkout again first (its usual rules: nothing is lost).

        `origin_host`: the Host of the owner's (or an admin's) request that asked; unless a
        trusted source gives `{origin_host}`, the new instance takes it from there, so a host
        taken from an earlier request is not kept for good.
        """
        if self._stopping:
            return
        if origin_host and not self.settings.trusted_origin_host:
            self.origin_host = origin_host
        if pull:
            self.app_environ = None
        if self._task is None:
            self._ensure_task()
            return
        self._restart_asked = True
        self._kick.set()  # out of a backoff or a wait for a request
        if self._checkout is not None:
            self._checkout.stop()
        if self._preparation is not None:
            self._preparation.stop()
        if self._process is not None:
            await self._process.end_group(self.settings.shutdown_grace)

    async def sleep(self) -> bool:
        """End the ready app's whole group for being idle: SLEEPING until the next request
        (request_arrived) wakes it. idle_watch.py decides when; False if it is not ready."""
        if self.state is not AppState.READY or self._process is None or self._stopping:
            return False
        log.info("The app has been idle: stopping it until the next request")
        self._sleep_asked = True
        self._sleeping_since = time.time()
        self._set_state(AppState.SLEEPING)
        await self._process.end_group(self.settings.shutdown_grace)
        return True

    async def stop(self) -> None:
        """End the app and everything it started; no restart after this."""
        self._stopping = True
        self._kick.set()
        if self._checkout is not None:
            self._checkout.stop()
        if self._preparation is not None:
            self._preparation.stop()
        if self._process is not None:
            await self._process.end_group(self.settings.shutdown_grace)
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
                failure, up_for = Failure(FailureKind.NOT_STARTED, describe_error(e)), 0.0
            self.launched.set()
            if self._stopping:
                break
            if self._sleep_asked:
                self._sleep_asked = False
                metrics.app_ended("idle")
                # Unless a request (or a restart) came while its group was ending:
                if self.state is AppState.SLEEPING and not self._restart_asked:
                    await self._pause(None)
                continue
            if self._restart_asked:
                self._restart_asked = False
                metrics.app_ended("asked")
                log.info("Restarting the app, as its owner asked")
                continue
            metrics.app_ended(failure.kind.name.lower())
            if not failure.exited:
                # Failed to start or never ready: wait for a request before trying again.
                self.failure = failure
                self._set_state(AppState.FAILED)
                await self._pause(None)
                restarts = 0
                continue
            restarts, delay = restart_delay(up_for, restarts)
            failure.retry_at = time.monotonic() + delay
            self.failure = failure
            self._set_state(AppState.FAILED)
            if delay:
                log.warning("Restarting the app in %.1f s", delay)
                await self._pause(delay)
            else:
                log.warning("Restarting the app now: it had been serving for %.0f s", up_for)

    async def _pause(self, delay: float | None) -> None:
        """Wait `delay` seconds (None: for a request), or until a restart is asked for."""
        self._kick.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._kick.wait(), delay)

    async def _prepare(self) -> Failure | None:
        """Before the first start: the git checkout, once (again after it failed)."""
        s = self.settings
        self.progress.clear()
        if s.repo:
            from .repo_url import redact

            if self.failure is None:  # once: a retry after a failed checkout has a failure set
                warn_if_credentials_visible(s)
            # Every viewer sees the phase; the repository's URL is in the lines, the owner's.
            self.phase = "Getting the app's repository"
            self.progress.add(f"Getting {redact(s.repo)}")
            # A checkout can take minutes: the server does not wait for it to begin its start.
            self.launched.set()
            self._checkout = Checkout(s, self.progress)
            try:
                with metrics.step("checkout"):
                    await self._checkout.run()
            except NotPrepared as e:
                self.phase = "The checkout failed"
                return Failure(FailureKind.NOT_PREPARED, str(e), list(self.progress.lines))
            finally:
                self._checkout = None
        # The repository's credentials are for the checkout only, not for the app.
        environ = app_environment(self.base_environ, hide_hub_token=s.hide_hub_token)
        return await self._prepare_app(environ)

    async def _prepare_app(self, environ: dict[str, str]) -> Failure | None:
        """What the repository says about its app, and its packages (app_preparation.py)."""
        self._preparation = AppPreparation(self.given_settings, self.progress, self._set_phase)
        try:
            self.settings, self.app_environ = await self._preparation.run(environ)
        except NotPrepared as e:
            return Failure(FailureKind.NOT_PREPARED, str(e), list(self.progress.lines))
        finally:
            self._preparation = None
        return None

    @property
    def _stopped_for(self) -> str | None:
        """Why we ended the instance that just ended, in run_history's words (None: itself)."""
        if self._restart_asked:
            return "restart asked"
        if self._sleep_asked:
            return "idle"
        return "server stopping" if self._stopping else None

    def _set_phase(self, phase: str) -> None:
        self.phase = phase

    async def _run_once(self) -> tuple[Failure, float]:
        """Start one instance and return why it ended and how long it was ready for."""
        if self.app_environ is None:
            failure = await self._prepare()
            if failure is not None:
                return failure, 0.0
        s = self.settings  # as the preparation left them (the repository's, its packages)
        self.phase = WAKING_UP if self._waking else "Starting the app"
        self._waking = False
        self.progress.add(self.phase)
        port = fresh_address(s, self.unix_socket)
        try:
            # Read again at each start: a rotated secret is what a restart gets (env_file.py).
            secrets = read_env_files(s.secrets.env_files)
            self.env_file_names = tuple(sorted(secrets))
            launch = build_launch(
                s,
                port,
                unix_socket=self.unix_socket,
                origin_host=self.origin_host or "",
                environ=self.app_environ,
                resolve_command=self.resolve_command,
                env_files=secrets,
            )
            check_required(s.secrets.required_env, launch.env, "jhsnp.toml")
        except (ConfigError, TemplateError, AppEnvironmentError) as e:
            failure = Failure(FailureKind.NOT_STARTED, str(e))
            log.error("%s", failure.sentence)
            return failure, 0.0
        self.request_headers = launch.request_headers
        self.output.clear()
        where = f"socket {self.unix_socket}" if self.unix_socket else f"port {port}"
        run = self.runs.begin(self.output)
        try:
            process, pumps = await spawn(s, launch.argv, launch.env, where, run)
        finally:
            self.launched.set()
        if isinstance(process, Failure):
            self.runs.end(run, process)
            return process, 0.0
        self._process, self.port = process, port
        self._spawned += 1
        self._restart_asked = False  # this is the fresh start a restart asks for
        try:
            failure, up_for = await self._watch(process, where)
            # The last lines it wrote belong on the failure page: let the pumps finish.
            await asyncio.wait(pumps, timeout=2)
            failure.output = list(self.output)
            self.runs.end(run, failure, self._stopped_for)
            return failure, up_for
        finally:
            for pump in pumps:
                pump.cancel()
            self.port = None

    async def _watch(self, process: AppProcess, where: str) -> tuple[Failure, float]:
        """Wait for readiness, then for the end; return why it ended and how long it served."""
        s = self.settings
        up_for = 0.0
        address = AppAddress(self.unix_socket, self.port or 0)
        spawned_at = time.monotonic()
        if await wait_until_ready(address, s, process.exited, lambda: self._stopping):
            ready_at = time.monotonic()
            metrics.app_ready(ready_at - spawned_at)
            self._ready_since = time.time()
            log.info("The app is ready on %s (pid %d)", where, process.pid)
            self.failure = None
            self._set_state(AppState.READY)
            code = await asyncio.shield(process.exited)
            up_for = time.monotonic() - ready_at
            failure = Failure.exit(code)
        elif process.exited.done():
            failure = Failure.exit(process.exited.result())
        else:
            failure = Failure.not_ready(s)
        if not (self._stopping or self._sleep_asked):
            log.error("%s", failure.sentence)
        self._ready_since = None
        # Leftover members of the group (an `sh -c` app's children) must not hold the port.
        await process.end_group(s.shutdown_grace)
        self._process = None
        return failure, up_for
