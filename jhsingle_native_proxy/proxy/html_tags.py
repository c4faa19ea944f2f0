"""The HTML grammar of `--rewrite-urls` (see `url_rewriter.py`): where a tag ends, what its
attributes are, which attribute values hold URLs and how each kind is rewritten; what the fast
path passes over in one match; and the readers of text that is not markup (comments, scripts,
raw-text elements), which find where it ends.

The regular expressions follow the HTML tokenizer's states for tags (tag name, attribute name,
value double-, single- or un-quoted), so a `>` inside a quoted value does not end a tag and an
unterminated quote leaves the tag incomplete (held for the next chunk) rather than misread.
"""

from __future__ import annotations

import re

from .css_rewriter import CssScanner, Prefix, needs_prefix, rewrite_css

#: Each piece ends where the tokenizer ends it (the lookaheads), so each has one reading: a tag
#: cut short fails in linear time without atomic groups (Python 3.10 has none).
ATTRIBUTE_NAME = rb"[^\t\n\f\r />][^\t\n\f\r />=]*(?=[\t\n\f\r />=])"
_VALUE = rb"\"[^\"]*\"|'[^']*'|[^\t\n\f\r >\"'][^\t\n\f\r >]*(?=[\t\n\f\r >])|(?=>)"
#: One attribute, as the tokenizer splits them: a value must follow an `=` (so an unterminated
#: quote makes the whole tag incomplete, not a run of odd attribute names).
ATTRIBUTE = (
    rb"[\t\n\f\r /]*(?P<name>"
    + ATTRIBUTE_NAME
    + rb")(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?P<value>"
    + _VALUE
    + rb")|(?![\t\n\f\r ]*=))"
)
_ATTRIBUTE_RE = re.compile(ATTRIBUTE)
#: A whole tag: `<`, an optional `/`, the name, attributes, `>`.
_TAG_ATTRIBUTES = ATTRIBUTE.replace(b"?P<name>", b"?:").replace(b"?P<value>", b"?:")
TAG = re.compile(
    rb"<(?P<end>/?)(?P<tag>[A-Za-z][^\t\n\f\r />]*)(?=[\t\n\f\r />])(?:"
    + _TAG_ATTRIBUTES
    + rb")*[\t\n\f\r /]*>"
)
TAG_NAME = re.compile(rb"[A-Za-z][^\t\n\f\r />]*")

_URL_ATTRIBUTES = {
    b"href": "url",
    b"xlink:href": "url",
    b"src": "url",
    b"action": "url",
    b"formaction": "url",
    b"poster": "url",
    b"background": "url",
    b"srcset": "srcset",
    b"imagesrcset": "srcset",
    b"ping": "ping",
    b"style": "style",
}

