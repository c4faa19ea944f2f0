"""The app's compressed answers decoded for `--rewrite-urls`, bounded piece by piece.

Each decoder takes the body as it comes (`decode(chunk)`, then `finish()`) and yields pieces of
at most DECODED_PIECE bytes, so a small compressed body (a "bomb") never makes the proxy hold
much: only decoders that can bound their output are used (zlib; brotli 1.2+; Python 3.14's or
backports' zstd). A corrupt or cut body raises BodyDecodeError, and the answer is cut.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

# What one step of decoding may produce, and what it is given at most at once where the decoder
# cannot bound its output: a compressed answer cannot make the proxy hold more than this.
DECODED_PIECE = 256 * 1024
ENCODED_SLICE = 16 * 1024


class BodyDecodeError(Exception):
    """The app's compressed body could not be decoded (corrupt or cut short): the answer is
    cut as an app that broke off is, since its status line is gone already."""


class ZlibDecoder:
    """gzip (and its concatenated members) or HTTP's deflate (zlib-wrapped, or raw as some
    servers send it), decoded in pieces of at most DECODED_PIECE bytes.

    zlib is given ENCODED_SLICE bytes at a time, so what it copies at each gzip member's end
    (the input after it) stays small: a body of many tiny members costs linear time, not
    quadratic. Past the end (deflate's, or NUL padding after a gzip member) nothing more goes
    to zlib, which would keep all of it in `unused_data`: trailing bytes are dropped as they
    come, as browsers ignore them.
    """

    def __init__(self, encoding: str):
        self._gzip = encoding in ("gzip", "x-gzip")
        self._zlib: zlib._Decompress | None = zlib.decompressobj(31) if self._gzip else None
        self._head = b""  # deflate: its first byte, until the second tells its kind
        self._ended = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), ENCODED_SLICE):
            yield from self._slice(data[start : start + ENCODED_SLICE])

    def _slice(self, data: bytes) -> Iterator[bytes]:
        if self._zlib is None:
            # deflate: a zlib header (its check bits), else raw deflate.
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = b""
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(15 if wrapped else -15)
        while data and not self._ended:
            if self._zlib.eof:
                if not self._gzip or not data.strip(b"\0"):
                    self._ended = True  # past the end: trailing bytes are ignored
                    return
                self._zlib = zlib.decompressobj(31)  # the next gzip member
            try:
                piece = self._zlib.decompress(data, DECODED_PIECE)
            except zlib.error as e:
                raise BodyDecodeError(str(e)) from None
            if piece:
                yield piece
            data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail

    def finish(self) -> Iterator[bytes]:
        if self._head or (self._zlib is not None and not self._zlib.eof):
            raise BodyDecodeError("the compressed body ends too early")
        yield from ()


class BrotliDecoder:
    """brotli 1.2+, whose decoder can bound what one step produces. Older ones cannot (a few
    KiB of brotli may hold gigabytes): with them brotli answers pass unrewritten."""

    def __init__(self) -> None:
        import brotli

        self._brotli = brotli
        self._decoder = brotli.Decompressor()
        if not hasattr(self._decoder, "can_accept_more_data"):
            raise ImportError("brotli older than 1.2 cannot bound its output")

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._decoder.process(data, output_buffer_limit=DECODED_PIECE)
            while True:
                if piece:
                    yield piece
                if self._decoder.can_accept_more_data():
                    return
                piece = self._decoder.process(b"", output_buffer_limit=DECODED_PIECE)
        except self._brotli.error as e:
            raise BodyDecodeError(str(e)) from None

    def finish(self) -> Iterator[bytes]:
        if not self._decoder.is_finished():
            raise BodyDecodeError("the compressed body ends too early")
        yield from ()


class ZstdDecoder:
    """Python 3.14's zstd (or `backports.zstd`, the same module for older Pythons), which
    bounds what one step produces. The `zstandard` package cannot (16 KiB of zstd may hold
    512 MiB): without these, zstd answers pass unrewritten. One frame: data after it cuts the
    answer, as corrupt data does."""

    def __init__(self) -> None:
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]

        self._decoder = zstd.ZstdDecompressor()
        self._errors: tuple[type[BaseException], ...] = (zstd.ZstdError, EOFError)

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._decoder.decompress(data, DECODED_PIECE)
            if piece:
                yield piece
            while not self._decoder.eof and not self._decoder.needs_input:
                piece = self._decoder.decompress(b"", DECODED_PIECE)
                if piece:
                    yield piece
        except self._errors as e:  # EOFError: data after the frame's end
            raise BodyDecodeError(str(e) or "data after the end of the zstd frame") from None
        if self._decoder.eof and self._decoder.unused_data:
            raise BodyDecodeError("data after the end of the zstd frame")

    def finish(self) -> Iterator[bytes]:
        if not self._decoder.eof:
            raise BodyDecodeError("the compressed body ends too early")
        yield from ()


def decoder_for(encoding: str) -> Decoder | None:
    """A decoder for a Content-Encoding, None for none, or raises ImportError/LookupError."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return ZlibDecoder(encoding)
    if encoding == "br":
        return BrotliDecoder()
    if encoding == "zstd":
        return ZstdDecoder()
    raise LookupError(encoding)


Decoder = ZlibDecoder | BrotliDecoder | ZstdDecoder
