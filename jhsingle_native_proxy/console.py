"""The owner's console at `{prefix}_jhsnp/`: the app's state and latest output, and buttons to
restart it (and, with --repo, to pull and restart).

Who reaches it: whoever `AuthorizedFirst` (`authorize`, before any body is read) lets in
*and* may see the app's output (`viewer_sees_output`: the owner and hub admins; with --authtype
none, whoever reaches the proxy, as they reach the app itself). Others get 403, anonymous
viewers the usual login redirect or 401. The buttons are POSTs, so `authorize` applies the
forgery checks of every unsafe request, and must carry the console's form token besides.

The form token. On a hub without subdomains, the owner's named servers (`/user/NAME/other/`)
share an origin and a path prefix with the default server (`/user/NAME/`): a page there passes
the Referer check of `/user/NAME/_jhsnp/restart`. So each POST must also carry a token that only
a console page this proxy served holds: an HMAC of the prefix and the viewer's name with the
process's secret (base.Services.secret), in a hidden form field. Nothing is stored per viewer,
and a restart of the proxy makes old pages' tokens void (reload the console). A request
authenticated by a hub token (an `Authorization` header: no browser attaches one on its own)
needs none. What stays out of reach: a script on the same origin can read the console page as
the viewer's browser can (SECURITY.md, "One origin for all users").

No body is ever kept, but for the first FORM_LIMIT bytes of an allowed viewer's POST (the form).

Nothing secret is shown: the repository's URL is redacted, the hub's tokens are never rendered;
the app's output is, as the failure page shows it to the same people.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from urllib.parse import parse_qs

from tornado import web

from . import pages
from .auth import AuthorizedFirst
from .base import RESERVED, BaseHandler
from .repository_app import describe
from .supervisor import AppState, AppStatus

log = logging.getLogger("jhsingle_native_proxy")

# The console's paths, under `{prefix}_jhsnp/`.
PAGE, STATUS, RESTART, PULL, WAKE = "", "console.json", "restart", "pull", "wake"
USAGE, RUNS = "usage.json", "runs/"  # the chart's samples; `runs/N.txt`, run N's output
# The field of the buttons' forms that holds the form token, and how much of a POST is kept.
TOKEN_FIELD = "_xsrf"
FORM_LIMIT = 1024


def form_token(secret: bytes, prefix: str, viewer: str) -> str:
    """The token the console's forms carry for `viewer` (their hub name; "" without a hub)."""
    message = f"jhsnp console form\0{prefix}\0{viewer}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


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


def console_view(status: AppStatus, now: float | None = None, app: str = "") -> dict[str, object]:
    """What the console shows of one status snapshot (plain values; the page escapes them);
    `app`: which app runs and which source decided (repository_app.describe)."""
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
        "app": app,
        # What --env-file set at the latest start: the names, never the values.
        "env_file_names": list(status.env_file_names),
    }
    if status.state is AppState.FAILED and status.failure is not None:
        view["reason"] = status.failure.sentence + "."
    elif status.state is AppState.SLEEPING and status.sleeping_since is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.sleeping_since))
        view["reason"] = f"Sleeping since {since} (--idle-stop); the next visit wakes it."
    elif status.state is not AppState.READY and status.phase:
        view["reason"] = status.phase + "…"
    return view


@web.stream_request_body  # a body sent here is read and dropped (but for a form's first KiB)
class ConsoleBase(AuthorizedFirst, BaseHandler):
    frame_ancestors = "'none'"  # its buttons act: never in another page's frame

    def console_url(self, name: str = PAGE) -> str:
        return self.services.settings.prefix + RESERVED + name

    def form_token(self) -> str:
        viewer = str((self.viewer or {}).get("name") or "")
        return form_token(self.services.secret, self.services.settings.prefix, viewer)

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
        s, deployment = self.services.settings, self.services.deployment
        supervisor = self.services.supervisor
        from .repo_url import redact

        page = pages.console_page(
            console_view(supervisor.status(), app=describe(supervisor.settings)),
            status_url=self.console_url(STATUS),
            restart_url=self.console_url(RESTART),
            # Publish mode pulls nothing: each revision is a clean checkout (revisions below).
            pull_url=self.console_url(PULL) if s.repo and not s.publish.follow else "",
            app_url=s.prefix,
            repo=redact(s.repo) if s.repo else "",
            branch=s.repobranch,
            form_token=self.form_token(),
            deployment=deployment.view(with_output=True) if deployment else None,
            insight=insight_view(self.services),
        )
        self.send_page(200, page)


