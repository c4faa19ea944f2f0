"""Issue 18's findings on what crosses the wire between a viewer and the app: header injection into
the app's websocket upgrade (1), app cookies that escape the user's prefix (3), the viewer's
token in Referer (5, the parts without a hub; tests/test_security_hub.py has the real hub's),
and hub cookies by name (7; with issue 18's item 12: a range of names, `__Host-` and case
variants, both ways). Each test fails on the code before its fix; the end-to-end handshake
test of 1 only with a tornado before 6.5 (which let a bare CR through; 6.5 is now the floor).
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from unittest import mock
from urllib.parse import quote

import pytest
from tornado import httputil, web

from conftest import APPS, raw_exchange
from jhsingle_native_proxy import http_hygiene as h
from jhsingle_native_proxy.auth import AuthMixin, app_may_set_cookie, is_hub_cookie
from jhsingle_native_proxy.base import BaseHandler
from jhsingle_native_proxy.login_state import without_dot_segments
from jhsingle_native_proxy.proxy.app_request import AppRequestMixin
from jhsingle_native_proxy.proxy.app_websocket import upgrade_problem, upgrade_request

PREFIX = "/user/alice/"
FORGED = '{"kind": "user", "name": "alice", "admin": true, "groups": []}'

# -- 1: header injection into the app's websocket upgrade ---------------------------------------


def test_an_upgrade_request_is_never_written_with_a_line_break_in_it():
    clean = upgrade_request("/ws", "127.0.0.1:1", [("X-A", "1")], ["chat"], "k")
    assert clean.startswith(b"GET /ws HTTP/1.1\r\n")
    for headers, protocols in (
        ([("X-Note", f"a\r{h.USER_HEADER}: {FORGED}")], []),
        ([("X-Note", "a\nX-B: 1")], []),
        ([("X-Note", "a\0")], []),
        ([("X Note", "a")], []),
        ([], [f"chat\r{h.USER_HEADER}: {FORGED}"]),
    ):
        assert upgrade_problem(headers, protocols)
        with pytest.raises(ValueError):
            upgrade_request("/ws", "127.0.0.1:1", headers, protocols, "k")


class AppRequest(AuthMixin, AppRequestMixin, BaseHandler):
    """The part of the HTTP and websocket handlers that makes the app's headers."""


def _app_request(headers: dict[str, str], *, behind_hub: bool = False) -> AppRequest:
    services = SimpleNamespace(
        settings=SimpleNamespace(
            base_url="/user/alice", forward_user_info=False, hub=SimpleNamespace(client_id="")
        ),
        supervisor=SimpleNamespace(request_headers=()),
        hub_auth=object() if behind_hub else None,
        identity=None,
    )
    # A dict as headers skips tornado's own checks: tornado before 6.5 let a bare CR through.
    request = httputil.HTTPServerRequest(
        start_line=httputil.RequestStartLine("GET", PREFIX + "ws", "HTTP/1.1"),
        headers=httputil.HTTPHeaders({"Host": "hub.example", **headers}),
        connection=mock.Mock(),
    )
    request.remote_ip, request.protocol = "127.0.0.1", "http"
    return AppRequest(web.Application(services=services), request)


def test_a_header_value_with_a_bare_cr_is_refused_before_the_app_is_asked():
    """What tornado before 6.5 passed on: refused with 400 by the headers both paths share."""
    handler = _app_request({"X-Note": f"a\r{h.USER_HEADER}: {FORGED}"})
    with pytest.raises(web.HTTPError) as refused:
        handler.app_request_headers()
    assert refused.value.status_code == 400
    assert _app_request({"X-Note": "fine"}).app_request_headers()


def _upgrade(port: int, target: str, extra: str = "") -> str:
    """A websocket handshake written by hand: the head of the answer (status line, headers)."""
    head = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
    data = raw_exchange(port, head.encode())
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def _set_cookies_of(head: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")[1:]
        if line.lower().startswith("set-cookie:")
    ]


def test_a_bare_cr_in_a_websocket_handshake_never_reaches_the_app(start_proxy):
    """Whichever refuses it (tornado 6.5 and later, or the proxy), the app never gets it."""
    proxy = start_proxy()
    for extra in (
        f"X-Note: a\r{h.USER_HEADER}: {FORGED}\r\n",
        f"Sec-WebSocket-Protocol: chat\r{h.USER_HEADER}: {FORGED}\r\n",
    ):
        assert _upgrade(proxy.port, PREFIX + "ws", extra).split(" ", 2)[1] == "400", extra
    assert proxy.get("echo?after").status == 200
    proxy.wait_log("app got GET /echo?after")
    assert "app got GET /ws" not in proxy.log()


