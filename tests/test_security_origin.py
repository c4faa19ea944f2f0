"""Issue 18, items 2, 4 and 10, where no real hub is needed: where `{origin_host}` comes from,
log lines that request data cannot break, the login's return address, and JupyterHub's OAuth
state kept out of the log. Each test fails on the code before the fix.
tests/test_security_origin_hub.py has the parts that need a hub's users (a shared viewer)."""

from __future__ import annotations

import base64
import json
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from test_security import hub_env

from conftest import ECHO_APP, console_form, raw_exchange, request, wait_for
from jhsingle_native_proxy import http_hygiene as h
from jhsingle_native_proxy.log_lines import escape_controls
from jhsingle_native_proxy.login_state import without_dot_segments
from jhsingle_native_proxy.settings import build_settings

PREFIX = "/user/alice/"
SAYS_HOST = [sys.executable, ECHO_APP, "{port}", "--say", "host={origin_host}"]


# -- item 2: {origin_host} -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, expected",
    [
        ("--help", None),
        ("-x.example.org", None),
        ("x-.example.org", None),
        ("x.-example.org", None),
        ("x.example-:80", None),
        ("-", None),
        (".", None),
        (".example.org", None),
        ("a" * 64 + ".org", None),
        (".".join(["a" * 60] * 5), None),  # 304 characters
        ("a" * 63 + ".org", ("a" * 63 + ".org", None)),
        ("my-host.example.org:8443", ("my-host.example.org", 8443)),
        ("x--y.example", ("x--y.example", None)),
        ("compose_app_1", ("compose_app_1", None)),
        ("10.0.0.5:8888", ("10.0.0.5", 8888)),
        ("[fe80::1%25eth0]:80", ("fe80::1%25eth0", 80)),
    ],
)
def test_a_host_name_is_rfc_1123s(host, expected):
    """No label starts or ends with `-`: `Host: --help` must not read as a name."""
    assert h.split_host(host) == expected


PUBLIC = "JUPYTERHUB_PUBLIC_URL"
CALLBACK = "JUPYTERHUB_OAUTH_CALLBACK_URL"


@pytest.mark.parametrize(
    "env, allow, expected",
    [
        ({PUBLIC: "https://hub.example.org:8443/user/alice/"}, [], "hub.example.org:8443"),
        ({PUBLIC: "https://hub.example.org:443/user/alice/"}, [], "hub.example.org"),
        ({PUBLIC: "http://[::1]:8000/user/alice/"}, [], "[::1]:8000"),
        (
            {
                CALLBACK: "https://alice.hub.example.org/user/alice/oauth_callback",
                "JUPYTERHUB_HOST": "https://hub.example.org",
            },
            ["other.example"],
            "alice.hub.example.org",
        ),
        (
            {CALLBACK: "/user/alice/oauth_callback", "JUPYTERHUB_HOST": "http://hub.example:8000"},
            [],
            "hub.example:8000",
        ),
        ({CALLBACK: "/user/alice/oauth_callback"}, ["*", "a.example", "b"], "a.example"),
        ({PUBLIC: "https://--help/"}, [], ""),
        ({"JUPYTERHUB_HOST": ""}, ["*"], ""),
    ],
)
def test_origin_host_comes_from_the_hub_then_allow_host(env, allow, expected):
    settings = build_settings(
        {"authtype": "none", "allow_hosts": tuple(allow)},
        ["app", "{origin_host}"],
        {"JUPYTERHUB_SERVICE_PREFIX": PREFIX, **env},
    )
    assert settings.trusted_origin_host == expected
    assert settings.starts_at_first_request is (expected == "")


