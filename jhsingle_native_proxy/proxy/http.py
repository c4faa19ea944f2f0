"""Streaming HTTP reverse proxy to the app.

Request bodies go to the app chunk by chunk as tornado reads them (`data_received` is awaited, so
a slow app slows the client down instead of filling memory), and responses come back chunk by
chunk, each flushed to the client before the next is read. Nothing is buffered whole, so bodies
of any size pass, and server-sent events or progressive output arrive as the app writes them.

Connections to the app come from one pooled aiohttp session (keep-alive), not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from tornado import iostream, web
from yarl import URL

from .. import framing
from .. import http_hygiene as h
from ..auth import AuthMixin, app_may_set_cookie
from ..base import BaseHandler
from .app_request import AppRequestMixin
from .body_decoders import BodyDecodeError

if TYPE_CHECKING:
    from .rewrite_response import RewriteRequest

log = logging.getLogger("jhsingle_native_proxy")

# Methods with a meaning in HTTP and WebDAV; tornado refuses others with 405 before we see them.
PROXIED_METHODS = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "MKCALENDAR",
)
# No cap on an allowed viewer's request bodies: they stream, so their size costs no memory.
UNLIMITED_BODY = 1 << 62
BODY_QUEUE_CHUNKS = 4
# Requests to the app in flight at once (see `_in_turn`).
APP_TURNS = 64


def app_url(target: str) -> URL:
    """The app's URL for the pooled client, as `target_url` wrote it. yarl has no empty query
    (`/x?` becomes `/x`), so a bare `?` rides at the end of the encoded path, which aiohttp
    writes into the request line as it is."""
    url = URL(target, encoded=True)
    if target.endswith("?") and not url.raw_query_string:
        url = url.with_path(url.raw_path + "?", encoded=True)
    return url


class BodyPipe:
    """Carries request body chunks from tornado to aiohttp with a small bounded queue.

    `put` waits while the queue is full (backpressure towards the client). If the app stops
    reading (it answered early, or the connection broke), the pipe is abandoned and further
    chunks are dropped instead of waiting forever.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(BODY_QUEUE_CHUNKS)
        self._abandoned = asyncio.Event()

    async def put(self, chunk: bytes | None) -> None:
        """Queue a chunk (None marks the end of the body)."""
        if self._abandoned.is_set():
            return
        try:
            self._queue.put_nowait(chunk)  # the common case: room in the queue, no waiting
            return
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self._queue.put(chunk))
        abandoned = asyncio.ensure_future(self._abandoned.wait())
        try:
            await asyncio.wait({put, abandoned}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()
            abandoned.cancel()

    async def put_end(self) -> None:
        if not self._abandoned.is_set():
            await self.put(None)

    def abandon(self) -> None:
        """Nobody will read on: drop what is queued (a cancelled request may linger in a
        reference cycle until a full garbage collection, but its chunks need not)."""
        self._abandoned.set()
        while not self._queue.empty():
            self._queue.get_nowait()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await self._queue.get()
                if chunk is None:
                    return
                yield chunk
        finally:
            self._abandoned.set()


def _has_body(request) -> bool:
    headers = request.headers
    if "Transfer-Encoding" in headers:
        return True
    try:
        return int(headers.get("Content-Length", "0")) > 0
    except ValueError:
        return False


def new_app_session(unix_socket: str = "") -> aiohttp.ClientSession:
    """The pooled client to the app, over TCP or the app's unix socket.

    - no cookie jar: cookies the app sets belong to the browser, never to the next request;
    - no decompression: Content-Encoding passes through untouched;
    - no connection limit: long-lived streams must not starve other requests;
    - large header limits: apps set big cookies.
    """
    if unix_socket:
        connector = aiohttp.UnixConnector(path=unix_socket, limit=0, keepalive_timeout=30)
    else:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        max_line_size=65536,
        max_field_size=65536,
        max_headers=512,
        read_bufsize=2**18,
    )