class ConsoleStatusHandler(ConsoleBase):
    """`{prefix}_jhsnp/console.json`: what the page polls."""

    async def get(self) -> None:
        supervisor = self.services.supervisor
        view = console_view(supervisor.status(), app=describe(supervisor.settings))
        self.finish({**view, **insight_view(self.services)})


def insight_view(services) -> dict[str, object]:
    """The app's memory and CPU now, how its last run ended, its last runs (usage_history.py,
    run_history.py): part of console.json and of usage.json."""
    supervisor = services.supervisor
    return {
        "usage": services.usage.live(supervisor.status().pid),
        "last_end": supervisor.runs.last_end(),
        "runs": supervisor.runs.view(),
    }


class UsageHandler(ConsoleBase):
    """`{prefix}_jhsnp/usage.json`: the last hour's samples for the chart, and `insight_view`."""

    async def get(self) -> None:
        self.finish({**insight_view(self.services), **self.services.usage.view()})


class RunOutputHandler(ConsoleBase):
    """`{prefix}_jhsnp/runs/N.txt`: run N's output, as a file to download (it may hold
    secrets: the console's viewers only, as its live output)."""

    async def get(self, number: str) -> None:
        run = self.services.supervisor.runs.find(int(number[:9]))
        if run is None:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="app-run-{run.number}.txt"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(run.text().encode("utf-8", "replace"))


class RestartHandler(ConsoleBase):
    """`{prefix}_jhsnp/restart` (POST): end the app and start it again at once."""

    pull = False
    wake = False
    _form = b""

    def data_received(self, chunk: bytes) -> None:
        """The form's first FORM_LIMIT bytes are kept (it holds one token); the rest is dropped."""
        if len(self._form) < FORM_LIMIT:
            self._form += chunk[: FORM_LIMIT - len(self._form)]

    def carries_form_token(self) -> bool:
        if self.token_authenticated:
            return True  # a hub token in a header: no other site's page can send one
        given = parse_qs(self._form.decode("latin-1")).get(TOKEN_FIELD, [""])[0]
        return hmac.compare_digest(given.encode("utf-8"), self.form_token().encode("ascii"))

    def refused_as_forged(self) -> bool:
        """Without the console's form token: refused (the client answered), True."""
        if self.carries_form_token():
            return False
        self.refuse_forgery(
            "it did not come from the console's page (reload the console)",
            str((self.viewer or {}).get("name") or ""),
        )
        return True

    async def post(self) -> None:
        if self.pull and not self.services.settings.repo:
            raise web.HTTPError(404)  # after authorisation: whether --repo is set is no one's else
        if self.refused_as_forged():
            return
        who = (self.viewer or {}).get("name") or self.request.remote_ip
        what = "Wake" if self.wake else "Pull and restart" if self.pull else "Restart"
        log.info("%s asked by %s", what, who)
        supervisor = self.services.supervisor
        if self.wake:  # as a visit does (the owner's or an admin's: their Host may be used)
            supervisor.request_arrived(self.request.host)
        else:
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


class WakeHandler(RestartHandler):
    """`{prefix}_jhsnp/wake` (POST): start a sleeping app (--idle-stop) without visiting it."""

    wake = True


ROUTES = ((PAGE, ConsoleHandler), (STATUS, ConsoleStatusHandler), (RESTART, RestartHandler),
          (PULL, PullHandler), (WAKE, WakeHandler), (USAGE, UsageHandler),
          (re.compile(re.escape(RUNS) + r"([0-9]+)\.txt"), RunOutputHandler))  # fmt: skip
