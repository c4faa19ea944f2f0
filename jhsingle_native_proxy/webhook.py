"""`{prefix}_jhsnp/webhook`: a git host says the followed branch moved; the deployment updates.

A git host cannot log in to the hub, so this is the one endpoint without a hub login. Its gate
is a secret shared with the host instead (webhook_secret.py), shown in one of these ways:

| sender | header | what it holds |
| --- | --- | --- |
| GitHub, Gitea, Forgejo | `X-Hub-Signature-256` | `sha256=` + hex HMAC-SHA256 of the body |
| Gitea, Forgejo | `X-Gitea-Signature` | the same HMAC, hex without a prefix |
| anything else | `X-Signature-256` | `sha256=` + hex HMAC-SHA256 of the body |
| GitLab | `X-Gitlab-Token` | the secret itself (GitLab signs nothing) |

Every comparison is `hmac.compare_digest`. What an unverified client costs: a request without
any of these headers gets 401, and one whose header is malformed (another algorithm, not 64 hex
digits) or whose GitLab token is wrong gets 403, before a byte of the body is read. A signed
body must be read to be checked: that is the one unauthenticated body the proxy reads, at most
BODY_LIMIT bytes (a Content-Length above it is 413 at once; a chunked body that grows past it
gets 400 and the connection ends) within BODY_TIMEOUT seconds, and at most BODIES_AT_ONCE such
bodies at a time: BODY_LIMIT * BODIES_AT_ONCE bytes in all. When all are taken, the next one
comes in and the body read the longest is dropped (its connection closed): a turned-away newcomer
let anyone with BODIES_AT_ONCE slow connections, renewed every BODY_TIMEOUT, turn away every
real push, while a git host sends its body in milliseconds and is now dropped only by a client
that opens connections faster than that. A wrong
signature is 403 and a warning in the log with the client's address (never the secret or the
body), at most WARNINGS_PER_MINUTE a minute: a log kept at WARNING is not anyone's to fill.

Once verified: push events (GitHub's and Gitea's `push`, GitLab's `Push Hook`, and whatever a
generic sender sends, which names no event) ask the deployment for an update and get 202; a
ping gets 200; other events, and a push to a branch other than --repobranch, 202 with nothing
done. The update runs in the background (`request_update` returns at once and merges pushes
that arrive together), so the host has its answer in milliseconds.

Without a secret, or without --follow (no deployment), the route is not made at all: the path
is then one more path under the prefix, answered as any other (the app's, after the login).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs

from tornado import web

from .base import RESERVED, BaseHandler, Services
from .webhook_secret import readable_by_everyone

log = logging.getLogger("jhsingle_native_proxy")

PATH = RESERVED + "webhook"
# GitHub caps a payload at 25 MiB, but a push's is ~2 KiB plus ~1 KiB per commit (GitHub lists
# at most 20 commits, GitLab 20, Gitea 5 by default): tens of KiB, rarely more than 100 KiB.
# 1 MiB holds every real push with room, and bounds what an unverified client makes us keep.
BODY_LIMIT = 1024 * 1024
# Seconds to send it: a git host sends it in one go.
BODY_TIMEOUT = 20.0
BODIES_AT_ONCE = 8
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,20}")
# Refusals are warned of at most this often a minute: anyone can send them, and a log kept at
# WARNING (the access lines are INFO) would have a line per request.
WARNINGS_PER_MINUTE = 10
# The credential headers, in the order they are looked for: (header, scheme).
CREDENTIAL_HEADERS = (
    ("X-Hub-Signature-256", "sha256="),
    ("X-Gitea-Signature", ""),
    ("X-Signature-256", "sha256="),
    ("X-Gitlab-Token", None),  # the secret itself
)
# The event headers of the hosts that name their events (Gitea also sends X-GitHub-Event).
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event")


class UpdateTarget(Protocol):
    """What the webhook needs of the deployment."""

    def request_update(self, reason: str) -> None:
        """Look at the branch soon, in the background; calls close together make one update."""


def find_credential(headers: Mapping[str, str]) -> tuple[str, str | None, str] | None:
    """The first credential header sent: (its name, its prefix or None for a token, value)."""
    for name, prefix in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value is not None:
            return name, prefix, value.strip()
    return None


def expected_digest(prefix: str, value: str) -> bytes | None:
    """The HMAC a signature header claims, or None if it is malformed (another algorithm, a
    wrong length, not hex)."""
    if value[: len(prefix)].lower() != prefix:
        return None
    digits = value[len(prefix) :]
    if not _SIGNATURE.fullmatch(digits):
        return None
    return bytes.fromhex(digits)


def signature_matches(secret: bytes, body: bytes, digest: bytes) -> bool:
    """Whether `digest` is the HMAC-SHA256 of `body` with `secret` (constant time)."""
    return hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), digest)


def token_matches(secret: bytes, value: str) -> bool:
    """GitLab's token against the secret, in constant time (header values are latin-1). Both
    are hashed first, so that not even the secret's length shows in the time taken."""
    given = hashlib.sha256(value.encode("latin-1", "replace")).digest()
    return hmac.compare_digest(given, hashlib.sha256(secret).digest())