# -- 3: app cookies escape the user's prefix ------------------------------------------------------


@pytest.mark.parametrize(
    "cookie, expected",
    [
        ("sid=abc; Path=/", "sid=abc; Path=/user/alice/"),
        ("sid=abc; Path=/x; HttpOnly", "sid=abc; Path=/user/alice/x; HttpOnly"),
        ("sid=abc;path = /", "sid=abc; Path=/user/alice/"),
        ("sid=abc; Path=/user/bob/", "sid=abc; Path=/user/alice/user/bob/"),
        ("sid=abc; Path=/user/alicex", "sid=abc; Path=/user/alice/user/alicex"),
        # A browser takes the last Path: every one is moved.
        ("s=1; Path=/user/alice/; Path=/", "s=1; Path=/user/alice/; Path=/user/alice/"),
        (
            "s=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT; PATH=/",
            "s=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/user/alice/",
        ),
        # Under the prefix already, no Path, or no path: the browser keeps it under the prefix.
        ("sid=abc; Path=/user/alice/app", "sid=abc; Path=/user/alice/app"),
        ("sid=abc; Path=/user/alice", "sid=abc; Path=/user/alice"),
        ("sid=abc", "sid=abc"),
        ("sid=abc; Path=x", "sid=abc; Path=x"),
        ("sid=/; HttpOnly", "sid=/; HttpOnly"),
    ],
)
def test_a_cookie_path_outside_the_prefix_is_moved_under_it(cookie, expected):
    assert h.cookie_path_under_prefix(cookie, "/user/alice") == expected


def test_at_the_root_prefix_and_with_absolute_url_cookies_are_left_alone():
    assert h.cookie_path_under_prefix("sid=abc; Path=/", "") == "sid=abc; Path=/"


def _set_cookie_query(cookies: list[str], arg: str = "raw") -> str:
    return "&".join(f"{arg}={quote(c, safe='')}" for c in cookies)


def test_an_apps_cookies_stay_under_its_prefix_over_http_and_websockets(start_proxy):
    """The cookies the app sets, over HTTP and in its websocket handshake, as the browser gets
    them; --absolute-url apps see the whole path, so theirs are left as they are."""
    proxy = start_proxy()
    cookies = ["sid=abc; Path=/", "x=1; Path=/x", "plain=1", "deep=1; Path=/user/alice/d"]
    answer = proxy.get("set-cookie?" + _set_cookie_query(cookies))
    assert answer.header_all("Set-Cookie") == [
        "sid=abc; Path=/user/alice/",
        "x=1; Path=/user/alice/x",
        "plain=1",
        "deep=1; Path=/user/alice/d",
    ]

    ws = PREFIX + "ws?" + _set_cookie_query(["wsid=1; Path=/"], "set-cookie")
    head = _upgrade(proxy.port, ws)
    assert head.startswith("HTTP/1.1 101")
    assert _set_cookies_of(head) == ["wsid=1; Path=/user/alice/"]

    absolute = start_proxy(["--absolute-url", "--ready-check-path", PREFIX])
    answer = absolute.get("set-cookie?" + _set_cookie_query(["sid=abc; Path=/"]))
    assert answer.header_all("Set-Cookie") == ["sid=abc; Path=/"]


def test_a_visitors_cookie_from_one_users_app_never_reaches_another_users_app(start_proxy):
    """In Chromium, two users' servers on one host (cookies know no port: one origin for them,
    as on a hub without subdomains). The visitor's own app sets a session cookie with `Path=/`,
    over HTTP and in a websocket handshake; then the visitor opens bob's app."""
    pytest.importorskip("playwright.sync_api")
    from browser import chromium_page

    visitor = start_proxy()
    bob = start_proxy(prefix="/user/bob/")
    set_http = visitor.url("set-cookie?" + _set_cookie_query(["visitor-sid=secret; Path=/"]))
    ws_url = f"ws://127.0.0.1:{visitor.port}{PREFIX}ws?" + _set_cookie_query(
        ["visitor-ws=secret; Path=/"], "set-cookie"
    )
    with chromium_page() as page:
        page.goto(set_http)
        opened = page.evaluate(
            """url => new Promise(done => {
                const ws = new WebSocket(url);
                ws.onopen = () => { ws.close(); done("open"); };
                ws.onerror = () => done("error");
            })""",
            ws_url,
        )
        assert opened == "open"
        own = page.goto(visitor.url("echo")).json()
        seen = page.goto(bob.url("echo")).json()
    own_cookies = " ".join(v for k, v in own["headers"] if k.lower() == "cookie")
    assert "visitor-sid=secret" in own_cookies and "visitor-ws=secret" in own_cookies
    assert [v for k, v in seen["headers"] if k.lower() == "cookie"] == []


