"""Websocket bridge: the client's websocket on one side, the app's on the other.

Order matters. The viewer is authorised first, then the app's websocket is opened, and only then
is the client's handshake completed, with what the app answered: the subprotocol the *app* chose
and the cookies it set (Streamlit, for one, relies on both).

After the handshakes, frames are relayed as they are, payload bytes untouched: the client's
frames are masked, as a client's frames to a server must be, so they are already right for the
app, and the app's unmasked frames are right for the client. Decoding and re-encoding every
message cost most of the time a round trip took. The proxy reads only each frame's header (see
`frames`), which is enough for the size limit, the close handshake (codes and reasons pass both
ways), protocol errors and keepalive pings. No extension is negotiated with either side, so
frames are plain. Each direction awaits the other side's write before reading more, so a slow
reader slows the writer down instead of filling the proxy's memory.

With --raw-socket-proxy the app speaks no websocket: tornado's websocket takes the messages and
their bytes go to the app's socket.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping

from tornado import httputil, iostream, websocket
from tornado.routing import Matcher, PathMatches

from ..auth import AuthMixin, is_hub_cookie
from ..base import BaseHandler
from . import frames
from . import headers as h
from .frames import valid_close_code
from .http import AppRequestMixin

log = logging.getLogger("jhsingle_native_proxy")

# Headers that belong to the websocket handshake itself: the proxy makes its own for the app.
# Sec-WebSocket-Extensions goes too: with no extension (permessage-deflate) agreed on either
# side, frames are plain and can be relayed as they are. Content-Length: a handshake has no body.
HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "content-length",
    }
)
# The app's handshake answer is read up to this size, within --request-timeout.
MAX_APP_HANDSHAKE = 64 * 1024
# Reads of up to this size; the app's connection buffers at most twice as much before it stops
# reading (the asyncio stream's limit). Larger than 64 KiB: fewer turns for large messages.
READ_CHUNK = 256 * 1024
# How long the other side has to answer a close before both connections are cut.
CLOSE_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE = 128 * 1024 * 1024
NORMAL_CLOSURE = 1000


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


class _CheckedCloseProtocol(websocket.WebSocketProtocol13):
    """tornado's websocket protocol, but a close frame never carries a code RFC 6455 forbids.

    tornado answers a client's close frame with the same code; a client that sent 999 or 1005
    would be sent it back. Such a code is a protocol error, answered with 1002. (Used with
    --raw-socket-proxy, where tornado reads the client's messages.)
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


class _Outlet:
    """One side's connection as the relay writes to it, frame boundaries in mind.

    Frames of the proxy's own (keepalive pings, closes) may only go between two relayed frames:
    `mid_frame` says whether a relayed frame is half written, and what cannot go now waits in
    `pending` for the frame's end. Once a close frame was sent, nothing more is.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        drain: Callable[[], Awaitable[None]],
        *,
        mask: bool,
    ):
        self._write = write
        self._drain = drain
        self.mask = mask  # frames of ours to this side are masked (toward the app)
        self.mid_frame = False
        self.pending: bytes | None = None
        self.close_sent = False

    async def send(self, data: bytes, *, mid_frame: bool) -> None:
        """Relay bytes and wait until the side took them (backpressure)."""
        self._write(data)
        self.mid_frame = mid_frame
        if not mid_frame and self.pending is not None:
            pending, self.pending = self.pending, None
            self._write(pending)
        await self._drain()

    def inject(self, frame: bytes) -> None:
        """A control frame of ours, now if between frames, else at the current frame's end."""
        if self.close_sent:
            return
        if self.mid_frame:
            self.pending = frame  # one is enough: a later ping replaces an unsent one
            return
        with contextlib.suppress(iostream.StreamClosedError, ConnectionError):
            self._write(frame)

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (once), unless a relayed frame is half written: then only the
        connection's end will tell."""
        if self.close_sent:
            return
        self.close_sent = True
        if self.mid_frame:
            return
        with contextlib.suppress(iostream.StreamClosedError, ConnectionError, asyncio.TimeoutError):
            self._write(frames.close_frame(code, reason, mask=self.mask))
            await asyncio.wait_for(self._drain(), CLOSE_TIMEOUT)


class FrameRelay:
    """Frames both ways between a client's websocket (a tornado stream, after the handshake)
    and the app's (an asyncio connection, after the handshake), payloads as they are."""

    def __init__(
        self,
        client: iostream.IOStream,
        app_reader: asyncio.StreamReader,
        app_writer: asyncio.StreamWriter,
        *,
        limit: int | None,
        ping_interval: float | None,
        touch: Callable[[], None],
    ):
        self.client = client
        self.app_reader = app_reader
        self.app_writer = app_writer
        self.limit = limit
        self.ping_interval = ping_interval
        self.touch = touch
        # When each side last sent anything (event loop time): pongs count, so does all else.
        self.heard = {True: 0.0, False: 0.0}
        # Whose pump waits for the other side to take its bytes: it is not reading, so that side
        # may well be talking (backpressure), not silent.
        self.waiting = {True: False, False: False}
        self._client_write: asyncio.Future | None = None
        self.to_client = _Outlet(self._write_client, self._drain_client, mask=False)
        self.to_app = _Outlet(app_writer.write, app_writer.drain, mask=True)

    def _write_client(self, data: bytes) -> None:
        self._client_write = self.client.write(data)

    async def _drain_client(self) -> None:
        # tornado's write future is done once everything written so far has left its buffer.
        if self._client_write is not None:
            future, self._client_write = self._client_write, None
            await future

    async def _read_client(self) -> bytes:
        try:
            return await self.client.read_bytes(READ_CHUNK, partial=True)
        except iostream.StreamClosedError:
            return b""

    async def _read_app(self) -> bytes:
        try:
            return await self.app_reader.read(READ_CHUNK)
        except ConnectionError:
            return b""

    async def run(self) -> None:
        """Relay until the websocket ends; both connections are closed on return."""
        upward = asyncio.ensure_future(
            self._pump(self._read_client, self.to_app, self.to_client, masked=True)
        )
        downward = asyncio.ensure_future(
            self._pump(self._read_app, self.to_client, self.to_app, masked=False)
        )
        pinger = asyncio.ensure_future(self._ping()) if self.ping_interval else None
        pumps = {upward, downward}
        try:
            watched = pumps if pinger is None else {*pumps, pinger}
            done, rest = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            first = done.pop()
            rest.discard(pinger)  # type: ignore[arg-type]
            if first is pinger:
                rest = set()  # a side stopped answering pings: nothing more to wait for
            if rest and not first.cancelled() and first.exception() is None and first.result():
                # One side sent a close, now with the other: its answer is awaited, a while.
                await asyncio.wait(rest, timeout=CLOSE_TIMEOUT)
        finally:
            for task in (*pumps, pinger):
                if task is not None:
                    task.cancel()
            for task in pumps:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.warning("The websocket relay failed: %r", task.exception())
            self.client.close()
            self.app_writer.close()

    async def _ping(self) -> None:
        """Keepalive pings to both sides (their pongs are relayed: unsolicited pongs are fine).

        A side that sent nothing, not even a pong, for two intervals (a ping's whole interval
        unanswered) is gone without a word, as a vanished network leaves it: the relay ends,
        and the other side is told, instead of waiting for TCP to notice, which takes minutes.
        """
        interval = self.ping_interval
        assert interval
        loop = asyncio.get_running_loop()
        self.heard = dict.fromkeys(self.heard, loop.time())
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            if now - self.heard[True] > 2 * interval and not self.waiting[True]:
                log.info("A websocket's client stopped answering pings; closing it")
                await self.to_app.close(frames.GOING_AWAY, "the client stopped answering")
                return
            if now - self.heard[False] > 2 * interval and not self.waiting[False]:
                log.warning("The app's websocket stopped answering pings; closing it")
                await self.to_client.close(frames.INTERNAL_ERROR, "the app stopped answering")
                return
            self.to_client.inject(frames.build_frame(frames.PING, mask=False))
            self.to_app.inject(frames.build_frame(frames.PING, mask=True))

    async def _send(
        self,
        to: _Outlet,
        data: bytes,
        mid_frame: bool,
        masked: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.waiting[masked] = True
        try:
            await to.send(data, mid_frame=mid_frame)
        finally:
            self.waiting[masked] = False
            self.heard[masked] = loop.time()

    async def _pump(
        self,
        read: Callable[[], Awaitable[bytes]],
        to: _Outlet,
        back: _Outlet,
        *,
        masked: bool,
    ) -> bool:
        """Relay one direction's frames until it ends; True if it ended with a close frame.

        Only headers are parsed: the bytes from one header to the next go out as they came.
        What stays buffered between reads is at most a partial header or a close frame.
        """
        tracker = frames.MessageTracker(masked=masked, limit=self.limit)
        loop = asyncio.get_running_loop()
        rest = b""  # a frame header (or close frame) not complete yet
        left = 0  # payload bytes of the current frame still to come
        try:
            while True:
                data = await read()
                if not data:
                    # Gone without a close frame: the other side gets one.
                    if masked:
                        await to.close(frames.GOING_AWAY, "the client went away")
                    else:
                        await to.close(frames.INTERNAL_ERROR, "the app closed the connection")
                    return False
                self.touch()
                self.heard[masked] = loop.time()
                if not rest and left >= len(data):
                    # Inside a frame's payload (a large message): straight through.
                    left -= len(data)
                    await self._send(to, data, left > 0, masked, loop)
                    continue
                if rest:
                    data = rest + data
                i, end = 0, len(data)
                close: tuple[int, str] | None = None
                error: frames.FrameError | None = None
                while True:
                    if left:
                        take = min(left, end - i)
                        i += take
                        left -= take
                        if left:
                            break
                    header = frames.parse_header(data, i)
                    if header is None:
                        break
                    try:
                        tracker.check(header)
                        if header.opcode == frames.CLOSE:
                            if end < i + header.size + header.length:
                                break
                            close = frames.read_close(
                                header, data[i : i + header.size + header.length]
                            )
                    except frames.FrameError as e:
                        error = e
                    if close is not None or error is not None:
                        break
                    i += header.size
                    left = header.length
                if close is None and error is None:
                    rest = data[i:] if i < end else b""
                if i:
                    await self._send(to, data if i == end else data[:i], left > 0, masked, loop)
                if error is not None:
                    log.debug("Closing a websocket: %s", error.reason)
                    await back.close(error.code, error.reason)
                    await to.close(error.code, error.reason)
                    return False
                if close is not None:
                    await to.close(*close)
                    return True
        except (iostream.StreamClosedError, ConnectionError, asyncio.TimeoutError):
            # Writing to one side failed: the other is told, if its connection still works.
            if masked:
                await back.close(frames.INTERNAL_ERROR, "the app's websocket broke")
            else:
                await back.close(frames.GOING_AWAY, "the client went away")
            return False


def _parse_app_answer(head: bytes) -> tuple[int, httputil.HTTPHeaders]:
    """The status and headers of the app's answer to the handshake (ValueError if garbled)."""
    text = head.decode("latin-1")
    status_line, _, rest = text.partition("\r\n")
    version, status, *_ = status_line.split(" ", 2) + [""]
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    return int(status), httputil.HTTPHeaders.parse(rest)


class AppRefused(Exception):
    """The app answered the websocket handshake with something else than 101."""

    def __init__(self, status: int):
        super().__init__(f"status {status}")
        self.status = status


class AppWebSocket:
    """The app's side after its handshake: the connection and what the app answered."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: httputil.HTTPHeaders,
    ):
        self.reader = reader
        self.writer = writer
        self.headers = headers


class WebSocketProxyHandler(AuthMixin, AppRequestMixin, BaseHandler, websocket.WebSocketHandler):
    """A websocket under the prefix: authorise, open the app's side, then accept the client.

    It is a tornado WebSocketHandler for --raw-socket-proxy only, where tornado reads the
    client's messages; otherwise the client's handshake is answered here and the connection
    taken over (`detach`) to relay frames.
    """

    # --raw-socket-proxy: a plain stream to the app instead of its websocket.
    raw_writer: asyncio.StreamWriter | None = None
    raw_reader: asyncio.StreamReader | None = None
    _pump: asyncio.Task | None = None

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
        if services.settings.raw_socket_proxy:
            await self.bridge_raw_socket(*args)
        else:
            await self.relay_frames()

    # -- websockets: frames relayed as they are

    def offered_subprotocols(self) -> list[str]:
        return [
            p.strip()
            for value in self.request.headers.get_list("Sec-WebSocket-Protocol")
            for p in value.split(",")
            if p.strip()
        ]

    async def relay_frames(self) -> None:
        """Open the app's websocket, complete the client's handshake with its answer, relay."""
        app = await self.open_app_websocket()
        if app is None:
            return
        relayed = False
        try:
            client = self.accept_client(app.headers)
            if client is None:
                return
            relayed = True
            relay = FrameRelay(
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
        """The app's side, after its handshake; None once the client was answered with why not."""
        try:
            return await asyncio.wait_for(
                self._app_handshake(), self.services.settings.request_timeout
            )
        except AppRefused as e:
            log.warning("The app refused the websocket %s: %s", self.logged_uri, e.status)
            status = e.status if 400 <= e.status < 600 else 502
            self.send_error_page(status, "the app refused the websocket")
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            # ValueError: a garbled answer, or one over MAX_APP_HANDSHAKE (LimitOverrunError).
            log.warning("Cannot open the app's websocket %s: %s", self.logged_uri, e)
            self.send_error_page(502, "the app's websocket could not be opened")
        return None

    async def _app_handshake(self) -> AppWebSocket:
        supervisor = self.services.supervisor
        if supervisor.unix_socket:
            reader, writer = await asyncio.open_unix_connection(
                supervisor.unix_socket, limit=READ_CHUNK
            )
        else:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", supervisor.port, limit=READ_CHUNK
            )
        try:
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            writer.write(self._app_handshake_request(key))
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_APP_HANDSHAKE:
                raise ValueError("the app's handshake answer is too long")
            status, headers = _parse_app_answer(head)
            if status != 101:
                raise AppRefused(status)
            accept = websocket.WebSocketProtocol13.compute_accept_value(key)
            upgrade = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
            if (
                headers.get("Upgrade", "").lower() != "websocket"
                or "upgrade" not in upgrade
                or headers.get("Sec-WebSocket-Accept", "").strip() != accept
            ):
                raise ValueError("the app's handshake answer is not a websocket's")
            if "Sec-WebSocket-Extensions" in headers:
                raise ValueError("the app agreed to an extension that was not offered")
        except BaseException:
            writer.close()
            raise
        return AppWebSocket(reader, writer, headers)

    def _app_handshake_request(self, key: str) -> bytes:
        """The upgrade request to the app: the client's headers as for any request to the app,
        with a handshake of the proxy's own (its key; no extensions)."""
        supervisor = self.services.supervisor
        target = self.target_url()[len(supervisor.origin) :] or "/"
        headers = self.app_request_headers(drop=HANDSHAKE)
        lines = [f"GET {target} HTTP/1.1"]
        if not any(h.canonical_name(n) == "host" for n, _ in headers):
            lines.append(f"Host: {supervisor.origin.split('//', 1)[1]}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        protocols = self.offered_subprotocols()
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

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
            "Sec-WebSocket-Accept",
            websocket.WebSocketProtocol13.compute_accept_value(
                self.request.headers["Sec-WebSocket-Key"].strip()
            ),
        )
        chosen = app_headers.get("Sec-WebSocket-Protocol", "").strip()
        if chosen and chosen in self.offered_subprotocols():
            self.set_header("Sec-WebSocket-Protocol", chosen)
        for cookie in app_headers.get_list("Set-Cookie"):
            if is_hub_cookie(cookie.split("=", 1)[0]):
                log.warning("Dropped a JupyterHub cookie that the app tried to set")
                continue
            self.add_header("Set-Cookie", cookie)
        self.finish()
        stream = self.detach()
        # Frames go out in pieces as they arrive: Nagle's algorithm would hold each piece's tail
        # back until the client acknowledged the last one.
        stream.set_nodelay(True)
        return stream

    # -- --raw-socket-proxy: tornado's websocket to the client, a plain stream to the app

    async def bridge_raw_socket(self, *args: str) -> None:
        try:
            try:
                self.raw_reader, self.raw_writer = await self.connect_raw()
            except (OSError, asyncio.TimeoutError) as e:
                log.warning("Cannot connect to the app's socket: %s", e)
                self.send_error_page(502, "the app's socket refused the connection")
                return
            await super().get(*args)
        finally:
            # However the client's side ended, the app's side must not outlive it.
            if self._pump is not None:
                self._pump.cancel()
            self._close_raw()

    async def connect_raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        supervisor = self.services.supervisor
        timeout = self.services.settings.request_timeout
        if supervisor.unix_socket:
            connecting = asyncio.open_unix_connection(supervisor.unix_socket)
        else:
            connecting = asyncio.open_connection("127.0.0.1", supervisor.port)
        return await asyncio.wait_for(connecting, timeout)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # websockify's clients (noVNC) ask for "binary": that is what we relay.
        return "binary" if "binary" in subprotocols else None

    def open(self, *args: str) -> None:
        self._pump = asyncio.ensure_future(self.relay_from_raw_socket())

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
        if self.raw_writer is None:
            return
        data = message if isinstance(message, bytes) else message.encode("utf-8")
        try:
            self.raw_writer.write(data)
            await self.raw_writer.drain()
        except ConnectionError:
            self.close(1011, "the app's socket broke")

    def on_close(self) -> None:
        # Tornado also calls this when the client leaves before the handshake is done, when the
        # app's side may not exist yet: `get` closes it then, once it does.
        self._close_raw()
        if self._pump is not None:
            self._pump.cancel()
