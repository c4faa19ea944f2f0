"""Log lines that request data cannot forge: control characters escaped, OAuth states scrubbed.

Much of what the proxy logs comes from clients: request targets, header values quoted in a
refusal, a hub user's name, JupyterHub's reasons for a failed login (which quote the callback's
own `?error_description=`). A newline in any of them would start a line of the attacker's
choosing ("Restart asked by alice"). Rather than trust every call site to escape its arguments,
the one formatter of the process does it (`configure_logging` in server.py): every record's
message is one line, and a traceback's lines are indented, so a line that starts at the left
margin is always the start of a record.
"""

from __future__ import annotations

import logging
import re

# C0 controls but tab, DEL, C1 controls, and Unicode's line and paragraph separators: every
# character that a terminal acts on or that some reader (Python's `str.splitlines`, editors,
# log shippers) takes for the end of a line. A tab is left as it is: it ends no line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """`text` on one line: control characters written as `\\n`, `\\r`, `\\x1b`, `\\u2028`."""
    return _CONTROL.sub(_escaped, text)


def _indented(text: str) -> str:
    """A traceback or stack, each of its lines escaped and indented (see the module's doc)."""
    return "\n".join("    " + escape_controls(line) for line in text.split("\n"))


class OneLineFormatter(logging.Formatter):
    """A Formatter whose records are one line each, their tracebacks indented under them."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


class _Scrubbed:
    """Stands for a secret argument of a log record, as `%s` and as `%r`."""

    def __repr__(self) -> str:
        return "[secret]"

    __str__ = __repr__


SCRUBBED = _Scrubbed()


class OAuthStateScrubber(logging.Filter):
    """JupyterHub's callback warns "oauth state argument %r != cookie %s=%r" with both states
    (on tornado's `tornado.application` logger): a pending login's state does not belong in a
    log. The values are replaced; the cookie's name (no secret) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("oauth state") and isinstance(record.args, tuple):
            args = record.args
            record.args = tuple(
                arg if i == 1 and len(args) == 3 else SCRUBBED for i, arg in enumerate(args)
            )
        return True
