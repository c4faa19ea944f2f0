"""Wires the parts together and owns the process's life: listen, supervise, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .app import make_app
from .base import Services
from .proxy.http import UNLIMITED_BODY, new_app_session
from .settings import Settings
from .supervisor import AppSupervisor

log = logging.getLogger("jhsingle_native_proxy")


class StartupError(Exception):
    """The server cannot start; the message is meant for the admin, on one line."""


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname).1s %(asctime)s.%(msecs)03d %(name)s] %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    # aiohttp and asyncio are chatty at DEBUG and say nothing an admin needs.
    for name in ("asyncio", "aiohttp"):
        logging.getLogger(name).setLevel(logging.INFO if settings.debug else logging.WARNING)


def listen(settings: Settings) -> list:
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
    if settings.progressive:
        log.info("--progressive is always on: responses are streamed as the app writes them")
    sockets = listen(settings)
    session = new_app_session()
    supervisor = AppSupervisor(settings, session)
    services = Services(settings=settings, supervisor=supervisor, app_session=session)
    server = HTTPServer(
        make_app(services),
        max_body_size=UNLIMITED_BODY,
        idle_connection_timeout=3600,
    )
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("Listening on http://%s:%d%s", settings.ip, settings.port, settings.prefix)
    supervisor.start()
    try:
        await stop.wait()
        log.info("Shutting down")
    finally:
        server.stop()
        await supervisor.stop()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 2)
        await session.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(settings: Settings) -> None:
    configure_logging(settings)
    asyncio.run(serve(settings))