def test_a_host_like_an_option_gets_400_and_never_reaches_the_command(start_proxy):
    """`Host: --help` was a name, became the app's `--allow-websocket-origin` value's option."""
    proxy = start_proxy(app=SAYS_HOST, wait="listening")
    proxy.wait_log("Listening on ")
    for evil in ("--help", "-h", "--help:80", "x.-y"):
        assert proxy.get("echo", headers={"Host": evil}).status == 400, evil
    assert "Starting the app" not in proxy.log()
    assert proxy.get("echo", headers={"Host": "localhost:1234"}).status == 200
    assert "host=localhost:1234" in proxy.log()
    assert "--help" not in proxy.log().split("Starting the app", 1)[1]


def test_the_hubs_public_url_gives_origin_host_and_no_request_changes_it(start_proxy):
    proxy = start_proxy(
        app=SAYS_HOST, env={"JUPYTERHUB_PUBLIC_URL": "https://dash.example.org:8443/user/alice/"}
    )
    # Known at launch: the app did not wait for a visit.
    assert "host=dash.example.org:8443" in proxy.log()
    assert proxy.get("echo", headers={"Host": "localhost:1234"}).status == 200
    restart = console_post(proxy, "restart", host="localhost:4321")
    assert restart.status == 303
    proxy.wait_log("host=dash.example.org:8443", count=2)
    assert "host=localhost" not in proxy.log()


def test_a_restart_takes_origin_host_again_from_whoever_asked(start_proxy):
    """A host taken from a request is not kept for good: the console's Restart takes it anew."""
    proxy = start_proxy(app=SAYS_HOST, wait="listening")
    assert proxy.get("echo", headers={"Host": "localhost:1111"}).status == 200
    assert "host=localhost:1111" in proxy.log()
    restart = console_post(proxy, "restart", host="localhost:2222")
    assert restart.status == 303
    proxy.wait_log("host=localhost:2222")
    pull = console_post(proxy, "pull", host="localhost:3333")
    assert pull.status == 404  # no --repo; Pull and restart goes through the same restart


def console_post(proxy, action: str, host: str):
    """The console's form sent for `action`, with the token its page holds, naming `host`."""
    sent = console_form(proxy)
    return proxy.request(
        "POST", f"_jhsnp/{action}", body=sent["body"], headers={**sent["headers"], "Host": host}
    )


# -- item 4: log lines ---------------------------------------------------------------------


def test_escape_controls_leaves_one_line():
    text = "a\nb\rc\x0bd\x0ce\x1cf\x85g\u2028h\x1b[31mi\x7fj\tk"
    escaped = escape_controls(text)
    assert escaped.splitlines() == [escaped]
    assert escaped == "a\\nb\\rc\\x0bd\\x0ce\\x1cf\\x85g\\u2028h\\x1b[31mi\\x7fj\tk"


def forged_lines(log: str, marker: str) -> list[str]:
    """Lines of the log that begin with `marker`: a record the attacker wrote. Split as Python
    splits lines (CR, LF, VT, FF, FS, GS, RS, NEL, U+2028, U+2029): what a log reader may do."""
    return [line for line in log.splitlines() if line.startswith(marker)]


def raw_request(port: int, head: bytes) -> bytes:
    return raw_exchange(port, head, until=b"\r\n").split(b"\r\n", 1)[0]


def test_request_data_cannot_start_a_log_line(start_proxy):
    """A byte that some reader takes for a line break, in a path (the access log) or in a header
    quoted by a refusal, stays inside its record."""
    proxy = start_proxy()
    forged = "[W 2026-01-01 00:00:00.000 jhsingle_native_proxy] FORGED"
    for byte in ("\x85", "\u2028"):
        # A path byte above 0x7e is refused (400) and logged; tornado reads it as latin-1.
        line = f"GET {PREFIX}a{byte}{forged.replace(' ', '_')} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        answer = raw_request(proxy.port, line.encode("utf-8" if byte > "\xff" else "latin-1"))
        assert answer.startswith(b"HTTP/1.1 400"), answer
        for name, value in (("Sec-Fetch-Mode", f"x{byte}{forged}"), ("Origin", f"x{byte}{forged}")):
            head = (
                f"POST {PREFIX}echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                f"Sec-Fetch-Site: same-origin\r\n{name}: {value}\r\n\r\n"
            )
            if name == "Sec-Fetch-Mode":
                head = head.replace("POST", "GET").replace("same-origin", "cross-site")
            answer = raw_request(proxy.port, head.encode("utf-8" if byte > "\xff" else "latin-1"))
            assert answer.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), (name, answer)
    proxy.wait_log("Refused POST", count=2)
    log = proxy.log()
    assert not forged_lines(log, "[W 2026-01-01"), log
    assert not forged_lines(log, "[w 2026-01-01"), log  # the mode is lowercased
    assert not forged_lines(log, "_2026-01-01"), log
    assert "\\x85" in log  # logged, escaped


