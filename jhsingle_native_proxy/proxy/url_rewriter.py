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

from .css_rewriter import CssScanner, Prefix
from .html_tags import (
    ATTRIBUTE,
    ATTRIBUTE_NAME,
    IN_TAG_NAME,
    TAG,
    TAG_NAME,
    follow_tag,
    rewrite_tag,
)

#: The longest tag rewritten; longer ones pass unchanged and are never held whole.
DEFAULT_LIMIT = 64 * 1024

_RAW_TEXT = (
    b"script",
    b"style",
    b"textarea",
    b"title",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
    b"plaintext",
)
#: What the fast path may pass over without a look from Python: text, comments, doctypes, end
#: tags, and start tags whose attributes cannot need the prefix (no value starting with `/`, no
#: `srcset`/`ping`/`style`/`content`) and that open no raw-text element.
_PLAIN_VALUE = (
    rb"\"(?![\x00-\x20]*/)[^\"]*\"|'(?![\x00-\x20]*/)[^']*'"
    rb"|(?!/)[^\t\n\f\r >\"'][^\t\n\f\r >]*(?=[\t\n\f\r >])|(?=>)"
)
_PLAIN_ATTRIBUTE = (
    rb"[\t\n\f\r /]*(?!(?i:srcset|imagesrcset|ping|style|content)[\t\n\f\r />=])"
    + ATTRIBUTE_NAME
    + rb"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:"
    + _PLAIN_VALUE
    + rb")|(?![\t\n\f\r ]*=))"
)
_FULL_ATTRIBUTES = ATTRIBUTE.replace(b"?P<name>", b"?:").replace(b"?P<value>", b"?:")
_RAW_NAMES = rb"(?i:s(?:cript|tyle)|t(?:extarea|itle)|xmp|iframe|no(?:embed|frames)|plaintext)"
#: Alternatives most common first (the order is for speed: each reads a token as the tokenizer
#: does, and no two can start the same token).
_SKIP = re.compile(
    rb"(?:[^<]+"
    rb"|</[A-Za-z][^\t\n\f\r />]*>"
    rb"|<(?!" + _RAW_NAMES + rb"[\t\n\f\r />])[A-Za-z][^\t\n\f\r />]*(?=[\t\n\f\r />])"
    rb"(?:" + _PLAIN_ATTRIBUTE + rb")*[\t\n\f\r /]*>"
    rb"|<!--(?:-?>|[\s\S]*?--!?>)"
    rb"|<!\[CDATA\[[\s\S]*?\]\]>"
    rb"|<!(?!--|\[CDATA\[)[^>]*>"
    rb"|<\?[^>]*>"
    rb"|</(?:>|[^A-Za-z>][^>]*>)"
    rb"|<(?=[^A-Za-z!/?])"
    rb"|</[A-Za-z][^\t\n\f\r />]*(?=[\t\n\f\r />])(?:" + _FULL_ATTRIBUTES + rb")*[\t\n\f\r /]*>"
    rb")*"
)
#: A tag worth a look from Python: a value starting with `/`, or an attribute read otherwise.
_HINT = re.compile(rb"=[\t\n\f\r ]*[\"']?[\x00-\x20]*/|(?i:srcset|ping|style|content)")

# The HTML scanner's states.
_DATA, _TAG_HELD, _LONG_TAG, _COMMENT, _CDATA, _BOGUS, _SCRIPT, _RAW, _PLAINTEXT = range(9)

_RAW_END = {name: re.compile(rb"</(?i:" + name + rb")[\t\n\f\r />]") for name in _RAW_TEXT}
_SCRIPT_TOKEN = re.compile(rb"<!--|-->|<(/?)(?i:script)[\t\n\f\r />]")
_SCRIPT_HOLD = 9  # len(b"</script") + the byte after it
_COMMENT_END = re.compile(rb"--!?>")
_LEADING_SPACE = re.compile(rb"(?:[\t\n\f\r ]|\xef\xbb\xbf)*")
_BOM = b"\xef\xbb\xbf"