#: The elements whose text is not markup (`<script>`, `<style>`, `<textarea>`...).
RAW_TEXT_NAMES = frozenset(
    b"script style textarea title xmp iframe noembed noframes plaintext".split()
)
_RAW_NAME = rb"(?i:s(?:cript|tyle)|t(?:extarea|itle)|xmp|iframe|no(?:embed|frames)|plaintext)"
_START_TAG_NAME = rb"<(?!" + _RAW_NAME + rb"[\t\n\f\r />])[A-Za-z][^\t\n\f\r />]*(?=[\t\n\f\r />])"
#: A value no rewriter changes: it does not start with `/` once the C0 controls and spaces a URL
#: parser strips are skipped (an unquoted value cannot hold a space, so only controls there).
_PLAIN_VALUE = (
    rb"\"(?![\x00-\x20]*/)[^\"]*\"|'(?![\x00-\x20]*/)[^']*'"
    rb"|(?![\x00-\x08\x0b\x0e-\x1f]*/)[^\t\n\f\r >\"'][^\t\n\f\r >]*(?=[\t\n\f\r >])|(?=>)"
)
#: An attribute `rewrite_tag` leaves as it is, whatever the element.
_PLAIN_ATTRIBUTE = (
    rb"[\t\n\f\r /]*(?!(?i:srcset|imagesrcset|ping|style|content)[\t\n\f\r />=])"
    + ATTRIBUTE_NAME
    + rb"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:"
    + _PLAIN_VALUE
    + rb")|(?![\t\n\f\r ]*=))"
)
#: An attribute of one URL (`_URL_ATTRIBUTES`' "url" kind) whose value starts with `/` after
#: what `_rewrite_url` strips; groups 2, 3 or 4 (by quoting): the URL, from its `/` to the
#: value's end.
_ROOT_URL_ATTRIBUTE = (
    rb"[\t\n\f\r /]*(?i:"
    + b"|".join(name for name, kind in _URL_ATTRIBUTES.items() if kind == "url")
    + rb")"
    rb"[\t\n\f\r ]*=[\t\n\f\r ]*(?:"
    rb"\"[\x00-\x20]*(/[^\"]*)\"|'[\x00-\x20]*(/[^']*)'"
    rb"|[\x00-\x08\x0b\x0e-\x1f]*(/[^\t\n\f\r >]*)(?=[\t\n\f\r >])"
    rb")"
)
#: The rewriter's fast path, in one match: first the markup no rewriting touches (text, comments,
#: doctypes, end tags, start tags of plain attributes that open no raw-text element), most
#: common alternative first; then, if one comes next, a start tag whose only attribute that may
#: change is one URL starting with `/` (group 1, empty, marks the tag's start). Each alternative
#: reads a token as the tokenizer does and no two can start the same token, so the match has one
#: reading and what it passes over is exactly what the tag-by-tag path would leave unchanged.
FAST_RUN = re.compile(
    rb"(?:[^<]+"
    rb"|</[A-Za-z][^\t\n\f\r />]*>"
    rb"|" + _START_TAG_NAME + rb"(?:" + _PLAIN_ATTRIBUTE + rb")*[\t\n\f\r /]*>"
    rb"|<!--(?:-?>|[\s\S]*?--!?>)"
    rb"|<!\[CDATA\[[\s\S]*?\]\]>"
    rb"|<!(?!--|\[CDATA\[)[^>]*>"
    rb"|<\?[^>]*>"
    rb"|</(?:>|[^A-Za-z>][^>]*>)"
    rb"|<(?=[^A-Za-z!/?])"
    rb"|</[A-Za-z][^\t\n\f\r />]*(?=[\t\n\f\r />])(?:" + _TAG_ATTRIBUTES + rb")*[\t\n\f\r /]*>"
    rb"|<(?i:script)(?=[\t\n\f\r />])(?:" + _PLAIN_ATTRIBUTE + rb")*[\t\n\f\r /]*>"
    rb"[^<]*(?:<(?!!--|/(?i:script)[\t\n\f\r />])[^<]*)*(?=</(?i:script)[\t\n\f\r />])"
    rb")*"
    rb"(?:()"
    + _START_TAG_NAME
    + rb"(?:"
    + _PLAIN_ATTRIBUTE
    + rb")*"
    + _ROOT_URL_ATTRIBUTE
    + rb"(?:"
    + _PLAIN_ATTRIBUTE
    + rb")*[\t\n\f\r /]*>)?"
)

_REFRESH = re.compile(
    rb"[\t\n\f\r ]*[\d.]*[\t\n\f\r ]*[;,]?[\t\n\f\r ]*"
    rb"(?:[Uu][Rr][Ll][\t\n\f\r ]*=[\t\n\f\r ]*)?(?:[\"'][\x00-\x20]*)?"
)
_SRCSET_GAP = re.compile(rb"[\t\n\f\r ,]*")
_SRCSET_URL = re.compile(rb"[^\t\n\f\r ]*")
_SRCSET_DESCRIPTORS = re.compile(rb"(?:[^,(]|\([^)]*\)?)*,?")
_URL_FUNCTION = re.compile(rb"[Uu][Rr][Ll]\(")
_PING_URL = re.compile(rb"[^\t\n\f\r ]+")
_C0_AND_SPACE = bytes(range(0x21))