@pytest.fixture
def oauth_proxy(start_proxy):
    proxy = start_proxy(authtype="oauth", env=hub_env(), wait="listening")
    proxy.wait_log("The app is ready")
    return proxy


def test_an_oauth_error_description_is_logged_on_one_line_and_never_shown(oauth_proxy):
    forged = "[I 2026-01-01 00:00:00.000 jhsingle_native_proxy] Restart asked by alice"
    query = "error=access_denied&error_description=" + "nope%0A" + forged.replace(" ", "+")
    for accept in ("text/html", "*/*"):
        response = oauth_proxy.get("oauth_callback?" + query, headers={"Accept": accept})
        assert response.status == 400
        body = response.body.decode()
        assert "Logging in through JupyterHub did not work" in body
        assert "nope" not in body and "Restart asked" not in body
    oauth_proxy.wait_log("Error in oauth", count=2)
    log = oauth_proxy.log()
    assert not forged_lines(log, "[I 2026-01-01"), log
    assert "Error in oauth: nope\\n[I 2026-01-01" in log


# -- item 10: the login's return address, JupyterHub's state warning --------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("/user/alice/../../hub/token", "/hub/token"),
        ("/user/alice/%2e%2E/%2E./hub/token?x=../..", "/hub/token?x=../.."),
        ("/user/alice/.%2e/bob/", "/user/bob/"),
        ("/user/alice\\..\\..\\hub", "/hub"),
        ("/user/alice/.\t./x", "/user/x"),
        ("/user/alice/a/./b/../c/.", "/user/alice/a/c/"),
        ("/user/alice/a/..", "/user/alice/"),
        ("/user/alice/a..b/.x/", "/user/alice/a..b/.x/"),
        ("/user/alice/x#/../..", "/user/alice/x#/../.."),
    ],
)
def test_dot_segments_are_resolved_as_a_browser_does(url, expected):
    assert without_dot_segments(url) == expected


def _state_payload(location: str) -> dict:
    state = parse_qs(urlsplit(location).query)["state"][0]
    body = state.split(".", 1)[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.mark.parametrize(
    "path, expected",
    [
        (PREFIX + "../../hub/token", PREFIX),
        (PREFIX + "%2e%2e/%2e%2e/hub/token", PREFIX),
        (PREFIX + "x/../page?q=1", PREFIX + "page?q=1"),
    ],
)
def test_the_login_returns_under_the_prefix_whatever_the_dots(oauth_proxy, path, expected):
    response = request(oauth_proxy.port, "GET", path, headers={"Accept": "text/html"})
    assert response.status == 302, response.body[:200]
    assert _state_payload(response.header("Location"))["n"] == expected


def test_jupyterhubs_state_mismatch_warning_keeps_the_state_out_of_the_log(oauth_proxy):
    state = "PENDING-STATE-d41d8cd98f00b204"
    response = oauth_proxy.get(f"oauth_callback?code=c0de&state={state}")
    assert response.status == 403
    wait_for(lambda: "oauth state argument" in oauth_proxy.log(), what="JupyterHub's warning")
    log = oauth_proxy.log()
    assert state not in log
    assert "oauth state argument [secret] != cookie" in log
