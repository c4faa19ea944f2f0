"""The HTML tag grammar of `--rewrite-urls` (see `url_rewriter.py`): where a tag ends, what its
attributes are, and which attribute values hold URLs and how each kind is rewritten.

The regular expressions follow the HTML tokenizer's states for tags (tag name, attribute name,
value double-, single- or un-quoted), so a `>` inside a quoted value does not end a tag and an
unterminated quote leaves the tag incomplete (held for the next chunk) rather than misread.
"""

from __future__ import annotations

import re

from .css_rewriter import Prefix, needs_prefix, rewrite_css

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
TAG = re.compile(
    rb"<(?P<end>/?)(?P<tag>[A-Za-z][^\t\n\f\r />]*)(?=[\t\n\f\r />])(?:"
    + ATTRIBUTE.replace(b"?P<name>", b"?:").replace(b"?P<value>", b"?:")
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
    if needs_prefix(value, start, len(value), prefix.bare):
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
        if needs_prefix(value, pos, url_stop, prefix.bare):
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
        if needs_prefix(value, match.start(), match.end(), prefix.bare):
            parts += [value[last : match.start()], prefix.html]
            last = match.start()
    if not parts:
        return None
    parts.append(value[last:])
    return b"".join(parts)


def _rewrite_refresh(prefix: Prefix, value: bytes) -> bytes | None:
    start = _REFRESH.match(value).end()
    if needs_prefix(value, start, len(value), prefix.bare):
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