# Inside a tag, the tokenizer's states (for a tag too long to hold, followed as it streams).
(
    IN_TAG_NAME,
    _BEFORE_ATTRIBUTE,
    _ATTRIBUTE_NAME,
    _AFTER_ATTRIBUTE,
    _BEFORE_VALUE,
    _DQ,
    _SQ,
    _UNQUOTED,
) = range(8)
_TAG_STOP = {
    IN_TAG_NAME: re.compile(rb"[\t\n\f\r />]"),
    _BEFORE_ATTRIBUTE: re.compile(rb"[^\t\n\f\r /]"),
    _ATTRIBUTE_NAME: re.compile(rb"[\t\n\f\r />=]"),
    _AFTER_ATTRIBUTE: re.compile(rb"[^\t\n\f\r ]"),
    _BEFORE_VALUE: re.compile(rb"[^\t\n\f\r ]"),
    _DQ: re.compile(rb'"'),
    _SQ: re.compile(rb"'"),
    _UNQUOTED: re.compile(rb"[\t\n\f\r >]"),
}


def follow_tag(buf: bytes, pos: int, state: int) -> tuple[int, int]:
    """Reads `buf[pos:]` as the inside of a tag from tokenizer state `state`: returns the
    offset just past the `>` that ends it (or -1) and the state at the end of `buf`.

    It agrees with `TAG` on where a tag ends; it is used only for tags too long to hold."""
    size = len(buf)
    while pos < size:
        match = _TAG_STOP[state].search(buf, pos)
        if match is None:
            return -1, state
        char = buf[match.start()]
        pos = match.start() + 1
        if char == 0x3E and state not in (_DQ, _SQ):
            return pos, state
        if state in (IN_TAG_NAME, _UNQUOTED, _DQ, _SQ):
            state = _BEFORE_ATTRIBUTE
        elif state == _BEFORE_ATTRIBUTE:
            state = _ATTRIBUTE_NAME
        elif state == _BEFORE_VALUE:
            state = _DQ if char == 0x22 else _SQ if char == 0x27 else _UNQUOTED
        elif char == 0x2F:
            state = _BEFORE_ATTRIBUTE
        elif char == 0x3D:
            state = _BEFORE_VALUE
        elif state == _ATTRIBUTE_NAME:
            state = _AFTER_ATTRIBUTE
        else:  # after a name, another name begins
            state = _ATTRIBUTE_NAME
    return -1, state


def _rewrite_url(prefix: Prefix, value: bytes) -> bytes | None:
    start = len(value) - len(value.lstrip(_C0_AND_SPACE))
    if needs_prefix(value, start, len(value), prefix.unchanged):
        return value[:start] + prefix.html + value[start:]
    return None


def _rewrite_srcset(prefix: Prefix, value: bytes) -> bytes | None:
    """Each candidate's URL, split as the HTML spec splits `srcset` (a URL may hold commas)."""
    parts: list[bytes] = []
    last = pos = 0
    size = len(value)
    while pos < size:
        pos = _SRCSET_GAP.match(value, pos).end()
        if pos >= size:
            break
        url_end = _SRCSET_URL.match(value, pos).end()
        url_stop = url_end
        while url_stop > pos and value[url_stop - 1] == 0x2C:
            url_stop -= 1
        if needs_prefix(value, pos, url_stop, prefix.unchanged):
            parts += [value[last:pos], prefix.html]
            last = pos
        pos = url_end if url_stop < url_end else _SRCSET_DESCRIPTORS.match(value, url_end).end()
    if not parts:
        return None
    parts.append(value[last:])
    return b"".join(parts)


