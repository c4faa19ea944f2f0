"""Regression tests for the attacker's review of issue 9: each fails on the code before the fix.

They run the real CLI in front of the echo app. Where a viewer's identity does not matter, OAuth
mode runs against a hub API that is not there: an anonymous request never asks the hub anything,
so what happens before authorisation is tested without one. tests/test_security_hub.py has the
findings that need a real JupyterHub's users.
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import sys
import time

import pytest

from conftest import ECHO_APP, free_port, peak_rss_kib, request, rss_kib, wait_for, ws_try

MiB = 1024 * 1024
PREFIX = "/user/alice/"


def hub_env(**more) -> dict:
    """A server whose hub API is not there: enough for everything before authorisation."""
    return {
        "JUPYTERHUB_API_TOKEN": "t" * 32,
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!user=alice"]',
        **more,
    }


@pytest.fixture
def oauth_proxy(start_proxy):
    proxy = start_proxy(authtype="oauth", env=hub_env(), wait="listening")
    proxy.wait_log("The app is ready")
    return proxy


def push_body(port: int, head: str, total: int, chunked: bool = False) -> tuple[int, bytes]:
    """Send `head` and then up to `total` body bytes, as fast as the server takes them.

    Returns how many body bytes the server took before it stopped reading (answered, closed the
    connection, or left its receive window full for 2 s), and what it answered.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    chunk = b"x" * MiB
    if chunked:
        chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    answer = b""
    try:
        _send_all(sock, head.encode("latin-1"))
        pending = memoryview(chunk)
        deadline = time.monotonic() + 60
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 2)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                answer += data
                if not data:
                    break
            if not writable:
                if not readable:
                    break  # the server no longer reads
                continue
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            except BlockingIOError:
                continue
            sent += n
            pending = pending[n:]
            if not pending:
                pending = memoryview(chunk)
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
        return sent, answer
    finally:
        sock.close()


def _send_all(sock: socket.socket, data: bytes) -> None:
    sock.setblocking(True)
    sock.sendall(data)
    sock.setblocking(False)


@pytest.mark.parametrize(
    "path, extra, chunked",
    [
        (PREFIX + "_jhsnp/status", "", False),
        (PREFIX + "oauth_callback", "", False),
        (PREFIX.rstrip("/"), "", False),
        (PREFIX + "ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n", False),
        (PREFIX + "echo", "", False),
        (PREFIX + "_jhsnp/status", "", True),
        (PREFIX + "_jhsnp/rewrite.js", "", False),
    ],
)
def test_no_body_is_read_before_the_viewer_is_authorised(oauth_proxy, path, extra, chunked):
    """Finding 1: a 100 MB POST without credentials must not be read into memory."""
    total = 100 * MiB
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{oauth_proxy.port}\r\n{extra}{framing}\r\n\r\n"
    before = peak_rss_kib(oauth_proxy.pid)
    sent, answer = push_body(oauth_proxy.port, head, total, chunked)
    grown = (peak_rss_kib(oauth_proxy.pid) - before) / 1024
    assert grown < 20, f"the proxy grew by {grown:.0f} MiB"
    assert sent < 40 * MiB, f"the proxy read {sent / MiB:.0f} MiB before authorising anyone"
    # Refused (4xx), or sent on to the slash-ended prefix (307) without the body being read.
    assert re.match(rb"HTTP/1.1 (307|4\d\d) ", answer), answer[:200]
    assert oauth_proxy.process.poll() is None


