"""`--rewrite-urls`, the response side: which answers of the app are rewritten, how their
encoding, Content-Length and ETag change, and the loop that feeds the rewriter.

The rewriting itself is `url_rewriter.py` (pure, bytes in and out); the script that pages get
first in their `<head>` is `pages/rewrite.js`. Nothing here runs when the option is off: the
proxy's handler builds a `RewriteRequest` only when it is on, and `relay_response` takes its
usual path when it has none.

- Only `text/html` and `text/css` bodies are rewritten; any other type passes untouched, as
  does a partial answer (206), one in an encoding we cannot decode with a bound (one warning
  line), and one whose charset is not ASCII-compatible (UTF-16 by its charset or its BOM).
- The app is asked for an unencoded answer (`Accept-Encoding: identity`) on the requests that
  name HTML or CSS in their `Accept` (navigations, frames, stylesheets): those are the answers
  rewritten, and decoding them would cost more than the app's not encoding them. Every other
  request keeps the client's `Accept-Encoding`, so scripts, JSON and fonts stay compressed end
  to end; an HTML or CSS answer that arrives compressed anyway (a `fetch` of a page) is decoded
  here, bounded piece by bounded piece.
- The rewritten body goes to the client gzip-compressed when the client accepts gzip (flushed
  per chunk, so a stream stays live), chunked (no Content-Length), with a weak ETag of our own:
  the app's tag plus a suffix naming this version of the script. A client's If-None-Match
  loses the suffix on its way to the app, so the app still answers 304 for what it sent, and a
  cache never takes the app's bytes for the rewritten ones (nor the other way round).
"""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.resources import files

from ..hub_environment import HubSettings
from ..pages import REWRITE_SCRIPT
from .body_decoders import Decoder, decoder_for
from .url_rewriter import StreamRewriter, css_rewriter, html_rewriter

log = logging.getLogger("jhsingle_native_proxy")

SCRIPT_NAME = REWRITE_SCRIPT
# zlib's fastest level: text still shrinks to a fraction, and a busy server's CPU is the app's.
GZIP_LEVEL = 1
# Headers about the app's exact bytes, which a rewritten body no longer has.
DROPPED_WHEN_REWRITTEN = frozenset(
    {"content-length", "content-encoding", "etag", "accept-ranges", "content-md5",
     "digest", "content-digest", "repr-digest"}
)  # fmt: skip
_NONCE = re.compile(r"^[A-Za-z0-9+/_=-]{1,256}$")
_warned_encodings: set[str] = set()


@functools.lru_cache(maxsize=1)
def script_source() -> bytes:
    """pages/rewrite.js, read once."""
    return files("jhsingle_native_proxy.pages").joinpath(SCRIPT_NAME).read_bytes()


@functools.lru_cache(maxsize=1)
def script_version() -> str:
    """A short hash of the script: in its URL (so it may be cached for a year) and in our ETags
    (so a new script is a new page for every cache)."""
    return hashlib.sha256(script_source()).hexdigest()[:12]


def script_url(prefix: str) -> str:
    return f"{prefix}_jhsnp/{SCRIPT_NAME}?v={script_version()}"


