"""JupyterHub's login machinery, added to our handlers with --authtype oauth only.

JupyterHub's client (`jupyterhub.services.auth`) pulls in its database layer and SQLAlchemy:
about 30 MiB and a third of a second at start-up. A server with --authtype none never imports
this module, and so never pays for it.
"""

from __future__ import annotations

import contextlib

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from .auth import AuthMixin
from .base import BaseHandler
from .login_state import StatelessHubOAuth
from .settings import Settings

LOGIN_FAILED = "Logging in through JupyterHub did not work; please try again."


def make_hub_auth(settings: Settings, secret: bytes) -> HubOAuth:
    """HubOAuth configured from Settings only (so from the environment read once, in one place);
    `secret` (auth.process_secret) derives the PKCE verifiers."""
    hub = settings.hub
    kwargs: dict[str, object] = dict(
        api_token=hub.api_token,
        api_url=hub.api_url,
        oauth_client_id=hub.client_id,
        base_url=settings.prefix,
        hub_prefix=hub.hub_prefix,
        hub_host=hub.host,
        oauth_redirect_uri=hub.oauth_callback_url or settings.prefix + "oauth_callback",
        access_scopes=set(hub.access_scopes or ()),
        keyfile=hub.ssl_keyfile,
        certfile=hub.ssl_certfile,
        client_ca=hub.ssl_client_ca,
        cookie_options=dict(hub.cookie_options),
        cache_max_age=60,
    )
    if "cookie_host_prefix_enabled" in StatelessHubOAuth.class_trait_names():
        kwargs["cookie_host_prefix_enabled"] = hub.cookie_host_prefix_enabled
    auth = StatelessHubOAuth(**kwargs)
    auth.verifier_secret = secret
    return auth


class HubLoginMixin(HubOAuthenticated):
    """JupyterHub's OAuth login for a handler: login URLs with state, the token cookie."""

    @property
    def hub_auth(self) -> HubOAuth:  # type: ignore[override]
        return self.application.settings["services"].hub_auth

    @hub_auth.setter
    def hub_auth(self, value) -> None:  # pragma: no cover - set through Services only
        raise AttributeError("hub_auth comes from Services")

    def get_current_user(self) -> dict | None:
        """The viewer `identify` found and the access policy allows (AuthMixin.allowed_user).

        HubAuthenticated's own version asks the hub synchronously, blocking the event loop,
        unless a private cache of its is filled. Every handler of ours identifies the viewer
        asynchronously before anything reads `current_user` (the OAuth callback does, to see
        whether a stale login state belongs to someone already logged in), so the answer is
        already known here.
        """
        return self.allowed_user

    def check_xsrf_cookie(self) -> None:
        # JupyterHub's `_xsrf` check would refuse every cookie-authenticated POST of an app that
        # has never heard of `_xsrf`. `forgery_reason` takes its place, in `authorize`.
        return None


def with_hub_login(handler_class: type) -> type:
    """`handler_class` with JupyterHub's login machinery in front of it."""
    return type(handler_class.__name__, (HubLoginMixin, handler_class), {})


@web.stream_request_body  # a body sent here is read and dropped, never kept
class OAuthCallbackHandler(HubLoginMixin, AuthMixin, HubOAuthCallbackHandler, BaseHandler):
    """`{prefix}/oauth_callback`: finishes the OAuth dance and sets the token cookie."""

    async def prepare(self) -> None:
        # Identify the viewer asynchronously, so `current_user` (see HubLoginMixin) is known. A
        # hub that cannot be asked leaves nobody logged in: the callback then completes the login.
        with contextlib.suppress(web.HTTPError):
            await self.identify()

    def write_error(self, status_code: int, **kwargs) -> None:
        # One sentence of ours, whatever went wrong: JupyterHub's reasons quote the callback's
        # own arguments (`?error_description=`), which anyone can write, and this page is on
        # the hub's origin. The log has the detail (log_exception).
        if not self.headers_sent:
            self.send_error_page(status_code, LOGIN_FAILED)