def event_of(headers: Mapping[str, str]) -> str:
    """`push`, `ping` or the event's own name; a sender that names none is taken as `push`."""
    gitlab = headers.get("X-Gitlab-Event")
    if gitlab is not None:
        return "push" if gitlab.strip().lower() == "push hook" else gitlab.strip()
    for name in EVENT_HEADERS:
        value = headers.get(name)
        if value is not None:
            return value.strip().lower()
    return "push"


def pushed_ref(body: bytes, content_type: str) -> str | None:
    """The `ref` a (verified) push payload names, JSON or GitHub's form-encoded `payload=`; None
    when it names none or cannot be read (then the deployment looks at the branch anyway)."""
    try:
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            body = parse_qs(body.decode("utf-8")).get("payload", [""])[0].encode("utf-8")
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    return ref if isinstance(ref, str) else None


def ref_is_followed(ref: str | None, branch: str) -> bool:
    """Whether a push to `ref` may move `branch` ("" = the remote's default, not known here:
    any branch may be it)."""
    if ref is None:
        return True
    if branch:
        return ref == "refs/heads/" + branch
    return ref.startswith("refs/heads/")


class RefusalWarnings:
    """How many refusals may still be warned of this minute, and how many were left out."""

    def __init__(self) -> None:
        self.minute_began = float("-inf")
        self.warned = 0
        self.left_out = 0

    def allow(self, now: float | None = None) -> tuple[bool, int]:
        """Whether to warn of a refusal now, and (when it may) how many went unwarned before."""
        now = time.monotonic() if now is None else now
        if now - self.minute_began >= 60:
            self.minute_began, self.warned = now, 0
        if self.warned >= WARNINGS_PER_MINUTE:
            self.left_out += 1
            return False, 0
        self.warned += 1
        left_out, self.left_out = self.left_out, 0
        return True, left_out


@dataclass
class WebhookGate:
    """The route's state: its secret, the followed branch, and the bodies being read now (the
    handlers, oldest first)."""

    secret: bytes
    branch: str
    reading: dict[WebhookHandler, None] = field(default_factory=dict)
    warnings: RefusalWarnings = field(default_factory=RefusalWarnings)

    def warn(self, message: str, *args: object) -> None:
        """A warning of an anonymous client's doing, at a bounded rate."""
        allowed, left_out = self.warnings.allow()
        if not allowed:
            return
        if left_out:
            log.warning("%d more webhook warnings were left out", left_out)
        log.warning(message, *args)
        if self.warnings.warned == WARNINGS_PER_MINUTE:
            log.warning("no more warnings of refused webhooks this minute")

    def take_turn(self, handler: WebhookHandler) -> None:
        """Count `handler` among the bodies being read, dropping the oldest when all are taken."""
        if len(self.reading) >= BODIES_AT_ONCE:
            oldest = next(iter(self.reading))
            self.reading.pop(oldest)
            oldest.drop()
        self.reading[handler] = None

    def give_turn_back(self, handler: WebhookHandler) -> None:
        self.reading.pop(handler, None)


