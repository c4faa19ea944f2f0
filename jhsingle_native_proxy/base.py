"""What every handler shares: running services, our headers, error pages without tracebacks."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

import aiohttp
import jupyterhub
from tornado import httputil, web

from . import pages
from .activity import ActivityTracker
from .auth import process_secret
from .framing import policy as framing_policy
from .http_hygiene import scrub_uri
from .settings import Settings
from .supervisor import AppSupervisor
from .usage_history import UsageHistory

if TYPE_CHECKING:
    from jupyterhub.services.auth import HubOAuth

    from .auth import AccessPolicy
    from .deployment import Deployment
    from .metrics import Metrics
    from .viewer_identity import ViewerIdentity

log = logging.getLogger("jhsingle_native_proxy")

# Paths under the prefix that belong to the proxy, not the app. Unusual on purpose.
RESERVED = "_jhsnp/"
# RFC 9110's reason-phrase: tab, space, visible ASCII and obs-text.
_REASON_PHRASE = re.compile(r"[\t\x20-\x7e\x80-\xff]+")


def status_title(status: int) -> str:
    """The standard phrase of an HTTP status ("Not Found"), or "Error" for a code without one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def reason_phrase(status: int, reason: str | None) -> str:
    """The reason phrase tornado puts in the status line for `set_status(status, reason)`.

    tornado keeps it to itself, so it is worked out here the same way: the given phrase if it is
    a valid one without `<`, "Unknown" if not, and without one the status's standard phrase.
    """
    if reason is None:
        return httputil.responses.get(status, "Unknown")
    if "<" in reason or not _REASON_PHRASE.fullmatch(reason):
        return "Unknown"
    return reason


def _current_metrics() -> Metrics:
    from .metrics import current

    return current()


@dataclass
class Services:
    """The long-lived parts a request may need, built once by the server."""

    settings: Settings
    supervisor: AppSupervisor
    app_session: aiohttp.ClientSession
    activity: ActivityTracker
    # None with --authtype none.
    hub_auth: HubOAuth | None = None
    policy: AccessPolicy | None = None
    # When the proxy started (monotonic clock): JupyterHub's readiness probe is held from then on.
    started_at: float = 0.0
    # Turns for requests to the app (see proxy.http._in_turn); made by the server.
    app_turns: asyncio.Semaphore | None = None
    # Signs our cookies and the console's form tokens; made for this process alone (see
    # auth.process_secret for why it is never derived from anything the app has).
    secret: bytes = field(default_factory=process_secret, repr=False)
    # Publish mode (--follow): the revisions; `supervisor` is then the live revision's, which
    # a switch replaces. None otherwise.
    deployment: Deployment | None = None
    # The app's memory, CPU and proxied requests over the last hour (the console's chart).
    usage: UsageHistory = field(default_factory=UsageHistory)
    # The process's Prometheus metrics (metrics.py), which handlers feed.
    metrics: Metrics = field(default_factory=_current_metrics)
    # --forward-user-headers/--forward-user-jwt (viewer_identity.py); None when both are off.
    identity: ViewerIdentity | None = None


class BaseHandler(web.RequestHandler):
    """Our pages and the proxied app both carry X-JupyterHub-Version; errors are our own pages."""

    @property
    def services(self) -> Services:
        return self.application.settings["services"]

    def set_default_headers(self) -> None:
        # JupyterHub checks this header to recognise a single-user server.
        self.set_header("X-JupyterHub-Version", jupyterhub.__version__)

    def compute_etag(self) -> None:
        # Never let tornado invent ETags (or turn a proxied 200 into a 304).
        return None

    def check_xsrf_cookie(self) -> None:
        # Tornado's own XSRF check knows nothing of the app's forms; see the auth module.
        return None

    @property
    def logged_uri(self) -> str:
        """The request URI as log lines show it: hub tokens and login codes scrubbed."""
        return scrub_uri(self.request.uri or "")

    def wants_html(self) -> bool:
        return "text/html" in self.request.headers.get("Accept", "")

    # Who may frame our pages (CSP sources); None: whom --frame-ancestors names, as for the app.
    frame_ancestors: str | None = None

    # Body bytes relayed to the app and of its answer relayed back (the proxy's handlers count
    # them; the access-log hook hands them to the metrics).
    bytes_in = 0
    bytes_out = 0

    # Whether the status line and headers went out: from then on they cannot change. tornado
    # writes them in the first `flush` (which `finish` calls) and keeps the fact to itself.
    headers_sent = False

    def flush(self, include_footers: bool = False):
        self.headers_sent = True
        return super().flush(include_footers)

    # True while tornado has not finished reading the request: in a streamed handler's `prepare`,
    # even for a request without a body. Tornado closes the connection after an answer given
    # then, so the answer must say so (see `finish`).
    unread_body = False

    def data_received(self, chunk: bytes) -> None:
        """Streamed handlers of our own take no body: what a client sends is dropped."""

    def finish(self, chunk=None):
        if self.unread_body and not self.headers_sent:
            # The connection cannot be reused once we answer before the request was read: say
            # so, or a keep-alive client (the hub's proxy) sends its next request into a socket
            # that is closing, and its user gets that proxy's 503.
            self.set_header("Connection", "close")
        return super().finish(chunk)

    def _answer(
        self,
        status: int,
        content_type: str,
        body: str,
        retry_after: float | None,
        headers: dict[str, str] | None,
    ) -> None:
        self.clear()
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        sources = self.frame_ancestors or self.services.settings.frame_ancestors
        self.set_header("Content-Security-Policy", framing_policy(sources))
        if retry_after is not None:
            self.set_header("Retry-After", str(max(1, round(retry_after))))
        self.finish(body)

    def send_page(
        self,
        status: int,
        body: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """One of our HTML pages."""
        self._answer(status, "text/html; charset=utf-8", body, retry_after, headers)

    def send_error_page(
        self,
        status: int,
        message: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """An error as HTML for browsers and as one line of text for other clients."""
        title = status_title(status)
        if self.wants_html():
            page = pages.error_page(status, title, message)
            self.send_page(status, page, retry_after=retry_after, headers=headers)
        else:
            text = f"{status} {title}: {message}\n"
            self._answer(status, "text/plain; charset=utf-8", text, retry_after, headers)

    def log_exception(self, typ, value, tb) -> None:
        """Tornado's own lines for errors, with the URI's credentials scrubbed."""
        summary = f"{self.request.method} {self.logged_uri} ({self.request.remote_ip})"
        if isinstance(value, web.HTTPError):
            if value.log_message:
                log.warning("%d %s: %s", value.status_code, summary, value.log_message)
            return
        log.error("Uncaught exception %s", summary, exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs) -> None:
        # Never a traceback to a client, whatever the log level: the log has it.
        if self.headers_sent:
            return
        # The reason `send_error` gave the status line: an HTTPError's own, else its argument.
        error = kwargs.get("exc_info", (None, None, None))[1]
        reason = kwargs.get("reason")
        if isinstance(error, web.HTTPError) and error.reason:
            reason = error.reason
        phrase = reason_phrase(status_code, reason)
        message = {404: "There is nothing here."}.get(status_code, phrase)
        if status_code >= 500 and "exc_info" in kwargs:
            message = "The proxy could not handle this request; the server log says why."
        self.send_error_page(status_code, message)
