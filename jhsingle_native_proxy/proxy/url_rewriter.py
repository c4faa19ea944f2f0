"""`--rewrite-urls`: root-absolute URLs in the app's HTML and CSS put under the prefix, as the
bytes stream past.

An app that writes `/static/app.js` means the root of its own server; behind the proxy that
root is `{prefix}`. The rewriters here are pure: bytes in, bytes out, chunk by chunk, so the
proxy never holds a whole body; what a chunk boundary cuts in half (a tag, a `url(`) is kept
until the next chunk, up to a bound, and passed on unchanged past it.

The response side (which answers are rewritten, their encoding, Content-Length and ETag, the
script inserted into pages) is `rewrite_response.py`; the script itself is `pages/rewrite.js`.

How the HTML is read: as the HTML tokenizer reads it (tags, attributes with or without quotes,
comments, `<!doctype>`, raw-text elements), on bytes of an ASCII-compatible encoding. Only an
attribute value that holds a URL changes, and only by the prefix inserted before its leading
`/`; every other byte is passed on as it came. What is rewritten:

- `href`, `xlink:href`, `src`, `action`, `formaction`, `poster`, `background` on any element,
  `data` on `<object>`, each URL of `srcset`/`imagesrcset` and `ping`, the URL in
  `<meta http-equiv=refresh content="0; url=/x">`, `url(...)` in `style` attributes;
- `<style>` element text, through the CSS rewriter (`css_rewriter.py`).

Deliberately left: `<script>` bodies (JavaScript is the inserted script's business), `<textarea>`,
`<title>` and the other raw-text elements, comments, CDATA, `iframe srcdoc`; URLs whose leading
`/` is written as a character reference (`&#47;x`: entities elsewhere in a value are kept as
they are); absolute `http://host/` URLs. A tag longer than `limit` bytes (64 KiB) is passed on
unchanged, so what is held between chunks never exceeds about `limit`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .css_rewriter import CssScanner, Prefix, needs_prefix
from .html_tags import (
    BOGUS_COMMENT,
    CDATA_TEXT,
    FAST_RUN,
    IN_TAG_NAME,
    PLAIN_TEXT,
    RAW_END,
    TAG,
    TAG_NAME,
    CommentText,
    TextUntil,
    follow_tag,
    rewrite_tag,
    text_reader,
)

#: The longest tag rewritten; longer ones pass unchanged and are never held whole.
DEFAULT_LIMIT = 64 * 1024

#: A tag worth a look from Python: a value starting with `/`, or an attribute read otherwise.
_HINT = re.compile(rb"=[\t\n\f\r ]*[\"']?[\x00-\x20]*/|(?i:srcset|ping|style|content)")
_LEADING_SPACE = re.compile(rb"(?:[\t\n\f\r ]|\xef\xbb\xbf)*")
_BOM = b"\xef\xbb\xbf"


class StreamRewriter:
    """One response body's rewriting: `feed` each chunk, then `end` once.

    Every byte fed comes out once, from `feed` or `end`, changed or not; rewriting the chunks of
    one body gives the same bytes whatever the chunk boundaries are. This base class changes
    nothing; `held` is how many bytes it keeps between chunks (bounded by the subclasses).
    """

    def __init__(self, prefix: str):
        """`prefix`: the path URLs go under, with its trailing slash (`/user/alice/`)."""
        self.prefix = prefix

    @property
    def held(self) -> int:
        return 0

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def end(self) -> bytes:
        return b""


# -- where the inserted script goes ---------------------------------------------------------


class _HeadInsert:
    """`head_insert`, placed once: just after `<head>`, or before the first thing that would
    open the page's body without one (text other than spaces and a byte-order mark, a tag other
    than `<html>`, an end tag), never inside a comment or a tag. A page's scripts then run after
    ours, whatever the app wrote before them."""

    __slots__ = ("_insert", "pending")

    def __init__(self, insert: bytes):
        self._insert = insert
        self.pending = bool(insert)  # not placed yet

    def take(self) -> bytes:
        """The insert if it still waits (then never again), or nothing."""
        if not self.pending:
            return b""
        self.pending = False
        return self._insert

    def before_start_tag(self, name: bytes | None) -> bytes:
        """What goes before the start tag `name` (None: an end tag)."""
        return b"" if name == b"html" or name == b"head" else self.take()

    def after_start_tag(self, name: bytes | None) -> bytes:
        return self.take() if name == b"head" else b""

    def text(self, buf: bytes, pos: int, stop: int, final: bool, out: list[bytes]) -> int:
        """Passes on the text `buf[pos:stop]`, the insert before its first byte that counts as
        content; returns where it stopped (short of a byte-order mark cut by the chunk's end)."""
        if not self.pending:
            out.append(buf[pos:stop])
            return stop
        space = _LEADING_SPACE.match(buf, pos, stop).end()
        if space < stop:
            cut = stop == len(buf) and stop - space < 3 and _BOM.startswith(buf[space:stop])
            if cut and not final:
                out.append(buf[pos:space])
                return space
            out += [buf[pos:space], self.take(), buf[space:stop]]
        else:
            out.append(buf[pos:stop])
        return stop


# -- the HTML rewriter ------------------------------------------------------------------------

# Where the HTML rewriter is: in markup, in a tag a chunk cut short, in a tag too long to hold,
# in text that is not markup (its reader says which).
_MARKUP, _TAG_HELD, _LONG_TAG, _TEXT = range(4)


class HtmlRewriter(StreamRewriter):
    """Streams one `text/html` body (see the module's docstring for what changes).

    `_buf` holds only what a chunk boundary left undecided: a tag cut short (at most `limit`
    bytes), or a few bytes at the end of a comment, a script or a raw-text element.
    """

    def __init__(
        self,
        prefix: str,
        head_insert: bytes = b"",
        *,
        limit: int = DEFAULT_LIMIT,
        keep: Sequence[str] = (),
    ):
        super().__init__(prefix)
        self._prefix = Prefix(prefix, keep)
        self._limit = limit
        self._insert = _HeadInsert(head_insert)
        self._state = _MARKUP
        self._text: TextUntil = PLAIN_TEXT  # the reader, in state _TEXT
        self._buf = b""
        self._started = False
        self._long_state = IN_TAG_NAME  # a long tag's tokenizer state,
        self._long_name: bytes | None = None  # its name (None for an end tag),
        self._scan_from = 0  # where to look for a held tag's `>` next

    @property
    def held(self) -> int:
        return len(self._buf) + (self._text.held if self._state == _TEXT else 0)

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        self._started = True
        self._buf = self._buf + chunk if self._buf else chunk
        return self._run(False)

    def end(self) -> bytes:
        out = self._run(True)
        if self._state == _TEXT:
            out += self._text.end()
        elif self._started and self._state == _MARKUP:
            out += self._insert.take()  # a page of only spaces, comments, a doctype
        self._insert.pending = False
        self._buf = b""
        return out

    def _run(self, final: bool) -> bytes:
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        size = len(buf)
        handlers = self._handlers
        while pos < size:
            state = self._state
            new = handlers[state](self, buf, pos, out, final)
            if new == pos and self._state == state:
                break
            pos = new
        if final and pos < size:  # the body ends inside a tag: passed on as it came,
            out += [self._insert.take(), buf[pos:]]  # after head_insert if it still waits
            pos = size
        self._buf = buf[pos:]
        return b"".join(out)

    # -- the states -------------------------------------------------------------------------

    def _markup_state(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        if not self._insert.pending:
            pos = self._fast_run(buf, pos, out)
        if pos >= len(buf):
            return pos
        less = buf.find(b"<", pos)
        if less != pos:  # text before the next `<` (only ever here while head_insert waits)
            return self._insert.text(buf, pos, len(buf) if less < 0 else less, final, out)
        return self._markup(buf, pos, out, final)

    def _fast_run(self, buf: bytes, pos: int, out: list[bytes]) -> int:
        """The hot loop: `FAST_RUN` passes plain markup and, in the same match, a start tag of
        one root-absolute URL, where only the prefix is inserted (no tag object, no copy of the
        tag); a start tag it stops at is rewritten whole by `rewrite_tag`. It returns where
        something needs the general path (a raw-text element, a tag cut short, a comment cut
        short...). Output pieces are slices of `buf` between insertions, not one per token."""
        fast, whole_tag, limit = FAST_RUN.match, TAG.match, self._limit
        prefix = self._prefix
        bare, insert = prefix.unchanged, prefix.html
        last = pos  # buf[last:pos] is passed but not yet in `out`
        while True:
            match = fast(buf, pos)
            end = match.end()
            url = match.lastindex  # the URL's group (2, 3, 4) closes after group 1
            if url is not None:
                start, stop = match.span(url)
                if needs_prefix(buf, start, stop, bare) and (
                    end - pos <= limit or end - match.start(1) <= limit
                ):
                    out += (buf[last:start], insert)
                    last = start
                pos = end
                continue
            pos = end
            tag = whole_tag(buf, pos)
            if tag is None or tag.group("end"):
                break
            name = tag.group("tag").lower()
            if name in RAW_END:
                break
            end = tag.end()
            if end - pos <= limit:
                whole = buf[pos:end]
                rewritten = rewrite_tag(prefix, whole, name)
                if rewritten is not whole:
                    out += (buf[last:pos], rewritten)
                    last = end
            pos = end
        if last < pos:
            out.append(buf[last:pos])
        return pos

    def _markup(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        """At a `<`: what it opens."""
        size = len(buf)
        if pos + 2 >= size and not final:
            return pos  # `<`, `<!`, `</`: too little to tell
        second = buf[pos + 1] if pos + 1 < size else 0
        if second == 0x21:  # <!
            for opener in (b"<!--", b"<![CDATA["):
                if buf.startswith(opener, pos):
                    reader = CommentText() if opener == b"<!--" else CDATA_TEXT
                    return self._open_text(reader, opener, pos, out)
                if size - pos < len(opener) and opener.startswith(buf[pos:]) and not final:
                    return pos
            return self._open_text(BOGUS_COMMENT, b"<!", pos, out)
        if second == 0x3F:  # <?
            return self._open_text(BOGUS_COMMENT, b"<?", pos, out)
        if second == 0x2F:  # </
            third = buf[pos + 2] if pos + 2 < size else 0
            if (0x41 <= third <= 0x5A) or (0x61 <= third <= 0x7A):
                return self._tag(buf, pos, out, final, True)
            if third == 0x3E:
                out.append(b"</>")
                return pos + 3
            return self._open_text(BOGUS_COMMENT, b"</", pos, out)
        if (0x41 <= second <= 0x5A) or (0x61 <= second <= 0x7A):
            return self._tag(buf, pos, out, final, False)
        out += [self._insert.take(), b"<"]
        return pos + 1

    def _open_text(self, reader: TextUntil, opener: bytes, pos: int, out: list[bytes]) -> int:
        out.append(opener)
        self._text = reader
        self._state = _TEXT
        return pos + len(opener)

    def _tag(self, buf: bytes, pos: int, out: list[bytes], final: bool, is_end: bool) -> int:
        match = TAG.match(buf, pos)
        if match is None:
            if final:
                return pos  # `_run` passes the rest on as it came
            if len(buf) - pos > self._limit:
                return self._overflow(buf, pos, out, is_end)
            self._state = _TAG_HELD
            self._scan_from = len(buf)
            return pos
        end = match.end()
        tag = buf[pos:end]
        if is_end:
            out += [self._insert.take(), tag]
            return end
        name = match.group("tag").lower()
        if end - pos <= self._limit and _HINT.search(tag):
            tag = rewrite_tag(self._prefix, tag, name)
        insert = self._insert
        if insert.pending:
            out += [insert.before_start_tag(name), tag, insert.after_start_tag(name)]
        else:
            out.append(tag)
        self._enter(name)
        return end

    def _enter(self, name: bytes | None) -> None:
        """After the start tag `name`: a raw-text element's text, or markup again."""
        reader = None if name is None else text_reader(name, self._prefix)
        if reader is None:
            self._state = _MARKUP
        else:
            self._text = reader
            self._state = _TEXT

    def _overflow(self, buf: bytes, pos: int, out: list[bytes], is_end: bool) -> int:
        """A tag longer than the bound: passed on as it streams, never rewritten."""
        name: bytes | None = None
        if not is_end:
            match = TAG_NAME.match(buf, pos + 1)
            name = match.group().lower() if match.end() < len(buf) else b""
        out.append(self._insert.before_start_tag(name))
        state = follow_tag(buf, pos + (2 if is_end else 1), IN_TAG_NAME)[1]
        out.append(buf[pos:])
        self._long_state, self._long_name = state, name
        self._state = _LONG_TAG
        return len(buf)

    def _long_tag(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        end, self._long_state = follow_tag(buf, pos, self._long_state)
        if end < 0:
            out.append(buf[pos:])
            return len(buf)
        out += [buf[pos:end], self._insert.after_start_tag(self._long_name)]
        self._enter(self._long_name)
        return end

    def _tag_held(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        """A tag cut short: looked at again only when a `>` has come (no quadratic rescans)."""
        if final or buf.find(b">", self._scan_from) >= 0 or len(buf) - pos > self._limit:
            self._state = _MARKUP
            return self._markup(buf, pos, out, final)
        self._scan_from = len(buf)
        return pos

    def _text_state(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        pos, closed = self._text.read(buf, pos, out, final)
        if closed:
            self._state = _MARKUP
        return pos

    _handlers = (_markup_state, _tag_held, _long_tag, _text_state)  # by state


class CssRewriter(StreamRewriter):
    """Streams one `text/css` body: `url(/...)` and `@import "/..."` gain the prefix."""

    def __init__(self, prefix: str, keep: Sequence[str] = ()):
        super().__init__(prefix)
        self._scanner = CssScanner(Prefix(prefix, keep), Prefix(prefix).css)

    @property
    def held(self) -> int:
        return self._scanner.held

    def feed(self, chunk: bytes) -> bytes:
        return self._scanner.feed(chunk)

    def end(self) -> bytes:
        return self._scanner.end()


def html_rewriter(
    prefix: str, head_insert: bytes = b"", *, limit: int = DEFAULT_LIMIT, keep: Sequence[str] = ()
) -> StreamRewriter:
    """A rewriter for a `text/html` body; `head_insert` goes first in `<head>` (or before the
    first content when the page has no `<head>`). URLs under a root in `keep` (`/hub/`) stay."""
    return HtmlRewriter(prefix, head_insert, limit=limit, keep=keep)


def css_rewriter(prefix: str, keep: Sequence[str] = ()) -> StreamRewriter:
    """A rewriter for a `text/css` body: `url(/...)` and `@import "/..."`."""
    return CssRewriter(prefix, keep)