def _rewrite_ping(prefix: Prefix, value: bytes) -> bytes | None:
    parts: list[bytes] = []
    last = 0
    for match in _PING_URL.finditer(value):
        if needs_prefix(value, match.start(), match.end(), prefix.unchanged):
            parts += [value[last : match.start()], prefix.html]
            last = match.start()
    if not parts:
        return None
    parts.append(value[last:])
    return b"".join(parts)


def _rewrite_refresh(prefix: Prefix, value: bytes) -> bytes | None:
    start = _REFRESH.match(value).end()
    if needs_prefix(value, start, len(value), prefix.unchanged):
        return value[:start] + prefix.html + value[start:]
    return None


def _rewrite_style(prefix: Prefix, value: bytes) -> bytes | None:
    if _URL_FUNCTION.search(value) is None:  # most style attributes: not worth a CSS scan
        return None
    rewritten = rewrite_css(prefix, value, in_attribute=True)
    return rewritten if rewritten != value else None


_VALUE_REWRITERS = {
    "url": _rewrite_url,
    "srcset": _rewrite_srcset,
    "ping": _rewrite_ping,
    "refresh": _rewrite_refresh,
    "style": _rewrite_style,
}


def rewrite_tag(prefix: Prefix, tag: bytes, name: bytes) -> bytes:
    """One whole start tag (as `TAG` matched it) with its URL attributes under the prefix;
    `name` is its lower-case name. Everything but the inserted prefixes is kept as it was."""
    refresh = name == b"meta" and _is_refresh(tag)
    parts: list[bytes] = []
    last = 0
    for attribute in _ATTRIBUTE_RE.finditer(tag, 1 + len(name)):
        attribute_name, value = attribute.group(1, 2)
        if value is None:
            continue
        kind = _URL_ATTRIBUTES.get(attribute_name) or _URL_ATTRIBUTES.get(attribute_name.lower())
        if kind is None:
            attribute_name = attribute_name.lower()
            if attribute_name == b"data" and name == b"object":
                kind = "url"
            elif attribute_name == b"content" and refresh:
                kind = "refresh"
            else:
                continue
        start, end = attribute.span(2)
        if tag[start] in b"\"'":
            start, end = start + 1, end - 1
        rewritten = _VALUE_REWRITERS[kind](prefix, tag[start:end])
        if rewritten is not None:
            parts += [tag[last:start], rewritten]
            last = end
    if not parts:
        return tag
    parts.append(tag[last:])
    return b"".join(parts)


def _is_refresh(tag: bytes) -> bool:
    """Whether a `<meta>` tag has `http-equiv=refresh` (its `content` then holds a URL)."""
    for attribute in _ATTRIBUTE_RE.finditer(tag):
        name, value = attribute.group(1, 2)
        if name.lower() == b"http-equiv" and value is not None:
            return value.strip(b"\"'\t\n\f\r ").lower() == b"refresh"
    return False


# -- text that is not markup ------------------------------------------------------------------


