"""Which sites may show our responses in a frame: `Content-Security-Policy: frame-ancestors`.

A page that another site can frame can be clickjacked: that site lays it, invisible, under
buttons of its own, and the viewer's clicks act in the app. Behind JupyterHub the browser takes
the viewer's login into the frame; with --authtype none any visitor's browser reaches the app.
The forgery checks (auth.forgery_reason) let a frame through, as a frame's load is a navigation.

So, as jupyter_server does for its own pages, every response of the app gets
`frame-ancestors 'self'`, unless the app decided itself: a `frame-ancestors` directive in any of
its `Content-Security-Policy` headers, or an `X-Frame-Options` that browsers obey.
`--frame-ancestors SOURCES` replaces `'self'`, for an owner who embeds the app in named
sites (an intranet, a learning platform). Our own pages (loading, errors) follow the same
rule; the console never lets itself be framed.

An app that sends a policy without `frame-ancestors` keeps it whole and gets ours as a second
header: a browser enforces every policy it is given (CSP 3, "multiple policies"), and ours says
nothing but who may frame the page, so it takes nothing from the app's own rules.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings.py imports this module at start-up, before aiohttp is wanted
    from multidict import MultiMapping

DEFAULT_SOURCES = "'self'"
# A source of frame-ancestors: a quoted keyword, or a scheme (`https:`) or host (with an optional
# scheme, port and path: `https://*.example.org:8443/lms`), which hold no quotes.
_SOURCE = re.compile(r"'[A-Za-z-]+'|[^\s'\"]+")
_KEYWORDS = ("'self'", "'none'")


def policy(sources: str) -> str:
    """The header value for `sources`."""
    return f"frame-ancestors {sources}"


def names_frame_ancestors(csp: str) -> bool:
    """Does one `Content-Security-Policy` header value have a frame-ancestors directive?

    A value may hold several policies joined by `,` (headers folded into one), each of
    directives separated by `;`; a directive's name is its first word, in any case.
    """
    for policy_text in csp.split(","):
        for directive in policy_text.split(";"):
            words = directive.split(None, 1)
            if words and words[0].lower() == "frame-ancestors":
                return True
    return False


# The X-Frame-Options values a browser acts on (HTML's "check a navigation response's adherence
# to X-Frame-Options"; ALLOWALL is the app saying "any site", and counts in a conflict). Any
# other value, ALLOW-FROM included (no current browser supports it), is ignored: the page is
# then framable by any site, so it is no decision of the app's.
_FRAME_OPTIONS = frozenset({"deny", "sameorigin", "allowall"})


def frame_options_decide(values: list[str]) -> bool:
    """Do these X-Frame-Options header values say anything a browser acts on?"""
    return any(word.strip().lower() in _FRAME_OPTIONS for v in values for word in v.split(","))


def policy_to_add(app_headers: MultiMapping[str], sources: str) -> str | None:
    """The `Content-Security-Policy` to add to the app's response, or None if the app decided
    who may frame it (its own frame-ancestors, or an X-Frame-Options that browsers obey, which
    we leave alone)."""
    if frame_options_decide(app_headers.getall("X-Frame-Options", [])):
        return None
    for value in app_headers.getall("Content-Security-Policy", ()):
        if names_frame_ancestors(value):
            return None
    return policy(sources)


def sources_problem(sources: str) -> str | None:
    """Why `sources` is no source list for --frame-ancestors, or None.

    It becomes part of a header: one directive's sources only, no `;` or `,` (which would start
    another directive or policy), printable ASCII only (no line break). Keywords keep their
    quotes: a bare `self` would name a host called "self".
    """
    if not sources.strip():
        return "give at least one source, e.g. 'self'"
    if any(c in sources for c in ";,"):
        return "give the sources of frame-ancestors only, separated by spaces (no ';' or ',')"
    if not all(" " <= c <= "~" for c in sources):
        return "only printable ASCII characters may appear (no line breaks)"
    for word in sources.split():
        if word.lower() in ("self", "none"):
            return f"write the keyword with its quotes: '{word.lower()}'"
        if not _SOURCE.fullmatch(word) or (word.startswith("'") and word.lower() not in _KEYWORDS):
            return f"{word!r} is not a source: use 'self', 'none', a scheme (https:) or a host"
    return None