async def relay_response(
    handler: web.RequestHandler,
    response: aiohttp.ClientResponse,
    base_url: str,
    app_port: int | None,
    rewrite: RewriteRequest | None = None,
) -> None:
    """Write the app's status, headers and body to the client as they come (with
    --rewrite-urls, `rewrite` decides whether the body is rewritten on its way)."""
    handler.set_status(response.status, response.reason or None)
    for name in ("Content-Type", "Server", "Date"):
        handler.clear_header(name)
    connection = response.headers.getall("Connection", [])
    pairs, body_rewrite = response.headers.items(), None
    if rewrite is not None:
        pairs, body_rewrite = rewrite.response_headers(response.status, response.headers)
    for name, value in h.response_headers_for_client(pairs, connection):
        lower = name.lower()
        if lower == "location":
            value = h.rewrite_location(value, base_url, app_port)
        elif lower == "set-cookie":
            if not app_may_set_cookie(value, handler.services.settings.hub.client_id):
                continue
            value = h.cookie_path_under_prefix(value, base_url)
        elif lower == "service-worker-allowed":
            scope = h.service_worker_scope(
                value, handler.request.path, handler.services.settings.prefix, base_url
            )
            if scope is None:
                continue
            value = scope
        try:
            handler.add_header(name, h.value_for_client(value))
        except ValueError:
            # A control character (tornado refuses it): the header goes, the answer still does.
            log.warning("The app's %s header holds a control character; it was dropped", name)
    sources = handler.services.settings.frame_ancestors
    if (framing_policy := framing.policy_to_add(response.headers, sources)) is not None:
        handler.add_header("Content-Security-Policy", framing_policy)
    no_body = (
        handler.request.method == "HEAD"
        or response.status in (204, 304)
        or (100 <= response.status < 200)
    )
    if no_body:
        response.release()
        if handler.request.method == "HEAD" and (
            body_rewrite is not None or "Content-Length" not in response.headers
        ):
            # Sent now, so tornado adds no `Content-Length: 0`: a HEAD's length is its GET's,
            # and a rewritten or streamed GET has none.
            try:
                await handler.flush()
            except iostream.StreamClosedError as e:
                _drop_tracebacks(e)
                handler.note_client_gone()
                return
        handler.finish()
        return
    try:
        if body_rewrite is not None:
            from .rewrite_response import relay_rewritten

            await relay_rewritten(handler, response, body_rewrite)
        else:
            if "Content-Length" not in response.headers:
                # A stream (SSE, progressive output) may take a while to produce its first
                # bytes: send the headers at once so the client knows the stream is open.
                await handler.flush()
            async for chunk in response.content.iter_any():
                handler.write(chunk)
                handler.bytes_out += len(chunk)
                await handler.flush()
    except iostream.StreamClosedError as e:
        # The client went away; stop reading from the app.
        _drop_tracebacks(e)
        _drop_tracebacks(getattr(handler.request.connection.stream, "error", None))
        response.close()
        handler.note_client_gone()
        return
    except (aiohttp.ClientError, asyncio.TimeoutError, BodyDecodeError) as e:
        # The app broke off mid-response (or its compressed body did not decode). The status
        # line is gone already, so the only honest signal left is to cut the connection (no
        # final chunk: the client sees a truncation).
        log.warning("The app broke off the response to %s: %s", handler.logged_uri, e)
        response.close()
        with contextlib.suppress(Exception):
            handler.request.connection.close()
        return
    handler.finish()


