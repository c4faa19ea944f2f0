"""The tornado Application: which handler serves which path.

Only paths under JUPYTERHUB_SERVICE_PREFIX are served; anything else is 404 and never reaches the
app. Routing works on the raw (still percent-encoded) path, the same bytes the app will see.
"""

from __future__ import annotations

import json
import logging
import re

from tornado import web
from tornado.routing import Rule

from .activity import isoformat
from .auth import AuthorizedFirst
from .base import RESERVED, BaseHandler, Services
from .console import ROUTES as CONSOLE_ROUTES
from .http_hygiene import loggable_request
from .metrics_handler import METRICS_PATH, metrics_handler
from .pages import REWRITE_SCRIPT
from .proxy.app_request import CLIENT_GONE
from .proxy.http import PROXIED_METHODS, ProxyHandler
from .proxy.websocket import WebSocketProxyHandler, WebSocketUpgrade
from .supervisor import AppState
from .webhook import webhook_routes

access_log = logging.getLogger("jhsingle_native_proxy.access")


@web.stream_request_body
class EarlyAnswerHandler(BaseHandler):
    """A handler that answers from `prepare`, before tornado reads a byte of the body."""

    SUPPORTED_METHODS = PROXIED_METHODS  # type: ignore[assignment]
    unread_body = True


class AddSlashHandler(EarlyAnswerHandler):
    """`{prefix}` without its slash: redirect to `{prefix}/`, keeping the query."""

    def prepare(self) -> None:
        path, sep, query = (self.request.uri or "").partition("?")
        # 307 keeps the method and body of a POST; GET and HEAD get the usual 302.
        status = 302 if self.request.method in ("GET", "HEAD") else 307
        self.redirect(path + "/" + sep + query, status=status)


class CanonicalPrefixHandler(EarlyAnswerHandler):
    """A prefix that arrives with `@` percent-encoded (`%40`) goes to the canonical spelling."""

    def prepare(self) -> None:
        prefix = self.services.settings.prefix
        uri = self.request.uri or "/"
        path, sep, query = uri.partition("?")
        canonical = re.sub("%40", "@", path, flags=re.IGNORECASE)
        if canonical.startswith(prefix) or canonical + "/" == prefix:
            status = 302 if self.request.method in ("GET", "HEAD") else 307
            self.redirect(canonical + sep + query, status=status)
            return
        raise web.HTTPError(404)


class NotFoundHandler(EarlyAnswerHandler):
    def prepare(self) -> None:
        raise web.HTTPError(404)


@web.stream_request_body  # a body sent here is read and dropped, never kept
class StatusHandler(AuthorizedFirst, BaseHandler):
    """`{prefix}/_jhsnp/status`: the app's state as JSON, polled by the loading page."""

    async def get(self) -> None:
        # Only reports: polling must not restart a failed app (real requests do that).
        status = self.services.supervisor.status()
        body: dict[str, object] = {
            "state": status.state.value,
            "phase": status.phase,
            # The app's output may hold tracebacks and tokens: the owner's (and admins') only.
            "lines": status.lines if self.viewer_sees_output else [],
            "last_activity": isoformat(self.services.activity.last),
        }
        if status.state is AppState.FAILED and status.failure is not None:
            body["reason"] = self.failure_reason(status.failure)
            if status.retry_in is not None:
                body["retry_in"] = round(status.retry_in, 1)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