# Charsets in which `<`, `"` or `/` are not the ASCII bytes the rewriter reads (UTF-16 and -32,
# UTF-7, the ISO-2022 and HZ shifting ones): bytes inserted into such a body would be other
# characters, and an odd number of them would shift every UTF-16 pair after them, turning
# text the app escaped into markup. Such bodies pass unrewritten.
_NOT_ASCII_COMPATIBLE = re.compile(
    r"utf-?(?:16|32|7)|ucs-?[24]|unicode|iso-?10646|iso-?2022|hz-gb", re.IGNORECASE
)
_CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([^;\"'\s]*)", re.IGNORECASE)
# A UTF-16 byte-order mark (UTF-32LE's starts the same): browsers decode by it, whatever the
# Content-Type says.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def rewrite_kind(content_type: str | None) -> str:
    """The kind of body to rewrite ("html", "css"), or "" for none, by the Content-Type."""
    if not content_type:
        return ""
    charset = _CHARSET.search(content_type)
    if charset and _NOT_ASCII_COMPATIBLE.match(charset.group(1)):
        return ""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/html":
        return "html"
    if media == "text/css":
        return "css"
    return ""


def _tokens(value: str) -> list[tuple[str, float]]:
    """A list header with q-values (`gzip;q=0.5, br`) as (token, q) pairs, tokens lowercased."""
    found = []
    for part in value.split(","):
        token, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if token:
            found.append((token.lower(), q))
    return found


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether a client's Accept-Encoding allows gzip (by name or by `*`, q above 0)."""
    named = dict(_tokens(accept_encoding))
    if "gzip" in named:
        return named["gzip"] > 0
    if "x-gzip" in named:
        return named["x-gzip"] > 0
    return named.get("*", 0) > 0


def may_be_rewritten(method: str, accept: str) -> bool:
    """Whether a request asks for what is rewritten (a page, a frame, a stylesheet): those are
    sent to the app with `Accept-Encoding: identity`."""
    if method not in ("GET", "HEAD"):
        return False
    media = {token for token, q in _tokens(accept) if q > 0}
    return "text/html" in media or "text/css" in media


# ETags: `"abc"` becomes `W/"abc-jhsnpVERSIONs"`, `W/"abc"` becomes `W/"abc-jhsnpVERSIONw"`; the
# last letter keeps whether the app's tag was weak, so the app gets back the tag it wrote.
_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def our_etag(app_etag: str, suffix: str) -> str | None:
    """The ETag of a rewritten body, from the app's (None when the app's is not a valid one)."""
    match = _ETAG.fullmatch(app_etag)
    if match is None:
        return None
    weak, opaque = match.groups()
    return f'W/"{opaque}{suffix}{"w" if weak else "s"}"'


def app_if_none_match(value: str, suffix: str) -> tuple[str, frozenset[str]]:
    """A client's If-None-Match with our suffixes taken off, and the app's tags that had one.

    Tags without our suffix (another resource's, or one from an older script) go as they are.
    """
    if value.strip() == "*":
        return value, frozenset()
    tags, stripped = [], set()
    for match in re.finditer(r'(W/)?"([^"]*)"', value):
        weak, opaque = match.groups()
        if len(opaque) > len(suffix) and opaque[:-1].endswith(suffix) and opaque[-1] in "sw":
            original = opaque[: -len(suffix) - 1]
            tag = f'{"W/" if opaque[-1] == "w" else ""}"{original}"'
            stripped.add(tag)
            tags.append(tag)
        else:
            tags.append(f'{weak or ""}"{opaque}"')
    return ", ".join(tags), frozenset(stripped)


def script_nonce(policies: Iterable[str]) -> tuple[bool, str]:
    """Whether our external script may run under the app's Content-Security-Policy headers, and
    the nonce to give it.

    Each policy is enforced on its own, so the script must pass all: a policy whose script
    directive (`script-src-elem`, else `script-src`, else `default-src`) has a nonce lets it in
    with that nonce; one with `'self'` (or `*`) and no `'strict-dynamic'` lets it in as ours.
    A policy of hashes only, or `'none'`, cannot be met: the script is left out, so the page
    works but for the URLs its scripts build.
    """
    nonce = ""
    # One header may hold several policies, separated by commas (CSP3's serialized list).
    for policy in (p for header in policies for p in header.split(",")):
        directives = {}
        for directive in policy.split(";"):
            words = directive.split()
            if words:
                directives.setdefault(words[0].lower(), [w for w in words[1:]])
        sources = next(
            (directives[name] for name in ("script-src-elem", "script-src", "default-src")
             if name in directives),
            None,
        )  # fmt: skip
        if sources is None:
            continue
        lowered = [s.lower() for s in sources]
        nonces = [s[7:-1] for s in sources if s.lower().startswith("'nonce-") and s.endswith("'")]
        nonces = [n for n in nonces if _NONCE.match(n)]
        if nonces:
            if nonce and nonce not in nonces:
                return False, ""  # two policies, two nonces: no one element meets both
            nonce = nonce or nonces[0]
        elif "'strict-dynamic'" in lowered or not ("'self'" in lowered or "*" in lowered):
            return False, ""
    return True, nonce


def head_insert(prefix: str, nonce: str, keep: Sequence[str] = ()) -> bytes:
    """What goes first in a rewritten page's `<head>`: our script, with the page's nonce and
    the roots its URLs keep (`data-keep`: the hub's routes; the script is the same file for
    every server, so what differs is on its tag)."""
    nonce_attribute = f' nonce="{html.escape(nonce)}"' if nonce else ""
    keep_attribute = f' data-keep="{html.escape(" ".join(keep))}"' if keep else ""
    # Escaped: a prefix is a path, but nothing in it may end the attribute.
    source = html.escape(script_url(prefix))
    return f'<script src="{source}"{nonce_attribute}{keep_attribute}></script>'.encode()


def hub_routes(hub: HubSettings) -> tuple[str, ...]:
    """The roots of JupyterHub's own pages on this server's origin, which rewriting leaves
    alone: a link to `/hub/home` or `/hub/logout` is the hub's, not the app's. Under a hub
    base URL other than `/` (`/jhub/`), an app that writes it knows the hub: all of it stays.
    None without a hub, or when this server has an origin of its own (the hub is elsewhere)."""
    if not hub.api_url or hub.own_origin:
        return ()
    return (hub.hub_prefix,) if hub.base_url in ("", "/") else (hub.base_url,)


@dataclass
class BodyRewrite:
    """One answer's rewriting: decode, rewrite, encode, chunk by chunk."""

    rewriter: StreamRewriter
    decoder: Decoder | None
    gzip: bool
    etag: str | None
    _encoder: zlib._Compress | None = field(default=None, repr=False)
    # The body's first decoded byte while the second is awaited (a UTF-16 BOM?); "raw" once a
    # BOM said the body is not ASCII-compatible: it then passes as it is.
    _first: bytes = field(default=b"", repr=False)
    _sniffed: bool = field(default=False, repr=False)
    _raw: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.gzip:
            self._encoder = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def headers(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The app's headers for a rewritten body: the ones about its exact bytes replaced."""
        kept = [(n, v) for n, v in pairs if n.lower() not in DROPPED_WHEN_REWRITTEN]
        if self.gzip:
            kept.append(("Content-Encoding", "gzip"))
        if self.etag is not None:
            kept.append(("ETag", self.etag))
        varies = ",".join(v for n, v in kept if n.lower() == "vary").lower()
        if "accept-encoding" not in varies and "*" not in varies:
            kept.append(("Vary", "Accept-Encoding"))
        return kept

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """What goes to the client for one chunk of the app's body, in bounded pieces."""
        pieces = self.decoder.decode(chunk) if self.decoder is not None else (chunk,)
        for piece in pieces:
            out = self._encoded(self._rewritten(piece), zlib.Z_SYNC_FLUSH)
            if out:
                yield out

    def end(self) -> bytes:
        """The body's last bytes, once the app's has ended."""
        tail = b""
        if self.decoder is not None:
            for piece in self.decoder.finish():
                tail += self._rewritten(piece)
        if not self._sniffed:  # a body of one byte
            self._sniffed, tail = True, tail + self.rewriter.feed(self._first)
        if not self._raw:
            tail += self.rewriter.end()
        return self._encoded(tail, zlib.Z_FINISH)

    def _rewritten(self, piece: bytes) -> bytes:
        """A decoded piece through the rewriter, unless the body opened with a UTF-16 BOM."""
        if not self._sniffed:
            piece = self._first + piece
            if len(piece) < 2:
                self._first = piece
                return b""
            self._sniffed, self._first = True, b""
            self._raw = piece.startswith(_UTF16_BOMS)
        return piece if self._raw else self.rewriter.feed(piece)

    def _encoded(self, data: bytes, mode: int) -> bytes:
        if self._encoder is None:
            return data
        if not data and mode == zlib.Z_SYNC_FLUSH:
            return b""
        return self._encoder.compress(data) + self._encoder.flush(mode)


class RewriteRequest:
    """A request while --rewrite-urls is on: what it changed on the way to the app, and the
    decision about the app's answer (`plan`)."""

    def __init__(self, prefix: str, method: str, client_headers, keep: Sequence[str] = ()) -> None:
        """`keep`: roots whose URLs stay as they are (`hub_routes`)."""
        self.prefix = prefix
        self.keep = tuple(keep)
        self.method = method
        self.suffix = "-jhsnp" + script_version()
        self._client_gzip = accepts_gzip(client_headers.get("Accept-Encoding", ""))
        self._identity = may_be_rewritten(method, client_headers.get("Accept", ""))
        self._stripped_tags: frozenset[str] = frozenset()

    def app_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The headers for the app: identity asked for a page or a stylesheet, our ETag suffix
        taken off If-None-Match."""
        out = []
        for name, value in headers:
            lower = name.lower()
            if lower == "accept-encoding" and self._identity:
                continue
            if lower == "if-none-match":
                value, self._stripped_tags = app_if_none_match(value, self.suffix)
            out.append((name, value))
        if self._identity:
            out.append(("Accept-Encoding", "identity"))
        return out

    def not_modified_headers(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """A 304's headers: its ETag in our spelling when it validates a rewritten body."""
        out = []
        for name, value in pairs:
            if name.lower() == "etag" and value.strip() in self._stripped_tags:
                value = our_etag(value, self.suffix) or value
            out.append((name, value))
        return out

    def plan(self, status: int, headers) -> BodyRewrite | None:
        """The rewriting of the app's answer, or None to relay it as it is."""
        kind = rewrite_kind(headers.get("Content-Type"))
        if not kind or status == 206:
            return None
        encodings = [e.strip().lower() for e in headers.get("Content-Encoding", "").split(",")]
        encodings = [e for e in encodings if e and e != "identity"]
        try:
            if len(encodings) > 1:
                raise LookupError(", ".join(encodings))
            decoder = decoder_for(encodings[0] if encodings else "")
        except (LookupError, ImportError):
            name = ", ".join(encodings)
            if name not in _warned_encodings:
                _warned_encodings.add(name)
                log.warning(
                    "--rewrite-urls: the app sent %s in Content-Encoding %r, which this "
                    "server cannot decode; such answers pass unrewritten",
                    kind.upper(),
                    name,
                )
            return None
        if kind == "html":
            allowed, nonce = script_nonce(headers.getall("Content-Security-Policy", []))
            insert = head_insert(self.prefix, nonce, self.keep) if allowed else b""
            rewriter = html_rewriter(self.prefix, insert, keep=self.keep)
        else:
            rewriter = css_rewriter(self.prefix, self.keep)
        etag = headers.get("ETag")
        return BodyRewrite(
            rewriter,
            decoder,
            gzip=self._client_gzip,
            etag=our_etag(etag, self.suffix) if etag else None,
        )

    def response_headers(
        self, status: int, headers
    ) -> tuple[list[tuple[str, str]], BodyRewrite | None]:
        """The app's headers as the client gets them, and the body's rewriting (None: as it is)."""
        pairs = list(headers.items())
        if status == 304:
            return self.not_modified_headers(pairs), None
        body = self.plan(status, headers)
        return (pairs if body is None else body.headers(pairs)), body


async def relay_rewritten(handler, response, body: BodyRewrite) -> None:
    """The feed loop: each chunk of the app's body decoded, rewritten and encoded in bounded
    pieces, each flushed to the client before the next (so a slow client slows the reading of
    the app down, as for any answer). Errors go to the caller (`relay_response`)."""
    await handler.flush()  # a rewritten answer is a stream: the client learns it is open
    async for chunk in response.content.iter_any():
        for out in body.feed(chunk):
            handler.write(out)
            handler.bytes_out += len(out)
            await handler.flush()
    tail = body.end()
    if tail:
        handler.write(tail)
        handler.bytes_out += len(tail)
