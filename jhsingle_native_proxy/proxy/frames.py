"""Websocket frames read by their headers only (RFC 6455 section 5), for a relay that copies them.

The proxy does not decode and re-encode messages: payload bytes pass as they are, which is where
the time went. It still has to know where each frame starts and ends, to enforce the message
size limit, to see close frames, to keep the protocol's rules that need no payload (reserved
bits, opcodes, masking, fragmentation, control frame sizes) and to slip keepalive pings in
between frames. This module does that on plain bytes, with no I/O, so it can be tested alone.

Text payloads are not checked for UTF-8: that needs the payload decoded, and the endpoints (the
browser, the app's websocket library) check it themselves.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
DATA_OPCODES = frozenset({CONTINUATION, TEXT, BINARY})
CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})
MAX_CONTROL_PAYLOAD = 125
NORMAL_CLOSURE, GOING_AWAY, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG, INTERNAL_ERROR = (
    1000,
    1001,
    1002,
    1007,
    1009,
    1011,
)
SERVICE_RESTART = 1012  # the server restarts: a client may reconnect (publish mode's switch)


class FrameError(Exception):
    """A frame that ends the websocket; `code` is the close code to send both ways."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def valid_close_code(code: int | None) -> bool:
    """A code a close frame may carry (RFC 6455 section 7.4): 1000-1003, 1007-1014, 3000-4999."""
    return code is not None and (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    )


@dataclass(frozen=True)
class Header:
    """A frame's header: what is needed to find the frame's end and judge it."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length: int  # of the payload
    size: int  # of the header itself, mask key included


def parse_header(data: bytes | bytearray | memoryview, start: int = 0) -> Header | None:
    """The header of the frame at `data[start:]`, or None if not all of it is there yet."""
    available = len(data) - start
    if available < 2:
        return None
    first, second = data[start], data[start + 1]
    length = second & 0x7F
    size = 2
    if length == 126:
        if available < 4:
            return None
        length = (data[start + 2] << 8) | data[start + 3]
        size = 4
    elif length == 127:
        if available < 10:
            return None
        length = struct.unpack_from(">Q", data, start + 2)[0]
        size = 10
    masked = bool(second & 0x80)
    if masked:
        size += 4
        if available < size:
            return None
    return Header(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, masked, length, size)


class MessageTracker:
    """The rules one direction's frames must follow, checked header by header.

    `masked` is what the mask bit must be (clients mask, servers do not); `limit` bounds a
    message, all its fragments together (None: no limit).
    """

    def __init__(self, *, masked: bool, limit: int | None):
        self.masked = masked
        self.limit = limit
        self.in_message = False
        self.message_size = 0

    def check(self, header: Header) -> None:
        """Raise FrameError if this frame breaks the protocol or the size limit."""
        if header.rsv:
            # No extension is negotiated (permessage-deflate is not offered to the app).
            raise FrameError(PROTOCOL_ERROR, "reserved bits set")
        if header.masked != self.masked:
            raise FrameError(PROTOCOL_ERROR, "wrongly masked frame")
        opcode = header.opcode
        if opcode in CONTROL_OPCODES:
            if not header.fin:
                raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
            if header.length > MAX_CONTROL_PAYLOAD:
                raise FrameError(PROTOCOL_ERROR, "control frame too long")
            return
        if opcode not in DATA_OPCODES:
            raise FrameError(PROTOCOL_ERROR, "reserved opcode")
        if opcode == CONTINUATION:
            if not self.in_message:
                raise FrameError(PROTOCOL_ERROR, "continuation without a message")
            self.message_size += header.length
        else:
            if self.in_message:
                raise FrameError(PROTOCOL_ERROR, "new message inside a fragmented one")
            self.message_size = header.length
        if self.limit is not None and self.message_size > self.limit:
            raise FrameError(TOO_BIG, "message too big")
        self.in_message = not header.fin


def unmask(payload: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """A masked payload's bytes (masking is its own inverse); for small control frames."""
    if not payload:
        return b""
    repeated = (bytes(key) * (len(payload) // 4 + 1))[: len(payload)]
    n = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return n.to_bytes(len(payload), "big")


def read_close(header: Header, frame: bytes | bytearray) -> tuple[int, str]:
    """The code and reason of a whole close frame, as the other side should get them.

    An empty close becomes 1000 (the other side is owed a reason for the close, and 1005 may
    not be sent); a code RFC 6455 forbids, a one-byte payload or a reason that is not UTF-8 is a
    FrameError, so both sides are closed with 1002 or 1007.
    """
    payload = frame[header.size : header.size + header.length]
    if header.masked:
        payload = unmask(payload, frame[header.size - 4 : header.size])
    if not payload:
        return NORMAL_CLOSURE, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a one-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not valid_close_code(code):
        raise FrameError(PROTOCOL_ERROR, "invalid close code")
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


def build_frame(opcode: int, payload: bytes = b"", *, mask: bool) -> bytes:
    """A whole, final frame of at most 125 bytes (a control frame of ours: close or ping)."""
    payload = payload[:MAX_CONTROL_PAYLOAD]
    if not mask:
        return bytes([0x80 | opcode, len(payload)]) + payload
    key = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + unmask(payload, key)


def close_frame(code: int, reason: str = "", *, mask: bool) -> bytes:
    """A close frame; a reason too long for one is cut at a character boundary."""
    encoded = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]
    encoded = encoded.decode("utf-8", "ignore").encode("utf-8")
    return build_frame(CLOSE, struct.pack(">H", code) + encoded, mask=mask)
