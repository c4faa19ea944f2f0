"""Substitution of `{name}` placeholders in the app's command (and later its environment).

The 0.8.3 release and jupyter-server-proxy both document placeholders such as `{port}` and
`{base_url}`; admins also write `{--}` and `{-}` so that the app's own options can sit among ours
on one command line. We check every placeholder when the proxy starts, so a typo such as
`{prot}` is one clear error instead of an app started with a literal `{prot}` in its arguments.

Some docs and generated configurations write the placeholders in angle brackets (`<port>`,
`<-->`). `<name>` is taken as `{name}`, but only for the names below: any other `<...>` (`<b>`,
`<3`, `<unknown>`) is text, since an app's arguments may well hold HTML or comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Placeholders a command may use. Values are filled in before each start of the app.
KNOWN_NAMES = (
    "port",
    "base_url",
    "unix_socket",
    "presentation_path",
    "presentation_basename",
    "presentation_dirname",
    "presentation_stem",
    "origin_host",
    "repofolder",
)

# `{--}` and `{-}` are no values: they spell dashes that click would otherwise take as options.
LITERALS = {"--": "--", "-": "-"}

_TOKEN = re.compile(
    r"\{\{|\}\}|\{([^{}]*)\}|[{}]|<("
    + "|".join(re.escape(name) for name in (*KNOWN_NAMES, *LITERALS))
    + r")>"
)


class TemplateError(ValueError):
    """A command argument holds a placeholder we do not know, or an unbalanced brace."""


def _expand(text: str, lookup) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1) if match.group(2) is None else match.group(2)
        if name is None:
            raise TemplateError(
                f"unbalanced {token!r} in {text!r}: write {token * 2} for a literal brace"
            )
        if name in LITERALS:
            return LITERALS[name]
        return lookup(name, text)

    return _TOKEN.sub(replace, text)


def placeholders(args: Iterable[str]) -> set[str]:
    """The placeholder names used in `args` (literals `{--}`/`{-}` excluded).

    Raises TemplateError for unknown names and unbalanced braces.
    """
    found: set[str] = set()

    def note(name: str, text: str) -> str:
        if name not in KNOWN_NAMES:
            known = ", ".join("{" + n + "}" for n in (*KNOWN_NAMES, "--", "-"))
            raise TemplateError(f"unknown placeholder {{{name}}} in {text!r} (known: {known})")
        found.add(name)
        return ""

    for arg in args:
        _expand(arg, note)
    return found


def spell_dashes(text: str) -> str:
    """`text` with `{--}` and `{-}` (or `<-->`, `<->`) written as the dashes they stand for and
    the placeholders as `{name}`: an option's name as the app will read it. A word with bad
    braces is returned as it is (the start-up check reports it)."""
    try:
        return _expand(text, lambda name, source: "{" + name + "}")
    except TemplateError:
        return text


def substitute(text: str, values: Mapping[str, object]) -> str:
    """Fill the placeholders of one string with `values`."""

    def lookup(name: str, source: str) -> str:
        if name not in values:
            raise TemplateError(f"unknown placeholder {{{name}}} in {source!r}")
        return str(values[name])

    return _expand(text, lookup)


def substitute_all(args: Iterable[str], values: Mapping[str, object]) -> list[str]:
    """Fill the placeholders of every argument."""
    return [substitute(a, values) for a in args]
