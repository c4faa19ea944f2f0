"""Frames relayed both ways between the client's websocket and the app's, payloads untouched.

After the handshakes, frames are relayed as they are: the client's frames are masked, as a
client's frames to a server must be, so they are already right for the app, and the app's
unmasked frames are right for the client. Decoding and re-encoding every message cost most of
the time a round trip took. The relay reads only each frame's header (see `frames`), which is
enough for the size limit, the close handshake (codes and reasons pass both ways), protocol
errors and keepalive pings. No extension is negotiated with either side, so frames are plain.
Each direction awaits the other side's write before reading more, so a slow reader slows the
writer down instead of filling the proxy's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tornado import iostream

from . import frames

log = logging.getLogger("jhsingle_native_proxy")

# Reads of up to this size; the app's connection buffers at most twice as much before it stops
# reading (the asyncio stream's limit). Larger than 64 KiB: fewer turns for large messages.
READ_CHUNK = 256 * 1024
# How long the other side has to answer a close before both connections are cut.
CLOSE_TIMEOUT = 10.0


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

    def end_for_restart(self) -> asyncio.Future:
        """The app behind this websocket goes away (publish mode's switch): the client is told
        1012 (Service Restart), so that it reconnects, and the app 1001; both connections are
        cut if a side does not answer within CLOSE_TIMEOUT."""
        return asyncio.ensure_future(self._end_for_restart())

    async def _end_for_restart(self) -> None:
        await self.to_client.close(frames.SERVICE_RESTART, "Service Restart")
        await self.to_app.close(frames.GOING_AWAY, "the server restarts")
        loop = asyncio.get_running_loop()
        loop.call_later(CLOSE_TIMEOUT, self.client.close)
        loop.call_later(CLOSE_TIMEOUT, self.app_writer.close)

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