@web.stream_request_body  # a body sent here is read and dropped, never kept
class RewriteScriptHandler(AuthorizedFirst, BaseHandler):
    """`{prefix}_jhsnp/rewrite.js`: the script --rewrite-urls puts first in the app's pages.

    It holds nothing about the server or the viewer, but like every endpoint of ours it answers
    only a viewer who may see the app. Its URL carries its version (`?v=`), so with that version
    it is cached for a year; without it (or with an old one) it must be checked each time.
    """

    def get(self) -> None:
        # Imported here: without --rewrite-urls the rewriters are never loaded (1.5 MiB).
        from .proxy.rewrite_response import script_source, script_version

        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        if self.get_query_argument("v", "") == script_version():
            self.set_header("Cache-Control", "private, max-age=31536000, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(script_source())


@web.stream_request_body  # a body sent here is read and dropped, never kept
class JwksHandler(AuthorizedFirst, BaseHandler):
    """`{prefix}_jhsnp/jwks.json` (with --forward-user-jwt): the public key that verifies the
    tokens the app gets (viewer_identity.py). No secret, but like every endpoint of ours it
    answers only a viewer who may see the app. A new key at each start of the proxy, so it is
    checked each time."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/jwk-set+json")
        self.set_header("Cache-Control", "no-cache")
        self.finish(json.dumps(self.services.identity.jwks()))


def log_request(handler: web.RequestHandler) -> None:
    """Once per request (tornado calls it): the request's metrics, and one access line (method,
    path with credentials scrubbed, status, milliseconds) at a level by its status."""
    status = handler.get_status()
    request_time = handler.request.request_time()
    services = handler.settings["services"]
    services.metrics.request_done(
        handler.request.method,
        status,
        request_time,
        getattr(handler, "bytes_in", 0),
        getattr(handler, "bytes_out", 0),
    )
    if isinstance(handler, (ProxyHandler, WebSocketProxyHandler)) and handler.reached_app:
        services.usage.requests += 1  # the console's requests per minute
    if status == CLIENT_GONE:
        level = logging.DEBUG
    elif status < 400:  # as jupyter_server: successes at DEBUG unless --log-requests
        level = logging.INFO if services.settings.monitoring.log_requests else logging.DEBUG
    else:
        level = logging.INFO if status < 500 else logging.WARNING
    if not access_log.isEnabledFor(level):
        return
    method, uri = loggable_request(handler.request.method or "", handler.request.uri or "")
    access_log.log(level, "%d %s %s %.1fms", status, method, uri, 1000.0 * request_time)


def console_path(path: str | re.Pattern) -> str:
    """A console route's path as a pattern: literal, unless the console gives a pattern."""
    return path.pattern if isinstance(path, re.Pattern) else re.escape(path)


def make_app(services: Services) -> web.Application:
    prefix = services.settings.prefix
    escaped = re.escape(prefix)
    routes: list[tuple] = []
    if prefix != "/":
        routes.append((re.escape(prefix.rstrip("/")), AddSlashHandler))
    status, websockets, proxied = StatusHandler, WebSocketProxyHandler, ProxyHandler
    script, jwks = RewriteScriptHandler, JwksHandler
    console = dict(CONSOLE_ROUTES)
    if services.deployment is not None:
        from .revisions_console import ROUTES as REVISION_ROUTES

        console.update(REVISION_ROUTES)
    if services.hub_auth is not None:
        # Only now: JupyterHub's client is heavy, and --authtype none has no use for it.
        from .hub_login import OAuthCallbackHandler, with_hub_login

        status, websockets, proxied, script, jwks = map(
            with_hub_login, (status, websockets, proxied, script, jwks)
        )
        console = {path: with_hub_login(handler) for path, handler in console.items()}
        routes.append((escaped + "oauth_callback", OAuthCallbackHandler))
    routes += [(escaped + re.escape(RESERVED) + console_path(p), h) for p, h in console.items()]
    routes += webhook_routes(services, escaped)  # no hub login: its own gate
    routes.append((escaped + re.escape(RESERVED + METRICS_PATH), metrics_handler(services)))
    if services.identity is not None and services.identity.jwk:  # else the path is the app's
        routes.append((escaped + re.escape(RESERVED) + "jwks\\.json", jwks))
    routes += [
        (escaped + re.escape(RESERVED) + "status", status),
        (escaped + re.escape(RESERVED + REWRITE_SCRIPT), script),
        Rule(WebSocketUpgrade(escaped + ".*"), websockets),
        (escaped + ".*", proxied),
    ]
    if "@" in prefix:
        routes.append((".*", CanonicalPrefixHandler))
    routes.append((".*", NotFoundHandler))
    return web.Application(
        routes,
        services=services,
        log_function=log_request,
        # Never serve tracebacks, --debug or not; the log has them.
        serve_traceback=False,
        xsrf_cookies=False,
        cookie_secret=services.secret,
        websocket_ping_interval=services.settings.websocket_ping_interval or None,
        websocket_ping_timeout=services.settings.websocket_ping_interval or None,
    )
