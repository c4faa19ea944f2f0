"""Who may reach the app: JupyterHub OAuth, the access decision, and cross-site request forgery.

Threat model. The app behind us trusts every request we pass on: it has no login of its own, and
it may act with the owner's files and credentials. So nothing reaches it — no HTTP request, no
websocket handshake, not even a start of the app — before the viewer is identified by the hub and
allowed in. Identification uses jupyterhub.services.auth.HubOAuth (the OAuth dance, its state
cookie, PKCE where the installed JupyterHub offers it, the token cookie) and, like
jupyterhub-singleuser, an `Authorization: token|bearer` header. Lookups are asynchronous.

Cross-site request forgery. The owner's browser carries our cookie to every request aimed at this
server, including ones another site's page makes. Apps post with their own JavaScript and know
nothing of JupyterHub's `_xsrf` token, so instead we look at what browsers say about where a
request comes from (see `forgery_reason`). Only cookie-authenticated requests are checked: a
token header is never attached by a browser on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tornado import web

from . import http_hygiene as h
from . import pages
from .settings import HUB_CALL_TIMEOUT, HubSettings

if TYPE_CHECKING:
    from .supervisor import Failure

log = logging.getLogger("jhsingle_native_proxy")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def process_secret() -> bytes:
    """A new random secret for this process: it signs our cookies (the login's token cookie and
    its OAuth state cookie), derives the logins' PKCE verifiers and the console's form tokens.

    Why random and in memory only. Whoever holds it can sign cookies that we trust. It used to be
    derived from JUPYTERHUB_API_TOKEN, which the app (and everything it starts) inherits, so the
    app could sign our cookies. A file would not do better: the app runs as the same user, and
    can read any file we can. Our memory is the one place it has no share of.

    What it costs. A restart of the proxy forgets the secret, and with it every login cookie.
    A viewer still logged in to the hub gets back without typing anything: the next page they
    open goes through the hub's OAuth redirect, which the hub answers at once. An open page's own
    requests (a `fetch()`, a websocket) get 401 until it is reloaded. This is what
    jupyterhub-singleuser does, and the hub gives a server a new API token at each spawn anyway,
    so the old derivation kept logins only across restarts the hub did not make. A restart of the
    *app* (the console's Restart, a crash) does not touch the proxy: logins stay.
    """
    return secrets.token_hex(32).encode("ascii")


@dataclass(frozen=True)
class AccessPolicy:
    """Who is allowed in, decided like JupyterHub decides.

    Allowed: anyone the hub identifies when JUPYTERHUB_ANYONE=1; else whoever holds one of the
    access scopes the hub gave this server (the owner, admins with access, groups granted
    `access:servers!user=…`, JupyterHub 5 shares); else the user named by JUPYTERHUB_USER or a
    member of a group in JUPYTERHUB_GROUP (0.8.3's knobs).
    """

    scopes: frozenset[str] | None
    user: str = ""
    groups: frozenset[str] = frozenset()
    anyone: bool = False

    @classmethod
    def from_hub(cls, hub: HubSettings) -> AccessPolicy:
        return cls(scopes=hub.access_scopes, user=hub.user, groups=hub.groups, anyone=hub.anyone)

    def allows(self, model: Mapping) -> bool:
        if self.anyone:
            return True
        from jupyterhub.services.auth import check_scopes as hub_check_scopes

        if self.scopes and hub_check_scopes(set(self.scopes), set(model.get("scopes") or ())):
            return True
        if model.get("kind", "user") != "user":
            return False
        if self.user and model.get("name") == self.user:
            return True
        return bool(self.groups & set(model.get("groups") or ()))


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


def forgery_reason(
    method: str,
    headers: Mapping[str, str],
    prefix: str,
    *,
    websocket: bool = False,
    shared_origin: bool = True,
) -> str | None:
    """Why a request that the browser sent with credentials looks forged, or None.

    Credentials are our hub cookie, or (with --authtype none) the app's own cookies and the
    mere fact that the browser can reach a loopback port.

    - A read (GET, HEAD, OPTIONS, TRACE) that another site's page made, and that is not a
      top-level navigation (an `<img>`, `<script>` or `fetch()` there: `Sec-Fetch-Site:
      cross-site|same-site` with a `Sec-Fetch-Mode` other than `navigate`), is refused, as
      JupyterHub's own XSRF rules do. Following a link from another site stays allowed.
    - Any other read passes; websocket handshakes do not count as reads.
    - `Sec-Fetch-Site: cross-site|same-site` (every current browser sends it) is refused.
    - An `Origin` other than this server's host, or `null`, is refused.
    - Where all user servers share one origin (`shared_origin`: JupyterHub without subdomains),
      `/user/bob/`'s page is same-origin for `/user/alice/`. A state-changing request must then
      name a page under our prefix in its `Referer`; a same-origin request without one is
      refused, as the sender hid where it came from. Websocket handshakes carry no Referer, so
      on a shared origin they are told apart only by the cookie's path: use subdomains
      (`c.JupyterHub.subdomain_host`) for full isolation.
    - A request with neither Origin nor Sec-Fetch-Site does not come from a browser and passes.
    """
    site = (headers.get("Sec-Fetch-Site") or "").lower()
    if method in SAFE_METHODS and not websocket:
        mode = (headers.get("Sec-Fetch-Mode") or "navigate").lower()
        if site in ("cross-site", "same-site") and mode != "navigate":
            return f"a page on another site asked for it (Sec-Fetch-Site: {site}, mode {mode})"
        return None
    origin = headers.get("Origin")
    host = (headers.get("Host") or "").lower()
    if site in ("cross-site", "same-site"):
        return f"it came from another site (Sec-Fetch-Site: {site})"
    if origin is not None:
        if origin == "null":
            return "it came from a page without an origin"
        if _host_of(origin) != host:
            return f"it came from another origin ({origin})"
    if websocket or (not site and origin is None) or not shared_origin:
        return None
    referer = headers.get("Referer")
    if not referer:
        return "it came without a Referer, so the page that sent it is unknown"
    parts = urlsplit(referer)
    if parts.netloc.lower() != host or not (parts.path + "/").startswith(prefix):
        return "it came from a page outside this server"
    return None


def login_redirect_allowed(method: str, headers: Mapping[str, str], *, websocket: bool) -> bool:
    """Should an anonymous request be sent to the hub's login (True) or get a 401 (False)?

    Like jupyterhub-singleuser: a GET or HEAD is redirected, so `curl -L`, `requests`, `wget` and
    link checkers follow the login as a browser does, unless the client says it is not navigating:
    a websocket, a `Sec-Fetch-Mode` other than `navigate` (a page's fetch or an image), an
    `X-Requested-With` header (a page's XMLHttpRequest), or an `Accept` that asks for JSON and
    not for HTML (an API client). Those get a 401 they can act on instead of a login form.
    """
    if websocket or method not in ("GET", "HEAD"):
        return False
    mode = headers.get("Sec-Fetch-Mode")
    if mode is not None and mode.lower() != "navigate":
        return False
    if headers.get("X-Requested-With"):
        return False
    accept = (headers.get("Accept") or "").lower()
    return not ("json" in accept and "html" not in accept)


def user_info(model: Mapping) -> str:
    """The viewer as the app gets it in X-CDSDASHBOARDS-JH-USER (0.8.3's JSON shape)."""
    return json.dumps(
        {
            "kind": model.get("kind", "user"),
            "name": model.get("name"),
            "admin": bool(model.get("admin", False)),
            "groups": list(model.get("groups") or []),
        }
    )


# Cookie name prefixes that browsers give a meaning to (JupyterHub's cookie_host_prefix_enabled
# uses the first); the name behind them is what counts.
_COOKIE_NAME_PREFIXES = ("__host-", "__secure-")


def is_hub_cookie(name: str, client_id: str = "") -> bool:
    """The hub's cookies and this server's login cookies: credentials the app must never see
    (in the client's Cookie header) or set (in its own Set-Cookie).

    JupyterHub's own are `jupyterhub-*` (`jupyterhub-session-id`, `jupyterhub-hub-login`).
    HubOAuth names this server's after its OAuth client id (`JUPYTERHUB_CLIENT_ID`): the token
    cookie `{client_id}` and the pending logins' `{client_id}-oauth-state[-...]`. A user's
    server has `jupyterhub-user-NAME` for a client id, but a hub service has its own
    (`service-NAME`), so the `jupyterhub-` prefix alone misses them. Names compare without case
    and behind `__Host-`/`__Secure-`: a browser keeps such variants apart, but an app, or
    another reader of the cookie, may not.
    """
    key = name.strip().lower()
    while key.startswith(_COOKIE_NAME_PREFIXES):
        key = key.split("-", 1)[1]
    if key.startswith("jupyterhub-"):
        return True
    client = client_id.strip().lower()
    return bool(client) and (key == client or key.startswith(client + "-oauth-state"))


def app_may_set_cookie(set_cookie: str, client_id: str = "") -> bool:
    """A `Set-Cookie` from the app goes to the browser unless it names a hub cookie.

    A cookie without a name (`=NAME=value`, or no `=` at all) is sent back by browsers as its
    value alone, which reads as `NAME=value`: its value's name is checked too.
    """
    pair = set_cookie.split(";", 1)[0]
    name, eq, value = pair.partition("=")
    names = [name]
    if not eq or not name.strip():
        names.append((value if eq else name).split("=", 1)[0])
    if any(is_hub_cookie(n, client_id) for n in names):
        log.warning("Dropped a JupyterHub cookie that the app tried to set")
        return False
    return True


class AuthMixin:
    """Authentication and authorisation for our handlers, run before anything reaches the app.

    With --authtype oauth the server adds JupyterHub's login machinery to each handler class
    (hub_login.with_hub_login), so that JupyterHub's client is imported only in that mode.
    """

    viewer: dict | None = None
    # The hub's model of the viewer if the access policy lets them in, else None: what the login
    # machinery's `current_user` is (see hub_login.HubLoginMixin.get_current_user).
    allowed_user: dict | None = None
    # The viewer was identified by a token (URL or Authorization header), not by our cookie. A
    # browser never attaches such a token on its own, so forgery checks do not apply, and the
    # token is the viewer's credential for us, never the app's.
    token_authenticated = False
    # The token that identified the viewer, if one did.
    _viewer_token = ""

    def login_redirect_wanted(self) -> bool:
        """Whether an anonymous GET that `login_redirect_allowed` lets through goes to the hub's
        login; endpoints that programs read narrow it (they want a 401 they can report)."""
        return True

    @property
    def policy(self) -> AccessPolicy:
        return self.application.settings["services"].policy

    async def identify(self) -> dict | None:
        """The viewer's hub model, or None. Asynchronous: never blocks the event loop.

        A hub that hangs must not hold the request: past --aiohttp-request-timeout (20 s by
        default) the lookup counts as the hub being unreachable.
        """
        settings = self.application.settings["services"].settings
        timeout = settings.aiohttp_request_timeout or HUB_CALL_TIMEOUT
        try:
            model = await asyncio.wait_for(self._look_up_viewer(), timeout)
        except asyncio.TimeoutError:
            raise web.HTTPError(503, f"JupyterHub did not answer within {timeout:g} s") from None
        self.allowed_user = model if model and self.policy.allows(model) else None
        return model

    async def _look_up_viewer(self) -> dict | None:
        """Ask the hub who the viewer is: by a token first, then by our login cookie.

        The same order as HubAuth.get_user, done here with HubAuth's public calls so that we
        know, without reading its private marks on the handler, whether a token was the
        credential. A token that the hub does not know falls through to the cookie (the hub's
        answer for it is cached, so get_user does not ask twice).
        """
        hub_auth = self.hub_auth
        token = hub_auth.get_token(self, in_cookie=False)
        if token:
            model = await hub_auth.user_for_token(
                token, session_id=hub_auth.get_session_id(self), sync=False
            )
            if model:
                self.token_authenticated = True
                self._viewer_token = token
                return model
        return await hub_auth.get_user(self, sync=False)

    def keep_url_token(self, *, websocket: bool) -> bool:
        """A viewer who came with `?token=` gets our login cookie for it, as jupyterhub-singleuser
        does (`HubAuth` only reads a URL token when the hub allows it): their next requests,
        without the token, are then identified too.

        Only for a navigation by the URL's own token: a websocket cannot set a cookie, and a
        page's fetch or image is no visit by the person. A browser's page load (a GET or HEAD
        asking for HTML) is then sent on to the same address without the token, and True
        returned: a page that kept it in its address would hand it to the app in the Referer
        of every request it makes. Scripts (no HTML asked for) get their answer as before.
        """
        url_token = self.get_argument("token", "")
        if not url_token or url_token != self._viewer_token or websocket:
            return False
        if self.request.headers.get("Sec-Fetch-Mode", "navigate") != "navigate":
            return False
        log.info("Storing token from url in cookie for %s", self.request.remote_ip)
        self.hub_auth.set_cookie(self, url_token)
        if self.request.method not in ("GET", "HEAD") or not self.wants_html():
            return False
        query = h.without_token_args(self.request.query)
        location = self.request.path + ("?" + query if query else "")
        settings = self.application.settings["services"].settings
        # The path is under the prefix; at the root prefix `//host` must stay a path.
        self.set_header("Cache-Control", "no-store")
        self.redirect(h.rewrite_location(location, settings.base_url, None))
        return True

    def host_acceptable(self) -> bool:
        """Refuse a target or Host we cannot pass on as sent (400) and, with --authtype none, a
        host name not ours (403).

        With --authtype none on a loopback address, a page on any site could reach the app by
        DNS rebinding (its own name resolving to 127.0.0.1): the browser then sends that name as
        Host. Like jupyter_server, only loopback names, the listen address and --allow-host names
        are accepted there.
        """
        settings = self.application.settings["services"].settings
        problem = h.target_problem(self.request.uri or "")
        if problem:
            self.send_error_page(400, f"The request was refused: {problem}.")
            return False
        parts = h.split_host(self.request.host or "")
        if parts is None:
            log.warning("Refused %s: malformed Host header", self.logged_uri)
            self.send_error_page(400, "The request's Host header is malformed.")
            return False
        if settings.authtype == "none" and not settings.host_allowed(parts[0]):
            log.warning(
                "Refused %s: the host name %r is not this server's (see --allow-host)",
                self.logged_uri,
                parts[0],
            )
            self.send_error_page(
                403, "This server does not answer to that host name; its admin may add it."
            )
            return False
        return True

    def refuse_forgery(self, reason: str, who: str = "") -> None:
        log.warning(
            "Refused %s %s%s: %s",
            self.request.method,
            self.logged_uri,
            f" from {who}" if who else "",
            reason,
        )
        self.send_error_page(403, f"This request was refused because {reason}.")

    @property
    def viewer_sees_output(self) -> bool:
        """The app's output (tracebacks, sometimes tokens) is for the owner and hub admins only.

        With --authtype none there is nobody to tell apart: whoever reaches the port is trusted
        with the app itself.
        """
        services = self.application.settings["services"]
        if services.hub_auth is None:
            return True
        model = self.viewer
        if not model or model.get("kind", "user") != "user":
            return False
        if model.get("admin"):
            return True
        return bool(services.settings.hub.user) and model.get("name") == services.settings.hub.user

    def failure_reason(self, failure: Failure) -> str:
        """Why the app failed, as this viewer may read it: the detail of a failed checkout or
        start is the owner's and admins', as the output is."""
        return failure.reason if self.viewer_sees_output else failure.public_reason

    async def authorize(self, *, websocket: bool = False) -> bool:
        """Identify and check the viewer; answer the client and return False if not allowed."""
        services = self.application.settings["services"]
        method = self.request.method or "GET"
        if not self.host_acceptable():
            return False
        if services.hub_auth is None:  # --authtype none
            # No hub credentials to forge, but the browser still carries the app's own cookies,
            # and a page on another site must not drive an app on this machine.
            reason = forgery_reason(
                method,
                self.request.headers,
                services.settings.prefix,
                websocket=websocket,
                shared_origin=False,
            )
            if reason:
                self.refuse_forgery(reason)
                return False
            return True
        try:
            model = await self.identify()
        except web.HTTPError as e:
            log.error("Cannot check the viewer with JupyterHub: %s", e.log_message or e)
            self.send_error_page(
                503,
                "JupyterHub cannot be reached to check who you are; try again shortly.",
                retry_after=5,
            )
            return False
        if model is None:
            if self.login_redirect_wanted() and login_redirect_allowed(
                method, self.request.headers, websocket=websocket
            ):
                self.redirect(self.get_login_url())
            else:
                self.send_error_page(
                    401,
                    "Log in to JupyterHub, or send a hub token.",
                    headers={"WWW-Authenticate": 'token realm="JupyterHub"'},
                )
            return False
        if self.allowed_user is None:  # identify() applied the access policy
            owner = services.settings.hub.user or "another user"
            log.warning(
                "Refused %s %s: not allowed here", model.get("kind", "user"), model.get("name")
            )
            if self.wants_html() and not websocket:
                self.send_page(403, pages.not_yours_page(str(model.get("name")), owner))
            else:
                self.send_error_page(
                    403, f"{model.get('name')} may not use this server (it belongs to {owner})."
                )
            return False
        if not self.token_authenticated:
            reason = forgery_reason(
                method,
                self.request.headers,
                services.settings.prefix,
                websocket=websocket,
                shared_origin=not services.settings.hub.own_origin,
            )
            if reason:
                self.refuse_forgery(reason, str(model.get("name")))
                return False
        self.viewer = model
        # Stored, and a page load sent on without the token: answered already.
        return not self.keep_url_token(websocket=websocket)


class AuthorizedFirst(AuthMixin):
    """For our own endpoints: the viewer is authorised in `prepare`, before tornado reads a byte
    of a streamed body (it waits for `prepare`), so a refused client's body is never read and
    its answer closes the connection. The handler's methods run only for allowed viewers."""

    async def allowed_in(self) -> bool:
        """Whether the viewer may go on; answers the client if not. Endpoints may narrow it."""
        return await self.authorize()

    async def prepare(self) -> None:
        self.unread_body = True
        if await self.allowed_in():
            self.unread_body = False
