"""How a viewer is identified with the hub (auth.AuthMixin.identify), with a stand-in for HubOAuth.

The proxy asks JupyterHub's client through its public calls only (get_token, user_for_token,
get_user, set_cookie); these tests check the decisions it takes from the answers: which
credential identified the viewer, and when a `?token=` becomes our login cookie.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from unittest import mock

from tornado import httputil, web

from jhsingle_native_proxy.auth import AccessPolicy, AuthMixin
from jhsingle_native_proxy.base import BaseHandler

ALICE = {"kind": "user", "name": "alice", "scopes": [], "groups": []}


class FakeHubAuth:
    """Answers like HubOAuth: a URL or header token first, the login cookie after."""

    def __init__(self, tokens: dict[str, dict], cookie_user: dict | None = None):
        self.tokens = tokens
        self.cookie_user = cookie_user
        self.cookies_set: list[str] = []
        self.asked: list[str] = []

    def get_token(self, handler, in_cookie=True):
        assert in_cookie is False
        token = handler.get_argument("token", "")
        header = handler.request.headers.get("Authorization", "")
        return token or header.partition(" ")[2]

    def get_session_id(self, handler):
        return ""

    async def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):
        assert sync is False
        self.asked.append(token)
        return self.tokens.get(token)

    async def get_user(self, handler, *, sync=True):
        assert sync is False
        self.asked.append("cookie")
        return self.cookie_user

    def set_cookie(self, handler, token):
        self.cookies_set.append(token)


class Handler(AuthMixin, BaseHandler):
    hub_auth: FakeHubAuth


def _handler(
    hub_auth: FakeHubAuth,
    uri: str,
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    base_url: str = "/user/alice",
) -> Handler:
    services = SimpleNamespace(
        settings=SimpleNamespace(aiohttp_request_timeout=5, base_url=base_url),
        policy=AccessPolicy(scopes=None, user="alice"),
    )
    app = web.Application(services=services)
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine(method, uri, "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "127.0.0.1", **(headers or {})}),
        connection=mock.Mock(),
    )
    handler = Handler(app, request)
    handler._transforms = []  # what tornado's dispatcher gives a handler before it can answer
    handler.hub_auth = hub_auth
    return handler


def test_a_token_the_hub_knows_is_the_credential_and_the_cookie_is_not_asked():
    hub = FakeHubAuth({"t1": ALICE}, cookie_user={"name": "someone else"})
    handler = _handler(hub, "/user/alice/", {"Authorization": "token t1"})
    assert asyncio.run(handler.identify()) == ALICE
    assert handler.token_authenticated and handler.allowed_user == ALICE
    assert hub.asked == ["t1"]
    assert handler.get_current_user() is None  # only the hub login mixin answers for the hub


def test_an_unknown_token_falls_through_to_the_login_cookie():
    hub = FakeHubAuth({}, cookie_user=ALICE)
    handler = _handler(hub, "/user/alice/", {"Authorization": "token stale"})
    assert asyncio.run(handler.identify()) == ALICE
    assert not handler.token_authenticated
    assert hub.asked == ["stale", "cookie"]


def test_a_viewer_the_policy_refuses_is_identified_but_not_allowed():
    bob = {**ALICE, "name": "bob"}
    handler = _handler(FakeHubAuth({}, cookie_user=bob), "/user/alice/")
    assert asyncio.run(handler.identify()) == bob
    assert handler.allowed_user is None


def test_a_url_token_becomes_the_login_cookie_on_a_navigation():
    hub = FakeHubAuth({"t1": ALICE})
    handler = _handler(hub, "/user/alice/?token=t1")
    asyncio.run(handler.identify())
    handler.keep_url_token(websocket=False)
    assert hub.cookies_set == ["t1"]


def test_a_url_token_is_not_kept_for_a_websocket_or_a_page_fetch():
    for websocket, headers in ((True, {}), (False, {"Sec-Fetch-Mode": "cors"})):
        hub = FakeHubAuth({"t1": ALICE})
        handler = _handler(hub, "/user/alice/?token=t1", headers)
        asyncio.run(handler.identify())
        handler.keep_url_token(websocket=websocket)
        assert hub.cookies_set == []


def test_a_url_token_that_did_not_identify_the_viewer_is_never_kept():
    # The hub did not know it: the viewer came in by the cookie.
    hub = FakeHubAuth({}, cookie_user=ALICE)
    handler = _handler(hub, "/user/alice/?token=unknown")
    asyncio.run(handler.identify())
    handler.keep_url_token(websocket=False)
    assert hub.cookies_set == []


PAGE_LOAD = {"Accept": "text/html,*/*;q=0.8", "Sec-Fetch-Mode": "navigate"}


def _answer_headers(handler: Handler) -> httputil.HTTPHeaders:
    """The headers the handler wrote to its (stand-in) connection."""
    return handler.request.connection.write_headers.call_args[0][1]


def test_a_page_load_with_a_url_token_is_sent_on_to_the_address_without_it():
    """Issue 18, finding 5: a page that kept `?token=` in its address would hand it to the app
    in the Referer of everything it loads."""
    hub = FakeHubAuth({"t1": ALICE})
    handler = _handler(hub, "/user/alice/echo?token=t1&x=1&access_token=t1", PAGE_LOAD)
    asyncio.run(handler.identify())
    assert handler.keep_url_token(websocket=False) is True
    assert hub.cookies_set == ["t1"]
    assert handler.get_status() == 302
    answer = _answer_headers(handler)
    assert answer["Location"] == "/user/alice/echo?x=1"
    assert answer["Cache-Control"] == "no-store"


def test_a_script_or_a_post_with_a_url_token_gets_its_answer_as_before():
    for method, headers in (("GET", {"Accept": "*/*"}), ("POST", PAGE_LOAD)):
        hub = FakeHubAuth({"t1": ALICE})
        handler = _handler(hub, "/user/alice/api?token=t1", headers, method=method)
        asyncio.run(handler.identify())
        assert handler.keep_url_token(websocket=False) is False
        assert hub.cookies_set == ["t1"]
        assert not handler.request.connection.write_headers.called


def test_at_the_root_prefix_the_address_without_the_token_stays_on_our_origin():
    hub = FakeHubAuth({"t1": ALICE})
    handler = _handler(hub, "//evil.example/x?token=t1", PAGE_LOAD, base_url="")
    asyncio.run(handler.identify())
    assert handler.keep_url_token(websocket=False) is True
    assert _answer_headers(handler)["Location"] == "/evil.example/x"
