"""Wires the parts together and owns the process's life: listen, supervise, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import shutil
import signal
import ssl
import sys
import tempfile
import time

from .heap import start_heap_trimmer, stop_heap_trimmer
from .idle_watch import IdleWatch
from .secret_options import warn_secrets_on_command_line
from .settings import Settings
from .supervisor import AppSupervisor

# tornado's server, aiohttp and the handlers are imported in `_proxy_server`, after the app has
# been launched: they are most of our start-up time, which then overlaps the app's own.

log = logging.getLogger("jhsingle_native_proxy")

# Limits for every connection until its viewer is authorised (see SECURITY.md). Before that no
# body is kept: the proxy's routes leave it unread, our own endpoints drop it, and only a
# websocket handshake (which has no use for one) is read whole, so 64 KiB is plenty. A client has
# this long to send its headers (and to send the next request on a kept-alive connection), and to
# send a body we read before authorisation. The proxy handler lifts the body limits once the
# viewer is allowed in: uploads of any size and duration stream to the app.
PRE_AUTH_BODY_LIMIT = 64 * 1024
HEADER_TIMEOUT = 60.0
PRE_AUTH_BODY_TIMEOUT = 60.0
# How long start-up waits for the app's launch before importing the proxy's parts regardless.
LAUNCH_WAIT = 5.0


class StartupError(Exception):
    """The server cannot start; the message is meant for the admin, on one line."""


def configure_logging(settings: Settings) -> None:
    """One handler on stderr. Its formatter keeps each record on one line whatever a client
    put in it (log_lines), and JupyterHub's login warnings leave OAuth states out."""
    from .log_lines import OAuthStateScrubber, OneLineFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        OneLineFormatter(
            "[%(levelname).1s %(asctime)s.%(msecs)03d %(name)s] %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    # JupyterHub's own XSRF helper warns about every non-browser GET; our forgery check
    # (auth.forgery_reason) replaces that helper, so its warning only adds noise.
    logging.getLogger("tornado.application").addFilter(
        lambda record: not str(record.msg).startswith("Skipping XSRF check")
    )
    logging.getLogger("tornado.application").addFilter(OAuthStateScrubber())
    # aiohttp and asyncio are chatty at DEBUG and say nothing an admin needs.
    for name in ("asyncio", "aiohttp"):
        logging.getLogger(name).setLevel(logging.INFO if settings.debug else logging.WARNING)
    # Importing jupyterhub.services.auth loads alembic (through JupyterHub's database module),
    # which logs its plugins at INFO under whatever root logger it finds: seven lines of noise
    # at the top of every hub-mode log. We never use JupyterHub's database.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def ssl_contexts(settings: Settings):
    """With JupyterHub's internal_ssl: serve HTTPS requiring the hub's client certificates, and
    present ours when calling the hub. Both are None without it."""
    hub = settings.hub
    if not hub.internal_ssl:
        return None, None
    from jupyterhub.utils import make_ssl_context

    try:
        server = make_ssl_context(
            hub.ssl_keyfile,
            hub.ssl_certfile,
            cafile=hub.ssl_client_ca or None,
            purpose=ssl.Purpose.CLIENT_AUTH,
        )
        client = make_ssl_context(
            hub.ssl_keyfile,
            hub.ssl_certfile,
            cafile=hub.ssl_client_ca or None,
            purpose=ssl.Purpose.SERVER_AUTH,
        )
    except (OSError, ssl.SSLError) as e:
        raise StartupError(f"cannot use JUPYTERHUB_SSL_* certificates: {e}") from None
    return server, client


def app_socket_path(settings: Settings) -> tuple[str, str]:
    """The app's unix socket path, and the private directory we made for it (to remove at exit).

    `--unix-socket` without a path: a fresh directory with mode 0700, so no other local user can
    reach the app around the proxy.
    """
    if not settings.unix_socket:
        return "", ""
    if settings.unix_socket == "auto":
        private = tempfile.mkdtemp(prefix="jhsnp-")
        os.chmod(private, 0o700)
        return os.path.join(private, "app.sock"), private
    path = os.path.abspath(settings.unix_socket)
    if not os.path.isdir(os.path.dirname(path)):
        raise StartupError(f"--unix-socket {path}: its directory does not exist")
    return path, ""


def conda_environment(settings: Settings):
    """The app's environment with --conda-env activated, and how to find its command there.

    Done at start-up: a missing conda or environment is the admin's to fix, said on one line.
    """
    if not settings.conda_env:
        return dict(settings.environ), None
    from .conda import CondaError, activated_environ, find_env, resolve_command

    try:
        prefix = find_env(settings.conda_env, settings.environ)
        environ = activated_environ(prefix, settings.environ)
    except CondaError as e:
        raise StartupError(str(e)) from None
    log.info("The app runs in the conda environment %s", prefix)
    return environ, resolve_command


def viewer_identity(settings: Settings, environ: dict[str, str]):
    """The app's environment with the token's public key when --forward-user-jwt is on (and
    never a key inherited from elsewhere, which the app would trust), and the server's
    `ViewerIdentity` when either identity option is on, else None (nothing per request)."""
    from .identity_options import JWT_VARIABLES

    environ = {k: v for k, v in environ.items() if k not in JWT_VARIABLES}
    if not settings.identity.enabled:
        return environ, None
    from .viewer_identity import make_viewer_identity  # PyJWT and cryptography: only now

    identity = make_viewer_identity(settings)
    return {**environ, **identity.app_environment()}, identity


def raise_open_file_limit() -> None:
    """Use the hard limit on open files, not the soft one (often 1024).

    Every client connection, websocket and connection to the app costs a descriptor; hundreds of
    idle or slow clients must not leave the owner's next request without one.
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = 1 << 16 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:  # pragma: no cover - a container may forbid it
        log.debug("Cannot raise the open-file limit: %s", e)


def listen(settings: Settings) -> list:
    from tornado.netutil import bind_sockets

    try:
        return bind_sockets(settings.port, settings.ip)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot listen on {settings.ip}:{settings.port}: the port is already in use"
            ) from None
        raise StartupError(
            f"cannot listen on {settings.ip}:{settings.port}: {e.strerror or e}"
        ) from None


async def serve(settings: Settings) -> None:
    for flag in settings.ignored_flags:
        log.warning("Ignoring jupyterhub-singleuser option %s: it has no meaning here", flag)
    if settings.server_label:
        log.info("Running the server %s", settings.server_label)
    for key in settings.server_ignored:
        log.warning(
            "Ignoring the server option %r: it is jupyter-server-proxy's (JupyterLab's "
            "launcher or its response rewriting) and has no meaning here",
            key,
        )
    warn_secrets_on_command_line(settings.given_app.env)
    if settings.progressive:
        log.info("--progressive is always on: responses are streamed as the app writes them")
    raise_open_file_limit()
    server_ssl, client_ssl = ssl_contexts(settings)
    app_environ, resolve = conda_environment(settings)
    app_environ, identity = viewer_identity(settings, app_environ)
    sockets = listen(settings)
    socket_path, private_dir = app_socket_path(settings)
    deployment = None
    if settings.publish.follow:
        from .deployment import Deployment

        deployment = Deployment(settings, environ=app_environ, resolve_command=resolve)
        supervisor = deployment.live
    else:
        supervisor = AppSupervisor(
            settings, unix_socket=socket_path, environ=app_environ, resolve_command=resolve
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = reporter = session = trimmer = services = watch = None
    try:
        supervisor.start()
        if supervisor.started:
            # The app is launched first (a checkout, if any, only begun): our imports below
            # then overlap its own start.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(supervisor.launched.wait(), LAUNCH_WAIT)
        server, reporter, session = _proxy_server(
            settings, supervisor, socket_path, server_ssl, client_ssl, deployment, identity
        )
        services = server.request_callback.settings["services"]
        if deployment is not None:
            deployment.attach(services)
        services.usage.start(lambda: services.supervisor.status().pid)
        # --idle-stop, --idle-shutdown: `stop` is also how an idle server ends.
        watch = IdleWatch(settings.sleep, services, stop)
        watch.start()
        server.add_sockets(sockets)
        scheme = "https" if server_ssl else "http"
        log.info("Listening on %s://%s:%d%s", scheme, settings.ip, settings.port, settings.prefix)
        if settings.authtype == "none":
            log.warning(
                "--authtype none: anyone who can reach %s:%d can use the app",
                settings.ip,
                settings.port,
            )
        reporter.start()
        trimmer = start_heap_trimmer()
        await stop.wait()
        log.info("Shutting down")
    finally:
        await stop_heap_trimmer(trimmer)
        if watch is not None:
            await watch.stop()
        if services is not None:
            await services.usage.stop()
        if server is not None:
            server.stop()
        if reporter is not None:
            await reporter.stop()
        await (deployment.stop() if deployment is not None else supervisor.stop())
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.close_all_connections(), 2)
        if session is not None:
            await session.close()
        for sock in sockets:
            sock.close()
        if private_dir:
            shutil.rmtree(private_dir, ignore_errors=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _proxy_server(
    settings: Settings,
    supervisor: AppSupervisor,
    socket_path: str,
    server_ssl,
    client_ssl,
    deployment=None,
    identity=None,
):
    """The HTTP server, the activity reporter and the client session to the app.

    Everything here is imported late: tornado's server, aiohttp and the handlers are most of
    our start-up time, and by now the app is already starting.
    """
    from tornado.httpserver import HTTPServer

    from .activity import ActivityReporter, ActivityTracker
    from .app import make_app
    from .auth import AccessPolicy
    from .base import Services
    from .proxy.http import APP_TURNS, new_app_session

    session = new_app_session(socket_path)
    tracker = ActivityTracker()
    services = Services(
        settings=settings,
        supervisor=supervisor,
        app_session=session,
        activity=tracker,
        started_at=time.monotonic(),
        app_turns=asyncio.Semaphore(APP_TURNS),
        deployment=deployment,
        identity=identity,
    )
    if settings.authtype == "oauth":
        from .hub_login import make_hub_auth

        services.hub_auth = make_hub_auth(settings, services.secret)
        services.policy = AccessPolicy.from_hub(settings.hub)
    reporter = ActivityReporter(settings, tracker, client_ssl)
    server = HTTPServer(
        make_app(services),
        max_body_size=PRE_AUTH_BODY_LIMIT,
        idle_connection_timeout=HEADER_TIMEOUT,
        body_timeout=PRE_AUTH_BODY_TIMEOUT,
        ssl_options=server_ssl,
    )
    return server, reporter, session


def run(settings: Settings) -> None:
    configure_logging(settings)
    asyncio.run(serve(settings))