class TextUntil:
    """Text passed on as it is up to and through `closer` (a comment's `-->`, CDATA's `]]>`,
    a bogus comment's `>`), holding back only the `hold` bytes that may start it.

    The readers of text share `read` (returns where it stopped and whether `closer` was
    passed), `end` and `held`, so the rewriter keeps one reader and no flag per kind of text."""

    def __init__(self, closer: re.Pattern[bytes], hold: int):
        self._closer = closer
        self._hold = hold

    def read(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> tuple[int, bool]:
        match = self._closer.search(buf, pos)
        if match is None:
            keep = len(buf) if final else max(pos, len(buf) - self._hold)
            out.append(buf[pos:keep])
            return keep, False
        out.append(buf[pos : match.end()])
        return match.end(), True

    def end(self) -> bytes:
        return b""

    @property
    def held(self) -> int:
        """Bytes of its own kept between chunks (a `<style>`'s CSS scanner's)."""
        return 0


class CommentText(TextUntil):
    """A comment's text after `<!--`: `<!-->` and `<!--->` end at once (the tokenizer's
    abrupt closing), so the first bytes are looked at before the search for `-->`."""

    def __init__(self) -> None:
        super().__init__(_COMMENT_END, 3)
        self._opened = True  # just after `<!--`

    def read(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> tuple[int, bool]:
        if self._opened:
            if len(buf) - pos < 2 and not final:
                return pos, False
            self._opened = False
            for short in (b">", b"->"):
                if buf.startswith(short, pos):
                    out.append(short)
                    return pos + len(short), True
        return super().read(buf, pos, out, final)


class ScriptText(TextUntil):
    """A script's text, untouched, to its real end: `</script>` inside `<!--<script>` does not
    end it (the tokenizer's script data escape states: 0 none, 1 in `<!--`, 2 in a nested
    `<script>`)."""

    def __init__(self) -> None:
        super().__init__(_SCRIPT_TOKEN, 9)  # len(b"</script") + the byte after it
        self._escape = 0

    def read(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> tuple[int, bool]:
        size = len(buf)
        safe = size if final else size - self._hold
        search = pos
        while True:
            match = self._closer.search(buf, search)
            if match is None or match.start() >= safe:
                keep = min(size, max(pos, safe, search))
                out.append(buf[pos:keep])
                return keep, False
            token = match.group()
            if token == b"<!--":
                if self._escape == 0:
                    self._escape = 1
                search = match.start() + 2  # its dashes may close it: `<!-->`
            elif token == b"-->":
                self._escape = 0
                search = match.end()
            elif match.group(1):  # </script
                if self._escape != 2:
                    out.append(buf[pos : match.start()])
                    return match.start(), True
                self._escape = 1
                search = match.end()
            else:  # <script
                if self._escape == 1:
                    self._escape = 2
                search = match.end()


class RawText(TextUntil):
    """A raw-text element's text (`<textarea>`, `<title>`, `<style>`...) up to its end tag,
    which is left for the markup reader; a `<style>`'s text goes through the CSS rewriter."""

    def __init__(self, name: bytes, css: CssScanner | None):
        super().__init__(RAW_END[name], len(name) + 3)
        self._css = css

    @property
    def held(self) -> int:
        return self._css.held if self._css else 0

    def read(self, buf: bytes, pos: int, out: list[bytes], final: bool) -> tuple[int, bool]:
        match = self._closer.search(buf, pos)
        if match is None:
            stop = len(buf) if final else max(pos, len(buf) - self._hold)
        else:
            stop = match.start()
        text = buf[pos:stop]
        if self._css is not None:
            if match is None:
                text = self._css.feed(text)
            else:
                text = self._css.feed_last(text)
                self._css = None
        out.append(text)
        return stop, match is not None

    def end(self) -> bytes:
        css, self._css = self._css, None
        return css.end() if css else b""


class PlainText(TextUntil):
    """After `<plaintext>`: everything to the end of the body is text."""

    def __init__(self) -> None:
        super().__init__(re.compile(b"(?!)"), 0)


_COMMENT_END = re.compile(rb"--!?>")
_SCRIPT_TOKEN = re.compile(rb"<!--|-->|<(/?)(?i:script)[\t\n\f\r />]")
RAW_END = {name: re.compile(rb"</(?i:" + name + rb")[\t\n\f\r />]") for name in RAW_TEXT_NAMES}
#: The readers that keep no state of their own, shared.
CDATA_TEXT = TextUntil(re.compile(rb"\]\]>"), 2)
BOGUS_COMMENT = TextUntil(re.compile(rb">"), 0)
PLAIN_TEXT = PlainText()


def text_reader(name: bytes, prefix: Prefix) -> TextUntil | None:
    """The reader of what follows the start tag `name`, or None when that is markup."""
    if name not in RAW_END:
        return None
    if name == b"plaintext":
        return PLAIN_TEXT
    if name == b"script":
        return ScriptText()
    return RawText(name, CssScanner(prefix, prefix.css) if name == b"style" else None)