#: Attributes holding one URL on any element (`data` only on `<object>`, below).


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


class HtmlRewriter(StreamRewriter):
    """Streams one `text/html` body (see the module's docstring for what changes).

    `_buf` holds only what a chunk boundary left undecided: a tag cut short (at most `limit`
    bytes), or a few bytes at the end of a comment, a script or a raw-text element.
    """

    def __init__(self, prefix: str, head_insert: bytes = b"", *, limit: int = DEFAULT_LIMIT):
        super().__init__(prefix)
        self._prefix = Prefix(prefix)
        self._limit = limit
        self._insert = head_insert
        self._pending = bool(head_insert)  # head_insert not placed yet
        self._state = _DATA
        self._buf = b""
        self._started = False
        self._raw_name = b""  # the raw-text element we are in
        self._css: CssScanner | None = None  # a <style> element's text
        self._script_escape = 0  # 0, 1 in <!-- of a script, 2 in <!--<script> of a script
        self._long_state = IN_TAG_NAME  # a long tag's tokenizer state,
        self._long_name: bytes | None = None  # its name (None for an end tag),
        self._scan_from = 0  # where to look for a held tag's `>` next
        self._comment_opened = False  # just after `<!--`

    @property
    def held(self) -> int:
        return len(self._buf) + (self._css.held if self._css else 0)

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        self._started = True
        self._buf = self._buf + chunk if self._buf else chunk
        return self._run(False)

    def end(self) -> bytes:
        out = self._run(True)
        if self._css is not None:
            out += self._css.end()
            self._css = None
        if self._pending and self._started and self._state == _DATA:
            out += self._take_insert()  # a page of only spaces, comments, a doctype
        self._pending = False
        self._buf = b""
        return out

    def _run(self, final: bool) -> bytes:
        buf = self._buf
        out: list[bytes] = []
        pos = 0
        handlers = self._handlers
        while pos < len(buf):
            state = self._state
            new = handlers[state](self, buf, pos, out, final)
            if new == pos and self._state == state:
                break
            pos = new
        if final and pos < len(buf):  # the body ends inside a tag: passed on as it came,
            if self._state in (_DATA, _TAG_HELD):  # after head_insert if it still waits
                out.append(self._take_insert())
            self._state = _BOGUS
            out.append(buf[pos:])
            pos = len(buf)
        self._buf = buf[pos:]
        return b"".join(out)

    # -- the states -------------------------------------------------------------------------

    def _data(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        if not self._pending:
            pos = self._plain_run(buf, pos, out)
        size = len(buf)
        if pos >= size:
            return pos
        less = buf.find(b"<", pos)
        if less != pos:  # text before the next `<` (only ever here while head_insert waits)
            stop = size if less < 0 else less
            space = _LEADING_SPACE.match(buf, pos, stop).end()
            if space < stop:
                if less < 0 and not final and stop - space < 3 and _BOM.startswith(buf[space:stop]):
                    out.append(buf[pos:space])
                    return space  # maybe a byte-order mark cut in two
                out += [buf[pos:space], self._take_insert(), buf[space:stop]]
            else:
                out.append(buf[pos:stop])
            return stop
        return self._markup(buf, pos, out, final)

    def _plain_run(self, buf: bytes, pos: int, out: list[bytes]) -> int:
        """The hot loop: plain markup in one regex match, then each start tag that stopped it
        rewritten here, until something needs the general path (a raw-text element, a tag cut
        short, a comment cut short...)."""
        skip, whole_tag, limit, prefix = _SKIP.match, TAG.match, self._limit, self._prefix
        while True:
            skipped = skip(buf, pos).end()
            if skipped > pos:
                out.append(buf[pos:skipped])
                pos = skipped
            match = whole_tag(buf, pos)
            if match is None or match.group("end"):
                return pos
            name = match.group("tag").lower()
            if name in _RAW_END:
                return pos
            end = match.end()
            tag = buf[pos:end]
            out.append(rewrite_tag(prefix, tag, name) if end - pos <= limit else tag)
            pos = end

    def _take_insert(self) -> bytes:
        if not self._pending:
            return b""
        self._pending = False
        return self._insert

    def _markup(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        """At a `<`: what it opens."""
        size = len(buf)
        if pos + 2 >= size and not final:
            return pos  # `<`, `<!`, `</`: too little to tell
        second = buf[pos + 1] if pos + 1 < size else 0
        if second == 0x21:  # <!
            for opener, state in ((b"<!--", _COMMENT), (b"<![CDATA[", _CDATA)):
                if buf.startswith(opener, pos):
                    out.append(opener)
                    self._state = state
                    self._comment_opened = True
                    return pos + len(opener)
                if size - pos < len(opener) and opener.startswith(buf[pos:]) and not final:
                    return pos
            out.append(b"<!")
            self._state = _BOGUS
            return pos + 2
        if second == 0x3F:  # <?
            out.append(b"<?")
            self._state = _BOGUS
            return pos + 2
        if second == 0x2F:  # </
            third = buf[pos + 2] if pos + 2 < size else 0
            if (0x41 <= third <= 0x5A) or (0x61 <= third <= 0x7A):
                return self._tag(buf, pos, out, final, True)
            if third == 0x3E:
                out.append(b"</>")
                return pos + 3
            out.append(b"</")
            self._state = _BOGUS
            return pos + 2
        if (0x41 <= second <= 0x5A) or (0x61 <= second <= 0x7A):
            return self._tag(buf, pos, out, final, False)
        out += [self._take_insert(), b"<"]
        return pos + 1

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
            out += [self._take_insert(), tag]
            return end
        name = match.group("tag").lower()
        if self._pending and name == b"head":
            out += [tag, self._take_insert()]
        else:
            if self._pending and name != b"html":
                out.append(self._take_insert())
            if end - pos <= self._limit and _HINT.search(tag):
                tag = rewrite_tag(self._prefix, tag, name)
            out.append(tag)
        self._enter(name)
        return end

    def _enter(self, name: bytes | None) -> None:
        """After the start tag `name`: a raw-text element's text, or markup again."""
        self._state = _DATA
        if name is None or name not in _RAW_END:
            return
        if name == b"plaintext":
            self._state = _PLAINTEXT
        elif name == b"script":
            self._state = _SCRIPT
            self._script_escape = 0
        else:
            self._state = _RAW
            self._raw_name = name
            if name == b"style":
                self._css = CssScanner(self._prefix, self._prefix.css)

    def _overflow(self, buf: bytes, pos: int, out: list[bytes], is_end: bool) -> int:
        """A tag longer than the bound: passed on as it streams, never rewritten."""
        name: bytes | None = None
        if not is_end:
            match = TAG_NAME.match(buf, pos + 1)
            name = match.group().lower() if match.end() < len(buf) else b""
        if self._pending and name != b"html" and name != b"head":
            out.append(self._take_insert())
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
        out.append(buf[pos:end])
        if self._pending and self._long_name == b"head":
            out.append(self._take_insert())
        self._enter(self._long_name)
        return end

    def _tag_held(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        """A tag cut short: looked at again only when a `>` has come (no quadratic rescans)."""
        if final or buf.find(b">", self._scan_from) >= 0 or len(buf) - pos > self._limit:
            self._state = _DATA
            return self._markup(buf, pos, out, final)
        self._scan_from = len(buf)
        return pos

    def _comment(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        if self._comment_opened:  # `<!-->` and `<!--->` end at once
            if len(buf) - pos < 2 and not final:
                return pos
            self._comment_opened = False
            for short in (b">", b"->"):
                if buf.startswith(short, pos):
                    out.append(short)
                    self._state = _DATA
                    return pos + len(short)
        return self._until(buf, pos, out, final, _COMMENT_END, 3)

    def _until(
        self,
        buf: bytes,
        pos: int,
        out: list[bytes],
        final: bool,
        closer: re.Pattern[bytes],
        hold: int,
    ) -> int:
        """Passes text on up to and through `closer`, holding `hold` bytes that may start it."""
        match = closer.search(buf, pos)
        if match is None:
            keep = len(buf) if final else max(pos, len(buf) - hold)
            out.append(buf[pos:keep])
            return keep
        out.append(buf[pos : match.end()])
        self._state = _DATA
        return match.end()

    def _cdata(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        return self._until(buf, pos, out, final, _CDATA_END, 2)

    def _bogus(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        return self._until(buf, pos, out, final, _GT, 0)

    def _script(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        """A script's text, untouched, to its real end: `</script>` inside `<!--<script>`
        does not end it (the tokenizer's script escape states)."""
        size = len(buf)
        safe = size if final else size - _SCRIPT_HOLD
        search = pos
        while True:
            match = _SCRIPT_TOKEN.search(buf, search)
            if match is None or match.start() >= safe:
                keep = min(size, max(pos, safe, search))
                out.append(buf[pos:keep])
                return keep
            token = match.group()
            if token == b"<!--":
                if self._script_escape == 0:
                    self._script_escape = 1
                search = match.start() + 2  # its dashes may close it: `<!-->`
            elif token == b"-->":
                self._script_escape = 0
                search = match.end()
            elif match.group(1):  # </script
                if self._script_escape == 2:
                    self._script_escape = 1
                else:
                    out.append(buf[pos : match.start()])
                    self._state = _DATA
                    return match.start()
                search = match.end()
            else:  # <script
                if self._script_escape == 1:
                    self._script_escape = 2
                search = match.end()

    def _raw(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        closer = _RAW_END[self._raw_name]
        match = closer.search(buf, pos)
        if match is None:
            keep = len(buf) if final else max(pos, len(buf) - len(self._raw_name) - 3)
            stop = keep
        else:
            keep = stop = match.start()
        text = buf[pos:stop]
        if self._css is not None:
            text = self._css.feed(text)
            if match is not None:
                text += self._css.end()
                self._css = None
        out.append(text)
        if match is not None:
            self._state = _DATA
        return keep

    def _plaintext(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> int:
        out.append(buf[pos:])
        return len(buf)

    _handlers = {
        _DATA: _data,
        _TAG_HELD: _tag_held,
        _LONG_TAG: _long_tag,
        _COMMENT: _comment,
        _CDATA: _cdata,
        _BOGUS: _bogus,
        _SCRIPT: _script,
        _RAW: _raw,
        _PLAINTEXT: _plaintext,
    }


_CDATA_END = re.compile(rb"\]\]>")
_GT = re.compile(rb">")


class CssRewriter(StreamRewriter):
    """Streams one `text/css` body: `url(/...)` and `@import "/..."` gain the prefix."""

    def __init__(self, prefix: str):
        super().__init__(prefix)
        self._scanner = CssScanner(Prefix(prefix), Prefix(prefix).css)

    @property
    def held(self) -> int:
        return self._scanner.held

    def feed(self, chunk: bytes) -> bytes:
        return self._scanner.feed(chunk)

    def end(self) -> bytes:
        return self._scanner.end()


def html_rewriter(
    prefix: str, head_insert: bytes = b"", *, limit: int = DEFAULT_LIMIT
) -> StreamRewriter:
    """A rewriter for a `text/html` body; `head_insert` goes first in `<head>` (or before the
    first content when the page has no `<head>`)."""
    return HtmlRewriter(prefix, head_insert, limit=limit)


def css_rewriter(prefix: str) -> StreamRewriter:
    """A rewriter for a `text/css` body: `url(/...)` and `@import "/..."`."""
    return CssRewriter(prefix)