@web.stream_request_body
class ProxyHandler(AuthMixin, AppRequestMixin, BaseHandler):
    """Everything under the prefix that is not ours goes to the app through here."""

    SUPPORTED_METHODS = PROXIED_METHODS  # type: ignore[assignment]

    _body: BodyPipe | None = None
    _with_body = False
    client_gone = False
    _upstream: asyncio.Task | None = None
    _app_too_slow = False
    _activity = True
    _rewrite: RewriteRequest | None = None  # with --rewrite-urls only
    # The app's supervisor's connections, which this request is one of while it lasts.
    _connections: set[object] | None = None

    async def prepare(self) -> None:
        # The body stays unread (tornado waits for prepare) until the viewer is authorised; the
        # server's small pre-authorisation limits hold until then.
        self.unread_body = True
        self._with_body = _has_body(self.request)
        if self.services.settings.raw_socket_proxy:
            # A raw socket app speaks no HTTP: only websockets make sense here.
            self.send_error_page(
                405, "this app is reached over a websocket only", headers={"Allow": "GET"}
            )
            return
        if self.is_hub_probe() and await self.answer_hub_probe():
            return
        # Nothing reaches the app, and the app is not even started, before this says yes.
        if not await self.authorize():
            return
        # Bodies stream, so an allowed viewer's upload has no size or time limit.
        self.request.connection.set_max_body_size(UNLIMITED_BODY)
        self.request.connection.set_body_timeout(None)  # type: ignore[arg-type]
        if not await self.wait_for_app():
            return
        self._activity = self.counts_as_activity()
        if self._activity:
            self.services.activity.touch()
        self.open_upstream()

    def open_upstream(self) -> None:
        services = self.services
        request = self.request
        # Noted in the app's supervisor until it ends: publish mode drains them (deployment).
        self._connections = services.supervisor.connections
        self._connections.add(self)
        headers = self.app_request_headers()
        if services.supervisor.settings.rewrite_urls:
            # Imported here: without --rewrite-urls the rewriters are never loaded (1.5 MiB).
            from .rewrite_response import RewriteRequest, hub_routes

            settings = services.settings
            self._rewrite = RewriteRequest(
                settings.prefix, request.method, request.headers, hub_routes(settings.hub)
            )
            headers = self._rewrite.app_headers(headers)
        present = {h.canonical_name(n) for n, _ in headers}
        skip = frozenset(
            name
            for name in ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
            if h.canonical_name(name) not in present
        )
        self._body = BodyPipe() if self._with_body else None
        self.unread_body = False
        self._upstream = asyncio.ensure_future(
            _in_turn(
                services.app_turns,
                services.app_session.request(
                    request.method,
                    app_url(self.target_url()),
                    headers=headers,
                    data=self._body.chunks() if self._body is not None else None,
                    allow_redirects=False,
                    skip_auto_headers=skip,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=services.settings.request_timeout
                    ),
                ),
            )
        )
        # Retrieve a failure even if nobody awaits it (the client went away first).
        self._upstream.add_done_callback(_quiet)

    async def data_received(self, chunk: bytes) -> None:
        if self._body is not None:
            self.bytes_in += len(chunk)
            await self._body.put(chunk)

    def on_finish(self) -> None:
        # Nothing of the app's answer outlives the request (see on_connection_close).
        self._upstream = None
        self._body = None
        if self._connections is not None:
            self._connections.discard(self)

    def on_connection_close(self) -> None:
        self.client_gone = True
        if self._connections is not None:
            self._connections.discard(self)
        # A connection that broke keeps its stream's error, whose traceback holds the stream,
        # and through it this handler and the app's buffered answer: a cycle that only a full
        # garbage collection frees, so every aborted download would grow the proxy until then.
        stream = getattr(self.request.connection, "stream", None)
        _drop_tracebacks(getattr(stream, "error", None))
        # The base method ends a streamed body's wait; without it the handler lives on.
        super().on_connection_close()
        if self._body is not None:
            self._body.abandon()
        if self._upstream is not None and not self._upstream.done():
            self._upstream.cancel()

    def _too_slow(self) -> None:
        """The app has not answered within --request-timeout: give up on it (504)."""
        if self._upstream is not None and not self._upstream.done():
            self._app_too_slow = True
            self._upstream.cancel()

    async def proxy(self, *args: str) -> None:
        """Called once the whole request body has been read: relay the app's answer."""
        if self._body is not None:
            await self._body.put_end()
        upstream = self._upstream
        assert upstream is not None
        settings = self.services.settings
        # One timer rather than wait_for(shield(...)): that pair costs two futures and a loop
        # turn per request, a tenth of the proxy's CPU for a small GET (bench/client_floor.py).
        timer = asyncio.get_running_loop().call_later(settings.request_timeout, self._too_slow)
        try:
            response = await upstream
        except asyncio.CancelledError:
            if self._app_too_slow:
                self.send_error_page(
                    504, f"the app did not answer within {settings.request_timeout:g} seconds"
                )
                return
            if not self.client_gone:
                raise
            # on_connection_close cancelled the app's request: the client left first.
            self.note_client_gone()
            return
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as e:
            log.warning("The app refused %s %s: %s", self.request.method, self.logged_uri, e)
            self.send_error_page(502, "the app refused the connection; it may be restarting")
            return
        except (aiohttp.ClientError, OSError) as e:
            log.warning("The app failed %s %s: %s", self.request.method, self.logged_uri, e)
            self.send_error_page(502, "the app closed the connection without an answer")
            return
        finally:
            timer.cancel()
        try:
            # Redirects and cookies are kept under the prefix unless the command line says the
            # app sees the whole URL: a repository's absolute_url cannot loosen that (SECURITY 16).
            base_url = "" if settings.absolute_url else settings.base_url
            await relay_response(self, response, base_url, self._app_port, self._rewrite)
        finally:
            if self._activity:
                self.services.activity.touch()


def _drop_tracebacks(error: BaseException | None) -> None:
    """Forget where a client-side connection error was raised, to break reference cycles.

    tornado keeps a broken stream's error, and the error's traceback holds the frames that
    wrote to the stream: the stream itself, its handler, the app's answer being relayed. Such a
    cycle is freed only by a full garbage collection, so without this every aborted download
    would hold its buffers, and grow the proxy, until one happens.
    """
    for _ in range(8):  # a chain of causes is short; a bound all the same
        if error is None:
            return
        error.__traceback__ = None
        error = getattr(error, "real_error", None) or error.__context__


async def _in_turn(turns: asyncio.Semaphore, sending):
    """Send a request to the app once a turn is free; the turn ends with the response's headers.

    At most APP_TURNS requests are sent and awaiting their answer's headers at once (an upload
    holds its turn while it is sent); responses being relayed, server-sent events and websockets
    hold none. Beyond that number the
    app answers no faster, but the proxy's event loop fills with work that delays everything
    else, websocket messages first: waiting here costs nothing. It also bounds the connections
    kept open to the app.
    """
    try:
        await turns.acquire()
    except BaseException:
        sending.close()  # cancelled while waiting: the request was never sent
        raise
    try:
        return await sending
    finally:
        turns.release()


def _quiet(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


for _method in PROXIED_METHODS:
    setattr(ProxyHandler, _method.lower(), ProxyHandler.proxy)
