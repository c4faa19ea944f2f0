"""Runs one checkout in a process of its own, so that it can be stopped.

A checkout in a thread of the proxy could not be interrupted: SIGTERM to the proxy would wait for
a slow clone to finish (up to its timeout). In a child process in its own session, the proxy can
end it, git included, at once; the checkout module repairs an interrupted run the next time.

Protocol: the request comes as JSON on stdin: the clean URL, and the user name and token apart
(`username`, `password`), so that no credential ever shows in the process list; the checkout
hands them to git through its environment only (see git_credentials). stdout carries lines
`P <progress>`, then one `R <result JSON>` or `E <message>`. Log records go to stderr, which is
the proxy's own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

from .checkout import CheckoutError, checkout
from .git_credentials import Credentials


def _say(kind: str, text: str) -> None:
    sys.stdout.write(f"{kind} {text}\n")
    sys.stdout.flush()


def main() -> int:
    request = json.load(sys.stdin)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname).1s %(asctime)s.%(msecs)03d %(name)s] %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.DEBUG if request.get("debug") else logging.INFO)
    username, password = request.get("username") or "", request.get("password") or ""
    try:
        credentials = Credentials(username, password) if username or password else None
    except ValueError as e:  # a line break in the token: the message names no value
        _say("E", str(e))
        return 1
    try:
        result = checkout(
            request["url"],
            request["folder"],
            request.get("branch", ""),
            depth=request.get("depth"),
            timeout=request.get("timeout", 300),
            progress=lambda line: _say("P", line.replace("\n", " ")),
            credentials=credentials,
        )
    except CheckoutError as e:
        _say("E", str(e).replace("\n", " "))
        return 1
    _say("R", json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
