"""`--env-file`: variables for the app read from dotenv files, strictly, by our own parser.

Why a parser of our own: a file of secrets must be read the same way at every start, with no
surprise. A line we cannot read is an error naming the file and the line's number, never the
line itself (it may hold a secret); nothing is expanded (`$X` and `${X}` stay as written), no
bare `NAME` line means "unset", and a backslash in double quotes is one of the known escapes.

The syntax (python-dotenv's, less its expansion and its leniency):

    # a comment, and blank lines
    NAME=value                 unquoted: up to a ` #` comment, surrounding blanks dropped
    export NAME=value          `export ` is allowed and means nothing more
    NAME='value'               single quotes: \\' and \\\\ are the only escapes
    NAME="value\\n"            double quotes: \\\\ \\' \\" \\a \\b \\f \\n \\r \\t \\v
    NAME="two                  a quoted value may span lines
    lines"

Names are `[A-Za-z_][A-Za-z0-9_]*`; a later line (or a later file) wins over an earlier one.
The files are read again before every start (see supervisor.py), so a rotated secret, a mounted
Kubernetes Secret's new content, is what the app gets after a restart. Pure but for reading.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping

# A file of variables is small: anything larger is refused before it is decoded.
MAX_BYTES = 1024 * 1024
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPORT = re.compile(r"export[ \t]+")
_DOUBLE_QUOTE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f",
                         "n": "\n", "r": "\r", "t": "\t", "v": "\v"}  # fmt: skip
_SINGLE_QUOTE_ESCAPES = {"\\": "\\", "'": "'"}
_UNQUOTED_COMMENT = re.compile(r"[ \t]+#.*")


class AppEnvironmentError(ValueError):
    """The app's environment cannot be made: one line naming a file and a line number, or a
    variable's name, and never a value."""


def parse_env(text: str, where: str) -> dict[str, str]:
    """The variables of a dotenv text; `where` names it in errors (`--env-file FILE`)."""
    lines = text.split("\n")
    found: dict[str, str] = {}
    number = 0
    while number < len(lines):
        first = number + 1  # the 1-based number of the line the entry starts on
        line = lines[number].rstrip("\r").strip(" \t")
        number += 1
        if not line or line.startswith("#"):
            continue

        def error(problem: str, at: int = first) -> AppEnvironmentError:
            return AppEnvironmentError(f"{where}, line {at}: {problem}")

        if export := _EXPORT.match(line):
            line = line[export.end() :]
        name, sep, rest = line.partition("=")
        if not sep:
            raise error("no '=': each line is NAME=VALUE, a # comment, or blank")
        name = name.rstrip(" \t")
        if not NAME.fullmatch(name):
            raise error("the name before '=' is not a variable name (letters, digits, _)")
        rest = rest.lstrip(" \t")
        if rest[:1] in ("'", '"'):
            value, after, number = _quoted(rest, lines, number, error)
            if after.strip(" \t\r") and not after.lstrip(" \t").startswith("#"):
                raise error("text after the closing quote (a comment starts with ' #')", number)
        else:
            value = _UNQUOTED_COMMENT.sub("", rest).rstrip(" \t\r")
        if "\0" in value:
            raise error("the value holds a NUL character, which no environment can hold")
        found[name] = value
    return found


def _quoted(rest: str, lines: list[str], number: int, error) -> tuple[str, str, int]:
    """A quoted value that starts `rest` (the line after `=`) and may go on over the following
    lines: (the value, what follows its closing quote, the number of the line it ends on)."""
    quote, escapes = rest[0], _DOUBLE_QUOTE_ESCAPES if rest[0] == '"' else _SINGLE_QUOTE_ESCAPES
    text, i, value = rest, 1, []
    while True:
        while i < len(text):
            c = text[i]
            if c == quote:
                return "".join(value), text[i + 1 :], number
            if c == "\\" and i + 1 < len(text):
                escaped = escapes.get(text[i + 1])
                if escaped is not None:
                    value.append(escaped)
                    i += 2
                    continue
                if quote == '"':
                    raise error(
                        "a backslash before a character that is no escape in double quotes "
                        "(\\\\ \\' \\\" \\a \\b \\f \\n \\r \\t \\v); single quotes keep "
                        "backslashes as written",
                        number,
                    )
            value.append(c)
            i += 1
        if number >= len(lines):
            raise error("the quote opened on this line is never closed")
        value.append("\n")
        text, i = lines[number].rstrip("\r"), 0
        number += 1


def read_env_file(path: str) -> dict[str, str]:
    """The variables of the file at `path`; AppEnvironmentError naming the file (and the line)
    if it cannot be read or parsed. Only a regular file is read (a FIFO would block the start)."""
    where = f"--env-file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise AppEnvironmentError(f"{where}: cannot be read ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AppEnvironmentError(f"{where}: not a regular file")
        try:
            data = f.read(MAX_BYTES + 1)
        except OSError as e:
            raise AppEnvironmentError(f"{where}: cannot be read ({e.strerror})") from None
    if len(data) > MAX_BYTES:
        raise AppEnvironmentError(f"{where}: larger than {MAX_BYTES // 1024} KiB: not read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AppEnvironmentError(f"{where}, line {line}: not UTF-8 text") from None
    return parse_env(text.removeprefix("\ufeff"), where)


def read_env_files(paths: Iterable[str]) -> dict[str, str]:
    """The variables of every file, in order (a later file's value wins)."""
    found: dict[str, str] = {}
    for path in paths:
        found.update(read_env_file(path))
    return found


def check_required(names: Iterable[str], environ: Mapping[str, str], source: str) -> None:
    """AppEnvironmentError naming the first of `names` (which `source` says the app needs) that
    is not set, or empty, in the app's environment `environ`."""
    for name in names:
        if not environ.get(name):
            raise AppEnvironmentError(
                f"{source} says the app needs {name} in its environment, and it is not set: "
                "give it in a file with --env-file (or with --env)"
            )
