"""The app's side of a websocket: our own upgrade request to the app, and its answer checked.

The proxy opens the app's websocket itself, on a plain asyncio connection, rather than with a
websocket client library: after the handshake it relays frames as they are (see `relay`), so it
needs the bare connection, and the handshake is a few lines of HTTP. The request carries the
client's headers, as any request to the app does, but a handshake of the proxy's own: its key,
the subprotocols the client offered, and no extensions, so that frames stay plain.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Sequence

from tornado import httputil

from .. import http_hygiene as h

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
# The app's handshake answer is read up to this size (the caller bounds the time it takes).
MAX_APP_HANDSHAKE = 64 * 1024
# RFC 6455 section 1.3: the accept value is the key with this GUID, hashed.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1(key.encode("utf-8") + _ACCEPT_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


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


async def open_app_stream(
    unix_socket: str, port: int | None, **kwargs: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain connection to the app: its unix socket if it has one, else its loopback port."""
    if unix_socket:
        return await asyncio.open_unix_connection(unix_socket, **kwargs)
    return await asyncio.open_connection("127.0.0.1", port, **kwargs)


def parse_app_answer(head: bytes) -> tuple[int, httputil.HTTPHeaders]:
    """The status and headers of the app's answer to the handshake (ValueError if garbled)."""
    text = head.decode("latin-1")
    status_line, _, rest = text.partition("\r\n")
    version, status, *_ = status_line.split(" ", 2) + [""]
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    return int(status), httputil.HTTPHeaders.parse(rest)


def upgrade_problem(headers: Sequence[tuple[str, str]], protocols: Sequence[str]) -> str | None:
    """Why these headers or offered subprotocols cannot be written into the upgrade request, or
    None. Written as text, a bare CR in a value would end the line for an app that reads CR as
    a line end, and what follows it would be a header of the client's making (identity
    included)."""
    for name, value in headers:
        problem = h.header_problem(name, value)
        if problem:
            return problem
    for protocol in protocols:
        if h.header_problem("Sec-WebSocket-Protocol", protocol):
            return "an offered subprotocol holds a line break or NUL"
    return None


def upgrade_request(
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]],
    protocols: Sequence[str],
    key: str,
) -> bytes:
    """The upgrade request to the app: `headers` (the client's, as for any request to the app,
    without HANDSHAKE), then a handshake of the proxy's own. `host` is used only if the client's
    headers name none. ValueError for what `upgrade_problem` refuses (the handler refuses it
    before it gets here; this is the last guard)."""
    problem = upgrade_problem(headers, protocols)
    if problem:
        raise ValueError(problem)
    lines = [f"GET {target} HTTP/1.1"]
    if not any(h.canonical_name(n) == "host" for n, _ in headers):
        lines.append(f"Host: {host}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def check_app_answer(status: int, headers: httputil.HTTPHeaders, key: str) -> None:
    """Raise AppRefused for an answer that is not 101, ValueError for a 101 that is not a
    websocket's answer to our key, or that agreed to an extension (none was offered, and the
    relay could not read its frames)."""
    if status != 101:
        raise AppRefused(status)
    upgrade = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    if (
        headers.get("Upgrade", "").lower() != "websocket"
        or "upgrade" not in upgrade
        or headers.get("Sec-WebSocket-Accept", "").strip() != accept_value(key)
    ):
        raise ValueError("the app's handshake answer is not a websocket's")
    if "Sec-WebSocket-Extensions" in headers:
        raise ValueError("the app agreed to an extension that was not offered")


async def open_app_websocket(
    unix_socket: str,
    port: int | None,
    *,
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]],
    protocols: Sequence[str],
    read_limit: int,
) -> AppWebSocket:
    """Connect to the app and complete its websocket handshake.

    Raises AppRefused if the app answered with another status, ValueError for a garbled answer
    or one over MAX_APP_HANDSHAKE, OSError or asyncio.IncompleteReadError if the connection
    failed. The connection is closed on any failure; on success it belongs to the caller.
    `read_limit` is the connection's buffer limit (the asyncio stream's `limit`).
    """
    reader, writer = await open_app_stream(unix_socket, port, limit=read_limit)
    try:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        writer.write(upgrade_request(target, host, headers, protocols, key))
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_APP_HANDSHAKE:
            raise ValueError("the app's handshake answer is too long")
        status, answer = parse_app_answer(head)
        check_app_answer(status, answer, key)
    except BaseException:
        writer.close()
        raise
    return AppWebSocket(reader, writer, answer)