# -- 5: the viewer's token in Referer -------------------------------------------------------------


@pytest.mark.parametrize(
    "referer, expected",
    [
        (
            "http://hub.example/user/alice/page?token=T&y=2",
            "http://hub.example/user/alice/page?y=2",
        ),
        ("http://hub.example/user/alice/?access_token=T", "http://hub.example/user/alice/"),
        ("http://HUB.example/p?a=1;%74oken=T&ACCESS-TOKEN=T", "http://HUB.example/p?a=1"),
        ("http://hub.example/p?tokens=1", "http://hub.example/p?tokens=1"),
        # Another origin's address is not ours to change.
        ("http://other.example/p?token=T", "http://other.example/p?token=T"),
        ("http://hub.example/p", "http://hub.example/p"),
    ],
)
def test_the_token_is_taken_out_of_a_referer_from_our_origin(referer, expected):
    assert h.referer_without_tokens(referer, "hub.example") == expected


def test_the_app_gets_a_referer_without_the_viewers_token_behind_the_hub():
    referer = "http://hub.example/user/alice/page?token=T&y=2"
    for behind_hub, expected in (
        (True, "http://hub.example/user/alice/page?y=2"),
        (False, referer),
    ):
        headers = _app_request({"Referer": referer}, behind_hub=behind_hub).app_request_headers()
        assert [v for n, v in headers if n.lower() == "referer"] == [expected]


# -- 7 and 12: hub cookies by name, both ways -----------------------------------------------------

CLIENT_ID = "service-dash"
HUB_COOKIES = [
    "service-dash",  # the viewer's OAuth token, named after the client id
    "service-dash-oauth-state",
    "service-dash-oauth-state-a1b2c3",
    "jupyterhub-session-id",
    "jupyterhub-hub-login",
    "jupyterhub-user-alice",
    "jupyterhub-user-alice-oauth-state",
    "__Host-service-dash",  # JupyterHub's cookie_host_prefix_enabled
    "__Host-jupyterhub-session-id",
    "__Host-service-dash-oauth-state",
    "__host-Service-Dash",
    "__Secure-jupyterhub-hub-login",
    "Service-Dash",
    "JupyterHub-Session-Id",
    "JUPYTERHUB-HUB-LOGIN",
]
APP_COOKIES = ["sid", "service-dashboard", "dash", "service", "_xsrf", "my-jupyterhub-notes"]


@pytest.mark.parametrize("name", HUB_COOKIES)
def test_every_spelling_of_a_hub_cookie_is_the_hubs(name):
    assert is_hub_cookie(name, CLIENT_ID)
    assert not app_may_set_cookie(f"{name}=x; Path=/", CLIENT_ID)


@pytest.mark.parametrize("name", APP_COOKIES)
def test_the_apps_own_cookies_are_the_apps(name):
    assert not is_hub_cookie(name, CLIENT_ID)
    assert app_may_set_cookie(f"{name}=x; Path=/", CLIENT_ID)


def test_without_a_client_id_only_the_hubs_own_names_are_the_hubs():
    assert not is_hub_cookie("service-dash")
    assert is_hub_cookie("__Host-jupyterhub-session-id")


@pytest.mark.parametrize(
    "set_cookie", ["=jupyterhub-session-id=evil; Path=/", " =service-dash=evil", "service-dash"]
)
def test_a_cookie_without_a_name_that_a_browser_sends_as_a_hub_cookie_is_dropped(set_cookie):
    """A browser sends a nameless cookie as its value alone: `=NAME=v` comes back as `NAME=v`."""
    assert not app_may_set_cookie(set_cookie, CLIENT_ID)


