"""The CSS half of `--rewrite-urls`, and what the HTML half shares with it (the prefix in its
escaped forms, the test for a root-absolute URL).

A stylesheet is scanned as a small CSS tokenizer would (comments, strings, `url(...)`,
`@import`) so that `url(/x)` inside a comment or inside a `content: "..."` string is left
alone: only a real `url(` function or an `@import` string gains the prefix. Every decision looks
at a bounded window of bytes after the token (`window`), so the answer is the same whether the
stylesheet arrives whole or one byte at a time, and what is held between chunks stays small.

Not rewritten (documented limits): `image-set("/x.png" 1x)` strings, URLs written with CSS
escapes (`url(\\2f x)`), an `@import` whose string follows a comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: HTML's ASCII whitespace, which CSS shares (CR and FF included).
WHITESPACE = b"\t\n\f\r "

#: Bytes a path must not hold as they are: what a browser percent-encodes in a path, and `\`
#: (which it reads as `/`).
_UNSAFE_IN_PATH = re.compile(rb'[\x00-\x20\x7f-\xff"#<>?`{}\\]')

#: Bytes that continue a CSS identifier (or an at-keyword, `@url(`): `myurl(` is not `url(`.
_IDENT_BYTES = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@\\"
) | frozenset(range(0x80, 0x100))

#: After the prefix without its slash, what says the URL is the prefix itself (`/user/a?x`).
_PREFIX_END = b"/?#\"')&\\" + WHITESPACE


class Prefix:
    """The prefix once, in each form a rewriter inserts it.

    `raw` is the prefix percent-encoded as a browser would (so it can sit in any URL) with its
    trailing slash; `bare` is the same without that slash: the rewriters insert `bare` in front
    of the URL's own leading `/`. `html` is `bare` safe inside any attribute value (quoted or
    not); `css` is `bare` safe inside `url(...)` or a CSS string; `css_html` is `css` inside a
    `style` attribute.
    """

    __slots__ = ("raw", "bare", "html", "css", "css_html", "unchanged")

    def __init__(self, prefix: str, keep: Sequence[str] = ()):
        """`keep`: other roots whose URLs stay as they are (the hub's own routes, `/hub/`)."""
        raw = prefix.encode("utf-8")
        if not raw.startswith(b"/"):
            raw = b"/" + raw
        if not raw.endswith(b"/"):
            raw += b"/"
        self.raw = _UNSAFE_IN_PATH.sub(lambda m: b"%%%02X" % m.group()[0], raw)
        self.bare = self.raw[:-1]
        self.html = html_escape(self.bare)
        self.css = re.sub(rb"[()']", lambda m: b"\\" + m.group(), self.bare)
        self.css_html = html_escape(self.css)
        # What a URL may start with and stay unchanged: the prefix, and the roots kept.
        kept = (_UNSAFE_IN_PATH.sub(lambda m: b"%%%02X" % m.group()[0], k.encode()) for k in keep)
        self.unchanged = (self.bare, *(k.rstrip(b"/") for k in kept if k.strip(b"/")))


def html_escape(value: bytes) -> bytes:
    """`value` safe in an attribute value whatever its quoting (the prefix's `&` and `'`; the
    other troublesome bytes are already percent-encoded)."""
    return value.replace(b"&", b"&amp;").replace(b"'", b"&#39;")


def needs_prefix(buf: bytes, start: int, limit: int, unchanged: tuple[bytes, ...]) -> bool:
    """Whether the URL at `buf[start:limit]` is root-absolute and not yet under the prefix.

    `/x` is; `//host/x` is not (nor `/\\host`, `/<tab>/host`: a URL parser drops tabs and
    newlines and reads `\\` as `/`); a root of `unchanged` (`Prefix.unchanged`: the prefix
    without its slash, and the roots kept) itself, or followed by `/`, `?`, `#` or the end of
    the value, stays as it is.
    """
    if start >= limit or buf[start] != 0x2F:
        return False
    after = start + 1
    while after < limit and buf[after] in b"\t\n\r":
        after += 1
    if after < limit and buf[after] in b"/\\":
        return False
    for root in unchanged:
        if buf.startswith(root, start, limit):
            end = start + len(root)
            if end >= limit or buf[end] in _PREFIX_END:
                return False
    return True


# The CSS scanner's states.
_NORMAL, _COMMENT, _DQ_STRING, _SQ_STRING, _URL = range(5)

#: What matters in plain CSS; the longest token is `@import` (7 bytes), so 6 bytes are held.
_TOKEN = re.compile(rb"/\*|[\"'\\]|[Uu][Rr][Ll]\(|@[Ii][Mm][Pp][Oo][Rr][Tt]")
_TOKEN_HOLD = 6
#: What plain CSS passes over in one go (text, whole comments, whole strings, escapes); each
#: piece is complete or needs the bytes after it, so a chunk boundary never changes its reading.
_STRING_BODY = rb"(?:[^\\\n\r\f{q}]|\\(?:\r\n|[\s\S]))*"
_PLAIN = re.compile(
    rb"(?=(?P<plain>(?:[^/\"'\\uU@]+"
    rb"|/(?=[^*])|/\*[\s\S]*?\*/"
    rb"|\"" + _STRING_BODY.replace(b"{q}", b'"') + rb"\""
    rb"|'" + _STRING_BODY.replace(b"{q}", b"'") + rb"'"
    rb"|\\[\s\S]"
    rb"|[uU](?=[^rR]|[rR](?:[^lL]|[lL][^(]))"
    rb"|@(?![iI][mM][pP][oO][rR][tT])[-A-Za-z]*(?=[^-A-Za-z])"
    rb")*))(?P=plain)"
)
_URL_OPEN = re.compile(rb"[Uu][Rr][Ll]\([\t\n\f\r ]*(?:([\"'])[\x00-\x20]*)?")
#: In a `style` attribute the quotes of `url(&quot;/x&quot;)` are entities.
_URL_OPEN_IN_ATTRIBUTE = re.compile(
    rb"[Uu][Rr][Ll]\([\t\n\f\r ]*"
    rb"(?:([\"'])[\x00-\x20]*|(&(?:quot|apos|#0*3[49]|#[xX]0*2[27]);)[\x00-\x20]*)?"
)
_IMPORT_STRING = re.compile(
    rb"@[Ii][Mm][Pp][Oo][Rr][Tt](?![-\w\\\x80-\xff])[\t\n\f\r ]*([\"'])[\x00-\x20]*"
)
_STRING_STOP = {_DQ_STRING: re.compile(rb'[\\\n\r\f"]'), _SQ_STRING: re.compile(rb"[\\\n\r\f']")}
_URL_STOP = re.compile(rb"[\\)]")


class CssScanner:
    """Streams one stylesheet (a `text/css` body, a `<style>` element's text, a `style`
    attribute): `feed` returns what is settled, `end` the rest.

    `insert` is the prefix form to insert (`Prefix.css`, or `Prefix.css_html` with
    `in_attribute`, where entity quotes count as quotes).
    """

    def __init__(self, prefix: Prefix, insert: bytes, in_attribute: bool = False):
        self._bare = prefix.unchanged
        self._insert = insert
        self._url_open = _URL_OPEN_IN_ATTRIBUTE if in_attribute else _URL_OPEN
        self._window = 256 + max(map(len, prefix.unchanged))
        self._state = _NORMAL
        self._buf = b""
        self._previous = 0x20  # the input byte before `_buf` (identifier boundaries)

    @property
    def held(self) -> int:
        """Bytes fed but not yet given back."""
        return len(self._buf)

    def feed(self, data: bytes) -> bytes:
        self._buf = self._buf + data if self._buf else data
        return self._run(False)

    def feed_last(self, data: bytes) -> bytes:
        """`feed(data) + end()` in one pass (a `<style>` element or a `style` attribute met
        whole): the bytes `feed` would hold for the next chunk are decided at once."""
        self._buf = self._buf + data if self._buf else data
        return self.end()

    def end(self) -> bytes:
        out = self._run(True)
        self._buf = b""
        self._state = _NORMAL
        self._previous = 0x20
        return out

    def _run(self, final: bool) -> bytes:
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        while pos < len(buf):
            state = self._state
            if state == _NORMAL:
                new = self._normal(buf, pos, out, final)
            elif state == _COMMENT:
                new = self._comment(buf, pos, out, final)
            elif state == _URL:
                new = self._url(buf, pos, out, final)
            else:
                new = self._string(buf, pos, out, final)
            if new == pos and self._state == state:
                break
            pos = new
        pos = min(pos, len(buf))  # an escape's two bytes at the very end
        if final and pos < len(buf):
            out.append(buf[pos:])
            pos = len(buf)
        if pos:
            self._previous = buf[pos - 1]
            self._buf = buf[pos:]
        return b"".join(out)

    def _normal(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        plain = _PLAIN.match(buf, pos).end()
        if plain > pos:
            out.append(buf[pos:plain])
            pos = plain
        size = len(buf)
        safe = size if final else size - _TOKEN_HOLD
        match = _TOKEN.search(buf, pos)
        if match is None or match.start() >= safe:
            if safe > pos:
                out.append(buf[pos:safe])
                return safe
            return pos
        start = match.start()
        out.append(buf[pos:start])
        first = buf[start]
        if first == 0x2F:  # /*
            out.append(b"/*")
            self._state = _COMMENT
            return start + 2
        if first == 0x22 or first == 0x27:
            out.append(buf[start : start + 1])
            self._state = _DQ_STRING if first == 0x22 else _SQ_STRING
            return start + 1
        if first == 0x5C:  # an escape outside a string: `\"` is no string
            if start + 2 > size and not final:
                return start
            out.append(buf[start : start + 2])
            return start + 2
        if first == 0x40:  # @import
            return self._import(buf, start, out, final)
        before = buf[start - 1] if start else self._previous
        if before in _IDENT_BYTES:  # `myurl(`: another function
            out.append(match.group())
            return match.end()
        return self._url_open_at(buf, start, out, final)

    def _limit(self, buf: bytes, start: int, final: bool) -> int:
        """The end of the decision window at `start`, or -1 when it is not all here yet."""
        limit = start + self._window
        if limit <= len(buf):
            return limit
        return len(buf) if final else -1

    def _url_open_at(self, buf: bytes, start: int, out: list[bytes], final: bool) -> int:
        limit = self._limit(buf, start, final)
        if limit < 0:
            return start
        match = self._url_open.match(buf, start, limit)
        assert match is not None  # `url(` itself always matches
        value = match.end()
        out.append(buf[start:value])
        if needs_prefix(buf, value, limit, self._bare):
            out.append(self._insert)
        quote = match.group(1)
        if quote:
            self._state = _DQ_STRING if quote == b'"' else _SQ_STRING
            return self._string(buf, value, out, final)  # read on: one step fewer per url(
        if match.lastindex == 2:  # an entity quote: the rest is plain text to this scanner
            self._state = _NORMAL
            return value
        self._state = _URL
        return self._url(buf, value, out, final)

    def _import(self, buf: bytes, start: int, out: list[bytes], final: bool) -> int:
        limit = self._limit(buf, start, final)
        if limit < 0:
            return start
        match = _IMPORT_STRING.match(buf, start, limit)
        if match is None:  # `@import url(...)` (handled as a url) or something odd
            out.append(buf[start : start + 7])
            return start + 7
        value = match.end()
        out.append(buf[start:value])
        if needs_prefix(buf, value, limit, self._bare):
            out.append(self._insert)
        self._state = _DQ_STRING if match.group(1) == b'"' else _SQ_STRING
        return value

    def _comment(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        close = buf.find(b"*/", pos)
        if close < 0:
            keep = len(buf) if final else len(buf) - 1
            if keep > pos:
                out.append(buf[pos:keep])
                return keep
            return pos
        out.append(buf[pos : close + 2])
        self._state = _NORMAL
        return close + 2

    def _string(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        match = _STRING_STOP[self._state].search(buf, pos)
        if match is None:
            out.append(buf[pos:])
            return len(buf)
        stop = match.start()
        char = buf[stop]
        if char == 0x5C:  # an escape, or `\` + newline (a continuation, CRLF being one)
            if stop + 3 > len(buf) and not final:
                out.append(buf[pos:stop])
                return stop
            step = 3 if buf.startswith(b"\r\n", stop + 1) else 2
            out.append(buf[pos : stop + step])
            return stop + step
        if char in b"\n\r\f":  # a newline ends a (bad) string; the newline is plain CSS
            out.append(buf[pos:stop])
            self._state = _NORMAL
            return stop
        out.append(buf[pos : stop + 1])
        self._state = _NORMAL
        return stop + 1

    def _url(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        match = _URL_STOP.search(buf, pos)
        if match is None:
            out.append(buf[pos:])
            return len(buf)
        stop = match.start()
        if buf[stop] == 0x5C:
            if stop + 2 > len(buf) and not final:
                out.append(buf[pos:stop])
                return stop
            out.append(buf[pos : stop + 2])
            return stop + 2
        out.append(buf[pos : stop + 1])
        self._state = _NORMAL
        return stop + 1


def rewrite_css(prefix: Prefix, css: bytes, in_attribute: bool = False) -> bytes:
    """A whole piece of CSS rewritten at once (a `style` attribute's value)."""
    scanner = CssScanner(prefix, prefix.css_html if in_attribute else prefix.css, in_attribute)
    return scanner.feed_last(css)
