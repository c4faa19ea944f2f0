"""Runs one checkout in a process of its own, so that it can be stopped.

A checkout in a thread of the proxy could not be interrupted: SIGTERM to the proxy would wait for
a slow clone to finish (up to its timeout). In a child process in its own session, the proxy can
end it, git included, at once; the checkout module repairs an interrupted run the next time.

Protocol: the request comes as JSON on stdin (so that credentials in the URL never show in the
process list); stdout carries lines `P <progress>`, then one `R <result JSON>` or `E <message>`.
Log records go to stderr, which is the proxy's own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

from .checkout import CheckoutError, checkout


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
    try:
        result = checkout(
            request["url"],
            request["folder"],
            request.get("branch", ""),
            depth=request.get("depth"),
            timeout=request.get("timeout", 300),
            progress=lambda line: _say("P", line.replace("\n", " ")),
        )
    except CheckoutError as e:
        _say("E", str(e).replace("\n", " "))
        return 1
    _say("R", json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
