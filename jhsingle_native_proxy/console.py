"""The owner's console at `{prefix}_jhsnp/`: the app's state and latest output, and buttons to
restart it (and, with --repo, to pull and restart).

Who reaches it: whoever `AuthorizedFirst` (`authorize`, before any body is read) lets in
*and* may see the app's output (`viewer_sees_output`: the owner and hub admins; with --authtype
none, whoever reaches the proxy, as they reach the app itself). Others get 403, anonymous
viewers the usual login redirect or 401. The buttons are POSTs, so `authorize` applies the
forgery checks of every unsafe request. No body is ever kept: a streamed handler drops what a
client sends.

Nothing secret is shown: the repository's URL is redacted, the hub's tokens are never rendered;
the app's output is, as the failure page shows it to the same people.
"""

from __future__ import annotations

import logging
import time

from tornado import web

from . import pages
from .auth import AuthorizedFirst
from .base import RESERVED, BaseHandler
from .supervisor import AppState, AppStatus

log = logging.getLogger("jhsingle_native_proxy")

# The console's paths, under `{prefix}_jhsnp/`.
PAGE, STATUS, RESTART, PULL = "", "console.json", "restart", "pull"


def describe_duration(seconds: float) -> str:
    """`3 h 2 min`, `5 min 7 s`, `12 s`: an uptime at a glance."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def console_view(status: AppStatus, now: float | None = None) -> dict[str, object]:
    """What the console shows of one status snapshot (plain values; the page escapes them)."""
    now = time.time() if now is None else now
    up = None if status.ready_since is None else max(0.0, now - status.ready_since)
    view: dict[str, object] = {
        "state": status.state.value,
        "phase": status.phase,
        "uptime": "—" if up is None else describe_duration(up),
        "uptime_seconds": None if up is None else round(up, 1),
        "restarts": status.restarts,
        "pid": status.pid if status.pid is not None else "—",
        "lines": status.lines,
    }
    if status.state is AppState.FAILED and status.failure is not None:
        view["reason"] = status.failure.sentence + "."
    elif status.state is not AppState.READY and status.phase:
        view["reason"] = status.phase + "…"
    return view


@web.stream_request_body  # a body sent here is read and dropped, never kept
class ConsoleBase(AuthorizedFirst, BaseHandler):
    def console_url(self, name: str = PAGE) -> str:
        return self.services.settings.prefix + RESERVED + name

    async def allowed_in(self) -> bool:
        """`authorize`, then the owner-and-admins rule; answers the client if not allowed."""
        if not await self.authorize():
            return False
        if self.viewer_sees_output:
            return True
        who = (self.viewer or {}).get("name")
        log.warning("Refused %s %s to %s: not the owner", self.request.method, self.logged_uri, who)
        self.send_error_page(403, "The console is for the owner of this server and hub admins.")
        return False

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")
        # Buttons that act: never inside another page's frame (clickjacking).
        self.set_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.set_header("X-Frame-Options", "DENY")


class ConsoleHandler(ConsoleBase):
    """`{prefix}_jhsnp/`: the page."""

    async def get(self) -> None:
        s = self.services.settings
        from .repo_url import redact

        page = pages.console_page(
            console_view(self.services.supervisor.status()),
            status_url=self.console_url(STATUS),
            restart_url=self.console_url(RESTART),
            pull_url=self.console_url(PULL) if s.repo else "",
            app_url=s.prefix,
            repo=redact(s.repo) if s.repo else "",
            branch=s.repobranch,
        )
        self.send_page(200, page)


class ConsoleStatusHandler(ConsoleBase):
    """`{prefix}_jhsnp/console.json`: what the page polls."""

    async def get(self) -> None:
        self.finish(console_view(self.services.supervisor.status()))


class RestartHandler(ConsoleBase):
    """`{prefix}_jhsnp/restart` (POST): end the app and start it again at once."""

    pull = False

    async def post(self) -> None:
        if self.pull and not self.services.settings.repo:
            raise web.HTTPError(404)  # after authorisation: whether --repo is set is no one's else
        who = (self.viewer or {}).get("name") or self.request.remote_ip
        log.info("%s asked by %s", "Pull and restart" if self.pull else "Restart", who)
        supervisor = self.services.supervisor
        # A command using {origin_host} takes it again, from the owner or admin who asked.
        await supervisor.restart(pull=self.pull, origin_host=self.request.host)
        if "application/json" in self.request.headers.get("Accept", ""):
            self.finish({"state": supervisor.status().state.value})
        else:
            self.redirect(self.console_url(), status=303)


class PullHandler(RestartHandler):
    """`{prefix}_jhsnp/pull` (POST, with --repo): the checkout again (nothing of the user's is
    lost: its usual rules), then a restart."""

    pull = True


ROUTES = ((PAGE, ConsoleHandler), (STATUS, ConsoleStatusHandler), (RESTART, RestartHandler),
          (PULL, PullHandler))  # fmt: skip