def test_malformed_host_is_refused_and_never_reaches_the_command(start_proxy, tmp_path):
    """Finding 2: `{origin_host}` takes the Host of the first request; a shell must never run it."""
    script = f'echo "host is {{origin_host}}"; exec {sys.executable} {ECHO_APP} {{port}}'
    proxy = start_proxy(app=["sh", "-c", script], wait="listening", cwd=str(tmp_path))
    for evil in ("x;touch$IFS'pwned'", "x`touch pwned`", "$(touch pwned)", "a b"):
        response = request(proxy.port, "GET", PREFIX + "echo", headers={"Host": evil})
        assert response.status == 400, evil
    assert not (tmp_path / "pwned").exists()
    assert "Starting the app" not in proxy.log()
    # A good first request, as curl sends it (no Accept: text/html), to the prefix itself,
    # starts the app at once (it used to be held as if it were the hub's probe, then 503).
    response = request(proxy.port, "GET", PREFIX, headers={"Host": "localhost:1234"})
    assert response.status == 200, response.body[:300]
    assert "host is localhost:1234" in proxy.log()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "path",
    [
        "/evil.example/dir",  # the app adds a slash: Location //evil.example/dir/
        "/redirect?to=//evil.example/x",
        "/redirect?to=/%5Cevil.example/x",
        "/redirect-self?path=//evil.example/x",  # http://127.0.0.1:APP//evil.example/x
    ],
)
def test_redirects_meant_as_paths_stay_on_our_origin(start_proxy, path):
    """Finding 3: `{prefix}//evil.example` must never become a redirect to evil.example."""
    from urllib.parse import unquote, urljoin

    proxy = start_proxy()
    uri = PREFIX + "/" + path.lstrip("/") if path.endswith("/dir") else PREFIX + path.lstrip("/")
    response = request(proxy.port, "GET", uri)
    assert response.status in (301, 302), response.body[:200]
    location = response.header("Location")
    as_browser = unquote(location).replace("\\", "/")
    landed = urljoin("https://hub.example.org" + uri, as_browser)
    assert landed.startswith("https://hub.example.org/user/alice/"), location


def test_an_apps_own_link_to_another_site_is_its_business(start_proxy):
    proxy = start_proxy()
    response = proxy.get("redirect?to=https://other.example.org/x")
    assert response.header("Location") == "https://other.example.org/x"