@web.stream_request_body
class WebhookHandler(BaseHandler):
    """No hub login (see the module's docstring): the shared secret is the gate."""

    gate: WebhookGate
    _credential: tuple[str, str | None, str]
    _chunks: list[bytes]

    def initialize(self, gate: WebhookGate) -> None:
        self.gate = gate
        self._chunks = []

    def refuse(self, status: int, message: str, why: str = "") -> None:
        if why:
            forwarded = self.request.headers.get("X-Forwarded-For", "")[:200]
            via = f" (forwarded for {forwarded})" if forwarded else ""
            self.gate.warn("Webhook refused from %s%s: %s", self.request.remote_ip, via, why)
        self.send_error_page(status, message)

    def prepare(self) -> None:
        # Answers from here leave the body unread, and close the connection (BaseHandler).
        self.unread_body = True
        if self.request.method != "POST":
            self.send_error_page(405, "a webhook is a POST", headers={"Allow": "POST"})
            return
        credential = find_credential(self.request.headers)
        if credential is None:
            return self.refuse(401, "no signature", "no signature header")
        name, prefix, value = credential
        if prefix is None:
            if not token_matches(self.gate.secret, value):
                return self.refuse(403, "wrong token", f"wrong {name}")
        elif expected_digest(prefix, value) is None:
            return self.refuse(403, "malformed signature", f"malformed {name}")
        length = self.request.headers.get("Content-Length", "0")
        # ASCII digits only: str.isdigit() also takes latin-1's superscripts, which int() refuses.
        if not _DIGITS.fullmatch(length) or int(length) > BODY_LIMIT:
            too_long = f"a Content-Length of {length[:20]}"
            return self.refuse(413, f"a webhook's body is at most {BODY_LIMIT} bytes", too_long)
        self.gate.take_turn(self)
        self._credential = credential
        self.request.connection.set_max_body_size(BODY_LIMIT)
        self.request.connection.set_body_timeout(BODY_TIMEOUT)
        self.unread_body = False

    def data_received(self, chunk: bytes) -> None:
        # The connection refuses more than BODY_LIMIT; the chunks are kept to be verified.
        self._chunks.append(chunk)

    def _release(self) -> None:
        self.gate.give_turn_back(self)

    def drop(self) -> None:
        """Stop reading this body (another needs its turn): the connection ends unanswered."""
        self._chunks = []
        self.gate.warn(
            "Webhook body from %s dropped: %d read at once", self.request.remote_ip, BODIES_AT_ONCE
        )
        self.request.connection.close()

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        self._release()
        super().on_connection_close()

    def post(self) -> None:
        body = b"".join(self._chunks)
        self._chunks = []
        self._release()
        name, prefix, value = self._credential
        if prefix is not None:
            digest = expected_digest(prefix, value)
            if digest is None or not signature_matches(self.gate.secret, body, digest):
                return self.refuse(403, "wrong signature", f"wrong {name}")
        self.set_header("Cache-Control", "no-store")
        event = event_of(self.request.headers)
        if event == "ping":
            self.finish({"update": False, "reason": "pong"})
            return
        self.set_status(202)
        if event != "push":
            self.finish({"update": False, "reason": f"ignored: not a push ({event[:40]})"})
            return
        ref = pushed_ref(body, self.request.headers.get("Content-Type", ""))
        if not ref_is_followed(ref, self.gate.branch):
            self.finish({"update": False, "reason": "ignored: a push to another branch"})
            return
        target = self.services.deployment
        if target is not None:
            target.request_update(f"webhook: a push to {ref[:200] if ref else 'the branch'}")
        self.finish({"update": True, "reason": "update requested"})


def webhook_routes(services: Services, escaped_prefix: str) -> list[tuple]:
    """The webhook's route, or none: without a secret, or without a deployment to update."""
    settings = services.settings
    if not settings.webhook_secret:
        return []
    if services.deployment is None:
        log.warning("A webhook secret is set, but without --follow there is no webhook")
        return []
    path = settings.webhook_secret_file
    if path and readable_by_everyone(path):
        log.warning("The webhook secret file %s is readable by every user: chmod o-r it", path)
    log.info("Webhook for git pushes at %s%s", settings.prefix, PATH)
    gate = WebhookGate(settings.webhook_secret.encode("utf-8"), settings.repobranch)
    return [(escaped_prefix + re.escape(PATH), WebhookHandler, {"gate": gate})]