def test_hub_cookies_by_every_name_never_pass_either_way(start_proxy):
    """Run as the hub service `service-dash` (its OAuth cookie holds the viewer's token)."""
    proxy = start_proxy(env={"JUPYTERHUB_CLIENT_ID": CLIENT_ID})
    sent = "; ".join(f"{name}=v{i}" for i, name in enumerate(HUB_COOKIES + APP_COOKIES))
    seen = proxy.get("echo", headers={"Cookie": sent}).json()
    cookies = [v for k, v in seen["headers"] if k.lower() == "cookie"]
    first_app = len(HUB_COOKIES)
    assert cookies == ["; ".join(f"{name}=v{first_app + i}" for i, name in enumerate(APP_COOKIES))]
    set_cookies = [f"{name}=evil; Path=/" for name in HUB_COOKIES]
    set_cookies += ["=jupyterhub-session-id=evil; Path=/", "=service-dash=evil", "mine=1"]
    answer = proxy.get("set-cookie?" + _set_cookie_query(set_cookies))
    assert answer.status == 200
    assert answer.header_all("Set-Cookie") == ["mine=1"]
    ws = (
        PREFIX
        + "ws?"
        + _set_cookie_query(
            ["__Host-service-dash=evil; Path=/", "Service-Dash=evil", "ok=1"], "set-cookie"
        )
    )
    head = _upgrade(proxy.port, ws)
    assert head.startswith("HTTP/1.1 101")
    assert _set_cookies_of(head) == ["ok=1"]


# -- service workers: an app's worker stays within the app's prefix ---------------------------


@pytest.mark.parametrize(
    ("allowed", "script", "base_url", "expected"),
    [
        ("/", PREFIX + "sw.js", "/user/alice", "/user/alice/"),
        ("/static/", PREFIX + "static/sw.js", "/user/alice", "/user/alice/static/"),
        ("/user/alice/x/", PREFIX + "sw.js", "/user/alice", "/user/alice/x/"),
        ("./", PREFIX + "static/sw.js", "/user/alice", "/user/alice/static/"),
        ("../", PREFIX + "static/sw.js", "/user/alice", "/user/alice/"),
        ("../../", PREFIX + "static/sw.js", "/user/alice", None),
        ("%2e%2e/%2e%2e/", PREFIX + "static/sw.js", "/user/alice", None),
        ("/", PREFIX + "sw.js", "", None),  # --absolute-url: `/` is the hub's root
        ("/user/alice/", PREFIX + "sw.js", "", "/user/alice/"),
        ("/user/alicex/", PREFIX + "sw.js", "", None),
        ("//evil.example/", PREFIX + "sw.js", "/user/alice", None),
        ("https://evil.example/", PREFIX + "sw.js", "/user/alice", None),
        ("/\\evil/", PREFIX + "sw.js", "", None),
        # What is checked is what the browser reads: a `%` left after one decoding, or a tab
        # (which a URL parser drops), must not turn into a dot segment in the browser.
        ("/user/alice/%252e%252e/", PREFIX + "sw.js", "/user/alice", "/user/alice/%252e%252e/"),
        ("%252E./", PREFIX + "sw.js", "/user/alice", "/user/alice/%252E./"),
        ("/user/alice/.%09./", PREFIX + "sw.js", "/user/alice", "/user/alice/.%09./"),
        ("/x%3F/", PREFIX + "sw.js", "/user/alice", "/user/alice/x%3F/"),
    ],
)
def test_a_service_workers_scope_never_leaves_the_prefix(allowed, script, base_url, expected):
    assert h.service_worker_scope(allowed, script, PREFIX, base_url) == expected


def test_an_app_cannot_widen_its_service_worker_to_the_whole_origin(start_proxy):
    """`Service-Worker-Allowed: /` would let a worker of one user's app answer for the hub and
    every other user's server on a shared origin; it now means the app's own `/`."""
    proxy = start_proxy(app=[sys.executable, str(APPS / "headers_app.py"), "{port}"])
    wide = proxy.get("sw.js?h=Service-Worker-Allowed:/")
    assert wide.header("Service-Worker-Allowed") == PREFIX
    out = proxy.get("static/sw.js?h=Service-Worker-Allowed:../../../")
    assert out.status == 200 and out.header("Service-Worker-Allowed") is None


def test_a_double_encoded_dot_segment_does_not_widen_a_service_worker(start_proxy):
    """The app sent `/user/alice/%252e%252e/`; the proxy decoded it once, checked
    `/user/alice/%2e%2e/` as a folder under the prefix and sent that, which a browser reads as
    `/user/`: Chromium then let the app's worker answer for every user's server. What goes out
    must read, to a browser, as the path that was checked."""
    proxy = start_proxy(app=[sys.executable, str(APPS / "headers_app.py"), "{port}"])
    for sent in ("/user/alice/%25252e%25252e/", "/user/alice/.%2509./"):
        scope = proxy.get("sw.js?h=Service-Worker-Allowed:" + sent).header("Service-Worker-Allowed")
        # where a browser goes for it: dot segments resolved, `%2e` and tabs included
        assert scope is not None and without_dot_segments(scope).startswith(PREFIX), scope