def test_without_auth_a_cross_site_form_post_is_refused(start_proxy):
    """Finding 5: with --authtype none, another site's page must not drive the app."""
    proxy = start_proxy()
    refused = proxy.request(
        "POST",
        "echo",
        body=b"a=1",
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert refused.status == 403
    # A cross-site <img> too (finding 8's rule, which holds for the app's own cookies here).
    image = proxy.get("echo", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
    assert image.status == 403
    # curl and scripts (no Origin, no Sec-Fetch-*) and the app's own pages keep working.
    assert proxy.request("POST", "echo", body=b"a=1").status == 200
    own = proxy.request(
        "POST",
        "echo",
        body=b"a=1",
        headers={
            "Origin": f"http://127.0.0.1:{proxy.port}",
            "Sec-Fetch-Site": "same-origin",
            "Referer": f"http://127.0.0.1:{proxy.port}{PREFIX}page",
        },
    )
    assert own.status == 200
    # No shared origin here: a same-origin post whose page sends no Referer (Referrer-Policy:
    # no-referrer, as helmet sets it) is the app's own.
    no_referrer = proxy.request(
        "POST",
        "echo",
        body=b"a=1",
        headers={"Origin": f"http://127.0.0.1:{proxy.port}", "Sec-Fetch-Site": "same-origin"},
    )
    assert no_referrer.status == 200
    proxy.wait_log("app got POST /echo", count=3)
    assert proxy.log().count("app got POST /echo") == 3


def test_without_auth_dns_rebinding_is_refused(start_proxy):
    """Finding 5: a page on evil.example whose name resolves to 127.0.0.1 is not this server."""
    proxy = start_proxy(["--allow-host", "box.example.lan"])
    host = f"evil.example:{proxy.port}"
    rebinding = {"Host": host, "Origin": f"http://{host}"}
    assert asyncio.run(ws_try(f"ws://127.0.0.1:{proxy.port}{PREFIX}ws", rebinding)) == "refused:403"
    assert proxy.get("echo", headers={"Host": host}).status == 403
    post = proxy.request("POST", "echo", body=b"x", headers=rebinding)
    assert post.status == 403
    # Loopback names, and names the admin added, are fine.
    for ok in (f"localhost:{proxy.port}", f"127.0.0.1:{proxy.port}", "box.example.lan"):
        assert proxy.get("echo", headers={"Host": ok}).status == 200, ok
    assert "app got GET /ws" not in proxy.log()


def _raw_handshake(port: int, headers: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {PREFIX}ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"{headers}\r\n".encode()
        )
        return sock.recv(4096)


def test_a_bad_websocket_handshake_never_opens_the_apps_websocket(start_proxy):
    """Finding 6: validate the client's handshake before the app's websocket is opened."""
    proxy = start_proxy()
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    answers = [
        _raw_handshake(proxy.port, f"Connection: close\r\nSec-WebSocket-Version: 13\r\n{key}"),
        _raw_handshake(proxy.port, f"Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{key}"),
        _raw_handshake(proxy.port, "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
    ]
    assert [a.split(b" ", 2)[1] for a in answers] == [b"400", b"426", b"400"]
    assert b"sec-websocket-version: 13" in answers[1].lower()
    assert proxy.get("ws-open").json() == {"open": 0}
    assert "app got GET /ws " not in proxy.log()


def test_a_client_gone_before_the_handshake_ends_leaves_no_app_websocket(start_proxy):
    """Finding 6: a client that leaves while the app starts must not leave an app websocket."""
    proxy = start_proxy(
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "1.5"], wait="listening"
    )
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(
            f"GET {PREFIX}ws HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        sock.close()
    proxy.wait_ready()
    # Every handshake that reached the app is closed again soon after.
    proxy.wait_log("app got GET /ws")  # the proxy did open the app's side for them...
    wait_for(
        lambda: proxy.get("ws-open").json() == {"open": 0},
        timeout=10,
        what="the app's websockets to be closed",
    )


def test_hub_tokens_and_login_codes_are_scrubbed_from_the_log(start_proxy):
    """Finding 7: `?token=` authenticates; it must not sit in a log file (every access line
    at INFO, with --log-requests: a redirect's too)."""
    oauth_proxy = start_proxy(["--log-requests"], authtype="oauth", env=hub_env(), wait="listening")
    oauth_proxy.wait_log("The app is ready")
    secret = "s3cr3t" * 6
    request(oauth_proxy.port, "GET", f"{PREFIX}echo?token={secret}&x=1")
    request(oauth_proxy.port, "GET", f"{PREFIX}oauth_callback?code={secret}&state=abc")
    oauth_proxy.wait_log("oauth_callback")
    oauth_proxy.wait_log("echo?token=[secret]&x=1")
    assert secret not in oauth_proxy.log()


def test_hub_cookies_never_pass_either_way_without_auth(start_proxy):
    """Finding 11: the hub's cookies are not the app's to read or to set."""
    proxy = start_proxy()
    seen = proxy.get(
        "echo", headers={"Cookie": "jupyterhub-session-id=abc; app=kept; jupyterhub-hub-login=x"}
    ).json()
    cookies = [v for k, v in seen["headers"] if k.lower() == "cookie"]
    assert cookies == ["app=kept"]
    response = proxy.get("set-cookie?name=jupyterhub-session-id")
    assert response.status == 200
    assert not response.header_all("Set-Cookie")
    assert proxy.get("set-cookie?name=mine").header("Set-Cookie").startswith("mine=1")


def test_hundreds_of_idle_and_slow_clients_do_not_lock_the_owner_out(start_proxy):
    """Finding 12: with a common soft limit of 1024 open files, 1,100 connections that send a
    few header bytes and stop must not take the descriptor the owner's next request needs."""
    proxy = start_proxy(launcher=["sh", "-c", 'ulimit -S -n 1024 && exec "$@"', "sh"])
    held = []
    try:
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(b"GET " + PREFIX.encode() + b"echo HTTP/1.1\r\nHost: 1")
            held.append(sock)
        response = proxy.get("echo", timeout=20)
        assert response.status == 200
    finally:
        for sock in held:
            sock.close()
    assert proxy.process.poll() is None


@pytest.mark.parametrize(
    "bad",
    [
        # a config callable that gives a list where a dict belongs
        "environment",
        # a socket path that cannot be removed or bound (a directory stands there)
        "unix_socket",
    ],
)
def test_an_unexpected_start_error_ends_in_the_failed_state(start_proxy, tmp_path, bad):
    """Finding 13: never a lifecycle task that died with the state stuck on 'starting'."""
    if bad == "environment":
        config = tmp_path / "config.py"
        config.write_text(
            "c.ServerProxy.servers = {'app': {'command': "
            f"[{sys.executable!r}, {ECHO_APP!r}, '{{port}}'], "
            "'environment': lambda port: ['not', 'a', 'dict']}}\n"
        )
        port = free_port()
        proxy = start_proxy(
            raw_argv=["--authtype", "none", "--port", str(port), "--config", str(config)],
            port=port,
            wait="listening",
        )
    else:
        (tmp_path / "sockdir").mkdir()
        proxy = start_proxy([f"--unix-socket={tmp_path / 'sockdir'}"], wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the failed state")
    status = proxy.status()
    assert "could not be started" in status["reason"]
    if bad == "environment":
        assert "environment must be a dict" in status["reason"]
    page = proxy.get("x", headers={"Accept": "text/html"})
    assert page.status == 503 and b"could not be started" in page.body


def test_anonymous_state_for_logins_is_bounded(oauth_proxy):
    """Finding 14: each anonymous visit stores its URL for the login; 300 long ones must not
    grow the proxy by the 17 MB they used to."""
    long_query = "q=" + "a" * 60000
    for _ in range(20):  # warm up, so that first-use allocations do not count
        request(oauth_proxy.port, "GET", f"{PREFIX}x?{long_query}", headers={"Accept": "text/html"})
    before = rss_kib(oauth_proxy.pid)
    for _ in range(300):
        response = request(
            oauth_proxy.port, "GET", f"{PREFIX}x?{long_query}", headers={"Accept": "text/html"}
        )
        assert response.status == 302
    grown = (rss_kib(oauth_proxy.pid) - before) / 1024
    assert grown < 8, f"the proxy grew by {grown:.1f} MiB"


@pytest.mark.parametrize(
    "headers, status",
    [
        ({}, 302),  # requests, curl -L, wget
        ({"Accept": "*/*"}, 302),
        ({"Accept": "text/html"}, 302),
        ({"Accept": "application/json"}, 401),
        ({"Sec-Fetch-Mode": "cors"}, 401),
        ({"X-Requested-With": "XMLHttpRequest"}, 401),
    ],
)
def test_anonymous_clients_are_answered_like_jupyterhub_singleuser(oauth_proxy, headers, status):
    response = request(oauth_proxy.port, "GET", f"{PREFIX}echo", headers=headers)
    assert response.status == status
    if status == 302:
        assert "/hub/api/oauth2/authorize" in response.header("Location")
        assert re.search(r"[?&]state=", response.header("Location"))
    else:
        assert response.header("WWW-Authenticate").startswith("token")


def test_anonymous_websocket_gets_401(oauth_proxy):
    assert asyncio.run(ws_try(f"ws://127.0.0.1:{oauth_proxy.port}{PREFIX}ws", {})) == "refused:401"


def test_an_answer_given_before_the_request_is_read_says_the_connection_closes(oauth_proxy):
    """Tornado closes the connection after an answer given before it read the request (even one
    without a body). A keep-alive client such as the hub's proxy must be told, or it sends the
    next request into the closing socket and its user gets the hub proxy's 503."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", oauth_proxy.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", PREFIX + "echo")  # anonymous: sent to the login
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 302
            assert answer.getheader("Connection") == "close"
    finally:
        conn.close()
