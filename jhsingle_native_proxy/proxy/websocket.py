"""Websocket bridge: the client's websocket on one side, the app's on the other.

Order matters. The viewer is authorised first, then the app's websocket is opened, and only then
is the client's handshake completed, with what the app answered: the subprotocol the *app* chose
and the cookies it set (Streamlit, for one, relies on both). Messages are relayed in order both
ways, each direction awaiting the other side's write, so a slow reader slows the writer down
instead of filling the proxy's memory. Close codes and reasons pass through both ways.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping

import aiohttp
from tornado import websocket
from tornado.routing import Matcher, PathMatches
from yarl import URL

from ..auth import AuthMixin, is_hub_cookie
from ..base import BaseHandler
from .http import AppRequestMixin

log = logging.getLogger("jhsingle_native_proxy")

# Headers that belong to the websocket handshake itself; aiohttp makes its own.
HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
DEFAULT_MAX_MESSAGE = 128 * 1024 * 1024
NORMAL_CLOSURE = 1000
# Codes a close frame may not carry; stand-ins for "no status" and "abnormal closure".
RESERVED_CLOSE_CODES = {1005, 1006, 1015}


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


def valid_close_code(code: int | None) -> bool:
    """A code a close frame may carry (RFC 6455 section 7.4): 1000-1003, 1007-1014, 3000-4999."""
    return code is not None and (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


class _CheckedCloseProtocol(websocket.WebSocketProtocol13):
    """tornado's websocket protocol, but a close frame never carries a code RFC 6455 forbids.

    tornado answers a client's close frame with the same code; a client that sent 999 or 1005
    would be sent it back. Such a code is a protocol error, answered with 1002.
    """

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is not None and not valid_close_code(code):
            code, reason = 1002, "invalid close code"
        super().close(code, reason)


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


class WebSocketProxyHandler(AuthMixin, AppRequestMixin, BaseHandler, websocket.WebSocketHandler):
    """A websocket under the prefix: authorise, open the app's side, then accept the client."""

    upstream: aiohttp.ClientWebSocketResponse | None = None
    # --raw-socket-proxy: a plain stream to the app instead of its websocket.
    raw_writer: asyncio.StreamWriter | None = None
    raw_reader: asyncio.StreamReader | None = None
    _pump: asyncio.Task | None = None
    # Set once on_close has begun closing the app's side (with the client's close code).
    _app_side_closing = False

    @property
    def max_message_size(self) -> int | None:  # type: ignore[override]
        size = self.services.settings.websocket_max_message_size
        if size is None:
            return DEFAULT_MAX_MESSAGE
        return size or None  # 0: no limit beyond memory

    def get_websocket_protocol(self):
        protocol = super().get_websocket_protocol()
        if protocol is None:
            return None
        return _CheckedCloseProtocol(self, False, protocol.params)

    def check_origin(self, origin: str) -> bool:
        # Origins were checked (with the rest of forgery protection) in `get`, before the app was
        # contacted; tornado's own rule differs between versions, so it is not consulted.
        return True

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
        try:
            if not await self.open_app_side():
                return
            await super().get(*args)
        finally:
            # However the client's side ended (refused, gone before the handshake finished, or
            # closed), the app's side must not outlive it.
            if not self._app_side_closing:
                await self.close_app_side()

    async def open_app_side(self) -> bool:
        """Connect to the app (its websocket, or its raw socket); answer the client if it fails."""
        if self.services.settings.raw_socket_proxy:
            try:
                self.raw_reader, self.raw_writer = await self.connect_raw()
            except (OSError, asyncio.TimeoutError) as e:
                log.warning("Cannot connect to the app's socket: %s", e)
                self.send_error_page(502, "the app's socket refused the connection")
                return False
            return True
        try:
            self.upstream = await self.connect_upstream()
        except aiohttp.WSServerHandshakeError as e:
            log.warning("The app refused the websocket %s: %s", self.logged_uri, e.status)
            self.send_error_page(
                e.status if 400 <= e.status < 600 else 502, "the app refused the websocket"
            )
            return False
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            log.warning("Cannot open the app's websocket %s: %s", self.logged_uri, e)
            self.send_error_page(502, "the app's websocket could not be opened")
            return False
        for cookie in self.upstream._response.headers.getall("Set-Cookie", []):
            if is_hub_cookie(cookie.split("=", 1)[0]):
                log.warning("Dropped a JupyterHub cookie that the app tried to set")
                continue
            self.add_header("Set-Cookie", cookie)
        return True

    async def close_app_side(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self.raw_writer is not None:
            self._close_raw()
        if self.upstream is not None and not self.upstream.closed:
            with contextlib.suppress(Exception):
                await self.upstream.close(code=1001, message=b"the client went away")

    async def connect_upstream(self) -> aiohttp.ClientWebSocketResponse:
        services = self.services
        request = self.request
        headers = self.app_request_headers(drop=HANDSHAKE)
        protocols = [
            p.strip()
            for value in request.headers.get_list("Sec-WebSocket-Protocol")
            for p in value.split(",")
            if p.strip()
        ]
        url = self.target_url().replace("http://", "ws://", 1)
        return await services.app_session.ws_connect(
            URL(url, encoded=True),
            headers=headers,
            protocols=protocols,
            max_msg_size=self.max_message_size or 0,
            autoclose=False,
            autoping=True,
            heartbeat=services.settings.websocket_ping_interval or None,
            timeout=aiohttp.ClientWSTimeout(ws_close=10),
            compress=0,
        )

    async def connect_raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        supervisor = self.services.supervisor
        timeout = self.services.settings.request_timeout
        if supervisor.unix_socket:
            connecting = asyncio.open_unix_connection(supervisor.unix_socket)
        else:
            connecting = asyncio.open_connection("127.0.0.1", supervisor.port)
        return await asyncio.wait_for(connecting, timeout)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        if self.raw_writer is not None:
            # websockify's clients (noVNC) ask for "binary": that is what we relay.
            return "binary" if "binary" in subprotocols else None
        chosen = self.upstream.protocol if self.upstream is not None else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: str) -> None:
        if self.raw_reader is not None:
            self._pump = asyncio.ensure_future(self.relay_from_raw_socket())
        else:
            self._pump = asyncio.ensure_future(self.relay_from_app())

    async def relay_from_raw_socket(self) -> None:
        reader = self.raw_reader
        assert reader is not None
        try:
            while data := await reader.read(65536):
                self.services.activity.touch()
                await self.write_message(data, binary=True)
            self.close(NORMAL_CLOSURE, "the app closed the connection")
        except (websocket.WebSocketClosedError, ConnectionError):
            self._close_raw()

    def _close_raw(self) -> None:
        if self.raw_writer is not None:
            self.raw_writer.close()

    async def on_message(self, message: str | bytes) -> None:
        self.services.activity.touch()
        if self.raw_writer is not None:
            data = message if isinstance(message, bytes) else message.encode("utf-8")
            try:
                self.raw_writer.write(data)
                await self.raw_writer.drain()
            except ConnectionError:
                self.close(1011, "the app's socket broke")
            return
        upstream = self.upstream
        if upstream is None or upstream.closed:
            return
        try:
            if isinstance(message, bytes):
                await upstream.send_bytes(message)
            else:
                await upstream.send_str(message)
        except (aiohttp.ClientError, ConnectionError) as e:
            log.debug("Cannot send to the app's websocket: %s", e)
            self.close(1011, "the app's websocket broke")

    async def relay_from_app(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        try:
            while True:
                # Not `async for`: it ends on a close frame and hides its code and reason.
                msg = await upstream.receive()
                self.services.activity.touch()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self.write_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await self.write_message(msg.data, binary=True)
                elif msg.type == aiohttp.WSMsgType.CLOSE:
                    code = msg.data if valid_close_code(msg.data) else NORMAL_CLOSURE
                    await upstream.close(code=code)
                    self.close(code, msg.extra or None)
                    return
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    too_big = getattr(msg.data, "code", None) == 1009
                    log.warning("The app's websocket failed: %s", msg.data)
                    if too_big:
                        self.close(1009, "message too big")
                    else:
                        self.close(1011, "the app's websocket failed")
                    return
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    self.close(upstream.close_code or 1011, None)
                    return
        except websocket.WebSocketClosedError:
            await upstream.close()

    def on_close(self) -> None:
        # Tornado also calls this when the client leaves before the handshake is done, when the
        # app's side may not exist yet: `get` closes it then, once it does.
        if self.raw_writer is not None:
            self._app_side_closing = True
            self._close_raw()
            if self._pump is not None:
                self._pump.cancel()
            return
        upstream = self.upstream
        if upstream is None or upstream.closed:
            return
        self._app_side_closing = True
        code = self.close_code
        if code is None or code in RESERVED_CLOSE_CODES:
            code = NORMAL_CLOSURE
        elif not valid_close_code(code):
            code = 1002
        reason = (self.close_reason or "").encode("utf-8")
        asyncio.ensure_future(self._close_upstream(upstream, code, reason))

    async def _close_upstream(self, upstream, code: int, reason: bytes) -> None:
        with contextlib.suppress(Exception):
            await upstream.close(code=code, message=reason)
        if self._pump is not None:
            self._pump.cancel()
