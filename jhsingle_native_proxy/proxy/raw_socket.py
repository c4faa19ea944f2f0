"""--raw-socket-proxy: the client speaks websocket, the app a plain byte stream (websockify's way,
for VNC servers and the like).

Here the proxy does terminate the websocket: tornado's WebSocketHandler takes the client's
handshake and messages, each message's bytes go to the app's socket, and what the app writes
comes back as binary messages. Frames cannot be relayed as they are, as in the usual mode, since
the app has no frames to relay.
"""

from __future__ import annotations

import asyncio
import logging

from tornado import websocket

from .app_websocket import open_app_stream
from .frames import INTERNAL_ERROR, NORMAL_CLOSURE, PROTOCOL_ERROR, valid_close_code

log = logging.getLogger("jhsingle_native_proxy")

# Reads from the app's socket of up to this size, each sent as one message.
RAW_READ_CHUNK = 65536


class _CheckedCloseProtocol(websocket.WebSocketProtocol13):
    """tornado's websocket protocol, but a close frame never carries a code RFC 6455 forbids.

    tornado answers a client's close frame with the same code, in the protocol object itself,
    with no hook in the handler: a client that sent 999 or 1005 would be sent it back. Such a
    code is a protocol error, answered with 1002.
    """

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code is not None and not valid_close_code(code):
            code, reason = PROTOCOL_ERROR, "invalid close code"
        super().close(code, reason)


class RawSocketBridge:
    """The raw-socket half of the websocket handler: a mixin before tornado's WebSocketHandler.

    `bridge_raw_socket` connects to the app, then lets tornado complete the client's handshake;
    `open`, `on_message` and `on_close` are tornado's callbacks from then on. The handler using
    this has authorised the viewer and made sure that the app runs before it calls it.
    """

    # A plain stream to the app instead of its websocket.
    raw_writer: asyncio.StreamWriter | None = None
    raw_reader: asyncio.StreamReader | None = None
    _from_app: asyncio.Task | None = None
    # The app's supervisor's connections, which this one is while open: an open socket is in
    # use, so --idle-stop does not stop the app under it (idle_watch.py).
    _connections: set[object] | None = None

    def get_websocket_protocol(self):
        """tornado's protocol for the handshake, with close codes checked (see above).

        The one place where tornado's websocket internals are used: tornado offers no public way
        to change how its protocol echoes a close frame, so its protocol is rebuilt, with the
        parameters tornado chose for it (`params`: ping interval, message size limit), as our
        subclass. tornado's WebSocketHandler.get calls this method for every handshake.
        """
        protocol = super().get_websocket_protocol()  # type: ignore[misc]
        if protocol is None:
            return None
        return _CheckedCloseProtocol(self, False, protocol.params)

    def check_origin(self, origin: str) -> bool:
        # Origins were checked (with the rest of forgery protection) before the app was
        # contacted; tornado's own rule differs between versions, so it is not consulted.
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # websockify's clients (noVNC) ask for "binary": that is what we relay.
        return "binary" if "binary" in subprotocols else None

    async def bridge_raw_socket(self, *args: str) -> None:
        """Connect to the app's socket, then complete the client's handshake (tornado's)."""
        try:
            try:
                self.raw_reader, self.raw_writer = await asyncio.wait_for(
                    open_app_stream(
                        self.services.supervisor.unix_socket, self.services.supervisor.port
                    ),
                    self.services.settings.request_timeout,
                )
            except (OSError, asyncio.TimeoutError) as e:
                log.warning("Cannot connect to the app's socket: %s", e)
                self.send_error_page(502, "the app's socket refused the connection")
                return
            # tornado's handshake, not the handler's own `get` (which called this).
            await websocket.WebSocketHandler.get(self, *args)
        finally:
            # However the client's side ended, the app's side must not outlive it.
            if self._from_app is not None:
                self._from_app.cancel()
            self._close_raw()

    def open(self, *args: str) -> None:
        self._connections = self.services.supervisor.connections
        self._connections.add(self)
        self._from_app = asyncio.ensure_future(self.relay_from_raw_socket())

    async def relay_from_raw_socket(self) -> None:
        """The app's bytes to the client, a binary message per read, until either side ends."""
        reader = self.raw_reader
        assert reader is not None
        try:
            while data := await reader.read(RAW_READ_CHUNK):
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
            self.close(INTERNAL_ERROR, "the app's socket broke")

    def on_close(self) -> None:
        # Tornado also calls this when the client leaves before the handshake is done, when the
        # app's side may not exist yet: `bridge_raw_socket` closes it then, once it does.
        self._close_raw()
        if self._from_app is not None:
            self._from_app.cancel()
        if self._connections is not None:
            self._connections.discard(self)
