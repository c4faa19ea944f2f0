"""What the HTTP and websocket handlers share before anything reaches the app: the app made
ready (or the client told why not), and the request as the app gets it (target and headers).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from tornado import web

from .. import http_hygiene as h
from .. import pages
from ..auth import is_hub_cookie, user_info
from ..base import RESERVED
from ..serverproxy import map_path
from ..supervisor import WAKING_UP, AppState

log = logging.getLogger("jhsingle_native_proxy")

CLIENT_GONE = 499  # nginx's "client closed request": the access line says so, at debug level


class AppRequestMixin:
    """What the HTTP and websocket handlers share: waiting for the app, and the request it gets."""

    _app_port: int | None = None

    @property
    def reached_app(self) -> bool:
        """Whether this request was passed on to the app (authorised, and the app was ready):
        what the console counts as a request to it, a refused or unanswered one is not."""
        return self._app_port is not None

    def is_hub_probe(self) -> bool:
        """JupyterHub's readiness poll: a plain GET, without a token, of `{prefix}api` (JupyterHub
        5 and 6) or of the prefix itself (4.1), not asking for a page.

        Cookies do not tell: JupyterHub 6's client keeps the ones it is sent (for a server on a
        host name, not an IP address), so after a first spawn it brings back the login state
        cookie of our answer. Nothing is decided here about who asks: a probe only waits
        (bounded by --hub-probe-timeout) before it is authorised like any other request. A
        server no hub spawned (no JUPYTERHUB_API_URL) is polled by none: there these paths
        are the app's.
        """
        request = self.request
        settings = self.services.settings
        prefix = settings.prefix
        return (
            bool(settings.hub.api_url)  # spawned by a hub; without one, the paths are the app's
            and request.method == "GET"
            and (request.path or "") in (prefix, prefix + "api")
            and not self.wants_html()
            and "Authorization" not in request.headers
        )

    async def answer_hub_probe(self) -> bool:
        """Hold JupyterHub's spawn-progress page until the app can answer; True if answered.

        The hub polls the server after spawning and sends the user on at the first answer below
        500. While the app starts the poll is held until the app is ready (it then goes the
        usual way: a login redirect or a 401, which the hub takes as "up"), or answered 503
        ("not yet", the hub polls again) after --ready-timeout. Only for --hub-probe-timeout
        seconds after the proxy started: past that, the hub's own http_timeout (30 s by default)
        would fail the spawn, so the poll goes the usual way and the user is sent on, to our
        loading page, which keeps showing the start. So a probe holds a connection for a
        bounded time only, and is authorised before anything reaches the app.
        """
        services = self.services
        supervisor = services.supervisor
        if supervisor.state in (
            AppState.READY,
            AppState.FAILED,
            AppState.WAITING,
            AppState.SLEEPING,
        ):
            # WAITING: the app starts at the first real visit ({origin_host}), so there is
            # nothing to wait for; the request goes on and is authorised like any other.
            # SLEEPING: a probe is not a visit, so it does not wake the app (--idle-stop).
            return False
        remaining = services.settings.hub_probe_timeout - (time.monotonic() - services.started_at)
        if remaining > 0:
            wait = min(remaining, services.settings.ready_timeout)
            log.info("JupyterHub's readiness probe waits for the app (at most %.1f s)", wait)
            if await supervisor.wait_ready(wait):
                return False
            self.send_error_page(503, "the app is starting", retry_after=1)
            return True
        if services.hub_auth is None:
            self.set_status(200)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("the app is starting\n")
            return True
        return False

    async def wait_for_app(self, browser: bool | None = None) -> bool:
        """Make sure the app runs before anything is sent to it; answer the client otherwise.

        A browser asking for a page while the app starts gets the loading page at once; any other
        client waits up to --ready-timeout. A failed app shows why, and the next request retries.
        """
        services = self.services
        supervisor = services.supervisor
        settings = services.settings
        if supervisor.state is AppState.SLEEPING and not self.counts_as_activity():
            # A health check (--activity-exclude) is not a visit: it leaves the app asleep.
            self.send_error_page(503, "the app is asleep until the next visit", retry_after=5)
            return False
        # Only the owner or an admin may give `{origin_host}`: a shared viewer's Host is theirs.
        supervisor.request_arrived(self.request.host if self.viewer_sees_output else None)
        if supervisor.state is AppState.READY:
            self._app_port = supervisor.port
            return True
        if browser is None:
            browser = self.request.method == "GET" and self.wants_html()
        if supervisor.state not in (AppState.FAILED, AppState.WAITING):
            # A short wait spares a browser the loading page when the app is nearly there.
            wait = min(1.0, settings.ready_timeout) if browser else settings.ready_timeout
            if await supervisor.wait_ready(wait):
                self._app_port = supervisor.port
                return True
        status = supervisor.status()
        if status.state is AppState.FAILED and status.failure is not None:
            failure, retry_in = status.failure, status.retry_in
            if browser:
                output = failure.output if self.viewer_sees_output else None
                self.send_page(
                    503,
                    pages.app_failed_page(self.failure_reason(failure), output, retry_in),
                    retry_after=retry_in or 1,
                )
            else:
                reason = self.failure_reason(failure)
                self.send_error_page(503, f"the app {reason}", retry_after=retry_in or 1)
            return False
        if browser:
            status_url = f"{settings.base_url}/{RESERVED}status"
            previous = self.failure_reason(status.failure) if status.failure else ""
            lines = status.lines if self.viewer_sees_output else []
            waking = status.phase == WAKING_UP
            page = pages.loading_page(status_url, status.phase, lines, previous, waking=waking)
            self.send_page(503, page, retry_after=1)
        elif status.state is AppState.WAITING:
            self.send_error_page(503, "the app starts at its owner's first visit", retry_after=5)
        else:
            self.send_error_page(
                503,
                f"the app is not ready yet (waited {settings.ready_timeout:g} s)",
                retry_after=1,
            )
        return False

    def target_url(self) -> str:
        """The app's URL for this request: the raw path after the prefix, query byte for byte.

        The identity query argument is removed in every spelling (and added back by us with
        --query-user-info); so is `token`, behind JupyterHub.
        """
        settings = self.services.settings
        # The app's own settings (a repository may set absolute_url and mappath: repository_app).
        app = self.services.supervisor.settings
        uri = self.request.uri or "/"
        path, mark, query = uri.partition("?")
        # `/x?` and `/x` may differ to the app (a cache key, a signed URL): an empty query stays.
        empty_query_sent = bool(mark) and not query
        if app.absolute_url:
            rest = path
        else:
            rest = path[len(settings.base_url) :] if path.startswith(settings.base_url) else path
            if not rest.startswith("/"):
                rest = "/" + rest
        if rest in app.mappath:
            rest = app.mappath[rest]
        elif app.server_mappath:
            rest = map_path(app.server_mappath, rest)
        if not rest.startswith("/"):
            # A mapped path written after the app's origin: `@host/` or `.host/` would name
            # another server (a --mappath value, or a config's callable). It stays a path.
            rest = "/" + rest
        query = h.strip_query_arg(query)
        if self.services.hub_auth is not None:
            # A hub token in the URL is the viewer's credential, whether or not the hub took it
            # (JupyterHub 5 ignores `?token=` by default): never the app's.
            query = h.strip_query_arg(query, "token")
        viewer = self.viewer
        if settings.query_user_info and viewer is not None:
            extra = h.USER_QUERY_ARG + "=" + quote(user_info(viewer), safe="")
            query = f"{query}&{extra}" if query else extra
        origin = self.services.supervisor.origin
        mark = "?" if query or empty_query_sent else ""
        return f"{origin}{rest}{mark}{query}"

    def app_request_headers(self, drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """The client's headers as the app gets them, with our own additions."""
        request = self.request
        settings = self.services.settings
        try:
            pairs = [
                (n, h.value_for_app(v))
                for n, v in request.headers.get_all()
                if h.canonical_name(n) not in drop
            ]
        except UnicodeDecodeError:
            raise web.HTTPError(400, "a header value is neither ASCII nor UTF-8") from None
        headers = h.request_headers_for_app(
            pairs,
            request.headers.get_list("Connection"),
            client_ip=request.remote_ip or "",
            protocol=request.protocol,
            host=request.host,
            prefix=settings.base_url or "/",
        )
        # The viewer's hub credentials are for us, never for the app; with --authtype none the
        # hub's own cookies (path /) still arrive, and they are no more the app's business.
        client_id = settings.hub.client_id
        headers = h.without_credentials(
            headers,
            lambda name: is_hub_cookie(name, client_id),
            drop_authorization=self.token_authenticated,
        )
        if settings.forward_user_info and self.viewer is not None:
            headers.append((h.USER_HEADER, user_info(self.viewer)))
        overrides = self.services.supervisor.request_headers
        if overrides:
            replaced = {h.canonical_name(n) for n, _ in overrides}
            headers = [(n, v) for n, v in headers if h.canonical_name(n) not in replaced]
            headers.extend(overrides)
        identity = self.services.identity
        if identity is not None and self.viewer is not None:
            headers = identity.with_viewer(headers, self.viewer, replace=bool(overrides))
        return self._checked(headers)

    def _checked(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Refuse (400) a header that cannot be written as it is, before the app is contacted;
        behind the hub, take the viewer's token out of a Referer from our own origin."""
        strip_referer = self.services.hub_auth is not None
        for i, (name, value) in enumerate(headers):
            problem = h.header_problem(name, value)
            if problem:
                raise web.HTTPError(400, problem)
            if strip_referer and name.lower() == "referer":
                headers[i] = (name, h.referer_without_tokens(value, self.request.host or ""))
        return headers

    def note_client_gone(self) -> None:
        """A client that leaves before its answer is complete is normal, not an error."""
        self.set_status(CLIENT_GONE, "Client Closed Request")

    def counts_as_activity(self) -> bool:
        """--activity-exclude paths (health checks, say) leave the server looking idle."""
        settings = self.services.settings
        if not settings.activity_exclude:
            return True
        path = (self.request.path or "")[len(settings.base_url) :]
        return not any(
            path == p or path.startswith(p.rstrip("/") + "/") for p in settings.activity_exclude
        )
