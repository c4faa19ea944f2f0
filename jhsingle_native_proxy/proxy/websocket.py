"""Websocket bridge: the client's websocket on one side, the app's on the other.

Order matters. The viewer is authorised first, then the app's websocket is opened, and only then
is the client's handshake completed, with what the app answered: the subprotocol the *app* chose
and the cookies it set (Streamlit, for one, relies on both). So the handler answers the client's
handshake itself rather than through tornado's WebSocketHandler, which answers before the app
is asked, and then takes the connection over (`detach`).

The parts, each in its module:
- `app_websocket`: our upgrade request to the app, and its answer checked;
- `relay`: frames relayed both ways, payloads untouched, once both handshakes are done;
- `raw_socket`: --raw-socket-proxy, where the app speaks no websocket and tornado's
  WebSocketHandler terminates the client's.
This module holds the handler that puts them in order, and the client's handshake.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping

from tornado import httputil, iostream, websocket
from tornado.routing import Matcher, PathMatches

from .. import http_hygiene as h
from ..auth import AuthMixin, app_may_set_cookie
from ..base import BaseHandler
from . import frames
from .app_request import AppRequestMixin
from .app_websocket import (
    HANDSHAKE,
    AppRefused,
    AppWebSocket,
    accept_value,
    open_app_websocket,
    upgrade_problem,
)
from .raw_socket import RawSocketBridge
from .relay import READ_CHUNK, FrameRelay

log = logging.getLogger("jhsingle_native_proxy")

DEFAULT_MAX_MESSAGE = 128 * 1024 * 1024


def handshake_problem(headers: Mapping[str, str]) -> tuple[int, str] | None:
    """What is wrong with a client's websocket handshake (status, message), or None.

    Checked before anything else happens, so that no connection to the app is opened for a
    handshake that tornado would refuse afterwards (RFC 6455 section 4.2.1).
    """
    if not (headers.get("Host") or "").strip():
        return 400, "a websocket handshake needs a Host header"
    tokens = {t.strip().lower() for t in (headers.get("Connection") or "").split(",")}
    if "upgrade" not in tokens:
        return 400, 'a websocket handshake needs "Connection: Upgrade"'
    if (headers.get("Sec-WebSocket-Version") or "").strip() != "13":
        return 426, "this server speaks websocket version 13"
    key = (headers.get("Sec-WebSocket-Key") or "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return 400, "the websocket handshake's Sec-WebSocket-Key is missing or malformed"
    return None


class WebSocketUpgrade(Matcher):
    """Matches requests under `path_pattern` that ask to become a websocket."""

    def __init__(self, path_pattern: str):
        self.path = PathMatches(path_pattern)

    def match(self, request):
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return self.path.match(request)

    def reverse(self, *args):
        return None


class WebSocketProxyHandler(
    AuthMixin, AppRequestMixin, RawSocketBridge, BaseHandler, websocket.WebSocketHandler
):
    """A websocket under the prefix: authorise, open the app's side, then accept the client.

    It is a tornado WebSocketHandler for --raw-socket-proxy only (`RawSocketBridge`), where
    tornado reads the client's messages; otherwise the client's handshake is answered here and
    the connection taken over (`detach`) to relay frames.
    """

    @property
    def max_message_size(self) -> int | None:  # type: ignore[override]
        size = self.services.settings.websocket_max_message_size
        if size is None:
            return DEFAULT_MAX_MESSAGE
        return size or None  # 0: no limit beyond memory

    async def get(self, *args: str) -> None:
        services = self.services
        problem = handshake_problem(self.request.headers)
        if problem is not None:
            status, message = problem
            version = {"Sec-WebSocket-Version": "13"} if status == 426 else None
            self.send_error_page(status, message, headers=version)
            return
        if not await self.authorize(websocket=True):
            return
        if not await self.wait_for_app(browser=False):
            return
        services.activity.touch()
        if services.settings.raw_socket_proxy:
            await self.bridge_raw_socket(*args)
        else:
            await self.relay_frames()

    def offered_subprotocols(self) -> list[str]:
        return [
            p.strip()
            for value in self.request.headers.get_list("Sec-WebSocket-Protocol")
            for p in value.split(",")
            if p.strip()
        ]

    _relay: FrameRelay | None = None

    def end_for_restart(self) -> asyncio.Future | None:
        """Publish mode's switch ends the app behind this websocket: 1012 to the client."""
        return self._relay.end_for_restart() if self._relay is not None else None

    async def relay_frames(self) -> None:
        """Open the app's websocket, complete the client's handshake with its answer, relay."""
        # Noted in the app's supervisor while it lasts: publish mode drains them (deployment).
        connections = self.services.supervisor.connections
        connections.add(self)
        websockets = self.services.metrics.websockets
        websockets.inc()
        try:
            await self._relay_frames()
        finally:
            connections.discard(self)
            websockets.dec()

    async def _relay_frames(self) -> None:
        app = await self.open_app_websocket()
        if app is None:
            return
        relayed = False
        try:
            client = self.accept_client(app.headers)
            if client is None:
                return
            relayed = True
            relay = self._relay = FrameRelay(
                client,
                app.reader,
                app.writer,
                limit=self.max_message_size,
                ping_interval=self.services.settings.websocket_ping_interval or None,
                touch=self.services.activity.touch,
            )
            await relay.run()
        finally:
            # However the client's side ended (gone before the handshake finished, or the relay
            # failed), the app's side must not outlive it.
            if not relayed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    app.writer.write(
                        frames.close_frame(frames.GOING_AWAY, "the client went away", mask=True)
                    )
            app.writer.close()

    async def open_app_websocket(self) -> AppWebSocket | None:
        """The app's side, after its handshake; None once the client was answered with why not.

        The app's answer counts toward --request-timeout, as any request's does.
        """
        supervisor = self.services.supervisor
        # The headers were checked on the way (a 400 before the app is contacted); so are the
        # subprotocols, which are written into the request too.
        headers = self.app_request_headers(drop=HANDSHAKE)
        protocols = self.offered_subprotocols()
        problem = upgrade_problem((), protocols)
        if problem:
            log.warning("Refused the websocket %s: %s", self.logged_uri, problem)
            self.send_error_page(400, f"The websocket was refused: {problem}.")
            return None
        opening = open_app_websocket(
            supervisor.unix_socket,
            supervisor.port,
            # The request target as for any request to the app: the URL without its origin.
            target=self.target_url()[len(supervisor.origin) :] or "/",
            host=supervisor.origin.split("//", 1)[1],
            headers=headers,
            protocols=protocols,
            read_limit=READ_CHUNK,
        )
        try:
            return await asyncio.wait_for(opening, self.services.settings.request_timeout)
        except AppRefused as e:
            log.warning("The app refused the websocket %s: %s", self.logged_uri, e.status)
            status = e.status if 400 <= e.status < 600 else 502
            self.send_error_page(status, "the app refused the websocket")
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            # ValueError: a garbled answer, or one over MAX_APP_HANDSHAKE (LimitOverrunError).
            log.warning("Cannot open the app's websocket %s: %s", self.logged_uri, e)
            self.send_error_page(502, "the app's websocket could not be opened")
        return None

    def accept_client(self, app_headers: httputil.HTTPHeaders) -> iostream.IOStream | None:
        """Answer the client's handshake with what the app chose; its connection, or None if
        it left already."""
        connection = self.request.connection
        stream = getattr(connection, "stream", None)
        if stream is None or stream.closed():
            return None
        self.set_status(101)
        self.set_header("Upgrade", "websocket")
        self.set_header("Connection", "Upgrade")
        self.set_header(
            "Sec-WebSocket-Accept", accept_value(self.request.headers["Sec-WebSocket-Key"].strip())
        )
        chosen = app_headers.get("Sec-WebSocket-Protocol", "").strip()
        if chosen and chosen in self.offered_subprotocols():
            self.set_header("Sec-WebSocket-Protocol", chosen)
        settings = self.services.settings
        # Redirects and cookies are kept under the prefix unless the command line says the
        # app sees the whole URL: a repository's absolute_url cannot loosen that (SECURITY 16).
        base_url = "" if settings.absolute_url else settings.base_url
        for cookie in app_headers.get_list("Set-Cookie"):
            if app_may_set_cookie(cookie, settings.hub.client_id):
                self.add_header("Set-Cookie", h.cookie_path_under_prefix(cookie, base_url))
        self.finish()
        stream = self.detach()
        # Frames go out in pieces as they arrive: Nagle's algorithm would hold each piece's tail
        # back until the client acknowledged the last one.
        stream.set_nodelay(True)
        return stream
