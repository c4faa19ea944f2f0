"""HTTP through the proxy: prefix routing, byte-exact paths, headers, streaming, errors."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import re
import sys
import threading
from urllib.parse import quote

import pytest

from conftest import APPS, peak_rss_kib, request, wait_for

MiB = 1024 * 1024


@pytest.fixture
def proxy(start_proxy):
    return start_proxy()


def app_received(proxy, method: str, uri: str) -> bool:
    return f"app got {method} {uri}\n" in proxy.log()


def test_prefix_without_slash_redirects_keeping_the_query(proxy):
    response = request(proxy.port, "GET", "/user/alice?x=1&y")
    assert response.status == 302
    assert response.header("Location") == "/user/alice/?x=1&y"


def test_percent_encoded_at_in_prefix_redirects_to_canonical(start_proxy):
    proxy = start_proxy(prefix="/user/a@b.org/")
    response = request(proxy.port, "GET", "/user/a%40b.org/page?q=1")
    assert response.status == 302
    assert response.header("Location") == "/user/a@b.org/page?q=1"
    assert request(proxy.port, "GET", "/user/a@b.org/echo").status == 200


def test_paths_outside_the_prefix_are_404_and_never_reach_the_app(start_proxy):
    # The readiness probe asks for a path of its own, so a `GET /` in the app's log can only
    # come from a client's request.
    proxy = start_proxy(["--ready-check-path", "/ready-probe"])
    outside = ("/", "/user/bob/echo", "/user/alicex/echo", "/hub/api")
    for path in outside:
        response = request(proxy.port, "GET", path)
        assert response.status == 404, path
        assert response.header("X-JupyterHub-Version")
    proxy.get("echo")  # a request that does reach it, as a marker in the log
    proxy.wait_log("app got GET /echo\n")
    # The app's output is logged in order: whatever it got before the marker is in the log now,
    # and it got nothing but the probe and the marker.
    got = re.findall(r"app got (.*)$", proxy.log(), re.MULTILINE)
    assert got == ["GET /ready-probe", "GET /echo"]


@pytest.mark.parametrize(
    "path",
    [
        "a%2Fb/c",
        "file%23frag?x=%3F&x=2&flag",
        "q?a=1&a=2&a=3",
        "?flag",
        "sp%20ace/%E2%9C%93?k=%2B+v",
        "dots/./../x",
    ],
)
def test_path_and_query_reach_the_app_byte_exact(proxy, path):
    response = proxy.get(path)
    assert response.status == 200
    assert response.json()["uri"] == "/" + path


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_every_method_is_proxied(proxy, method):
    body = b"payload" if method in ("POST", "PUT", "PATCH", "PROPFIND") else None
    response = proxy.request(method, "echo", body=body)
    assert response.status == 200
    seen = response.json()
    assert seen["method"] == method
    assert seen["body_length"] == (len(body) if body else 0)


def test_head_gets_headers_without_a_body(proxy):
    response = proxy.request("HEAD", "echo")
    assert response.status == 200
    assert response.body == b""


def test_request_headers_hop_by_hop_dropped_forwarded_set_host_kept(start_proxy):
    proxy = start_proxy(["--allow-host", "hub.example.org"])
    response = proxy.get(
        "echo",
        headers={
            "Host": "hub.example.org",
            "Connection": "keep-alive, X-Private",
            "X-Private": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eA==",
            "X-Forwarded-For": "10.0.0.9",
            "X-Forwarded-Prefix": "/forged",
            "X-Custom": "kept",
        },
    )
    seen = {k.lower(): v for k, v in response.json()["headers"]}
    for gone in ("x-private", "keep-alive", "te", "proxy-authorization", "connection"):
        assert gone not in seen, gone
    assert seen["host"] == "hub.example.org"
    assert seen["x-custom"] == "kept"
    assert seen["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "hub.example.org"
    assert seen["x-forwarded-prefix"] == "/user/alice"


def test_response_hop_by_hop_dropped_and_jupyterhub_version_added(proxy):
    response = proxy.get("hop")
    assert response.status == 200
    names = {k.lower() for k, _ in response.headers}
    assert "x-private" not in names
    assert "keep-alive" not in names
    assert "proxy-authenticate" not in names
    assert response.header("X-Kept") == "yes"
    assert response.header("X-JupyterHub-Version")


def test_repeated_set_cookie_headers_all_arrive(proxy):
    response = proxy.get("cookies")
    # Path=/ is the app's root, which is the prefix (see test_security_wire.py).
    assert response.header_all("Set-Cookie") == ["a=1; Path=/user/alice/", "b=2; Path=/user/alice/"]


def test_content_encoding_passes_through_untouched(proxy):
    response = proxy.get("gzip", headers={"Accept-Encoding": "gzip"})
    assert response.header("Content-Encoding") == "gzip"
    assert gzip.decompress(response.body) == b"hello compressed world"


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/login?next=%2Fx", "/user/alice/login?next=%2Fx"),
        ("/user/alice/tree", "/user/alice/tree"),
        ("relative/path", "relative/path"),
        ("https://elsewhere.example.org/x", "https://elsewhere.example.org/x"),
    ],
)
def test_redirect_location_gets_the_prefix(proxy, target, expected):
    response = proxy.get("redirect?to=" + quote(target, safe=""))
    assert response.status == 302
    assert response.header("Location") == expected


def test_redirect_to_the_apps_own_address_becomes_a_prefixed_path(proxy):
    app_port = re.search(r"echo app listening on (\d+)", proxy.log()).group(1)
    response = proxy.get(f"redirect?to=http://127.0.0.1:{app_port}/next%3Fa=1")
    assert response.header("Location") == "/user/alice/next?a=1"


def test_connections_to_the_app_are_reused(proxy):
    ports = {proxy.get("echo").json()["peer_port"] for _ in range(20)}
    # One request at a time: a pooled keep-alive client needs one connection, not twenty.
    assert len(ports) == 1


def test_server_sent_events_arrive_as_sent_whatever_the_accept_header(proxy):
    for accept in ("text/event-stream", "text/html,application/xhtml+xml,*/*"):
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
        try:
            conn.request("GET", proxy.prefix + "gated-sse", headers={"Accept": accept})
            response = conn.getresponse()
            assert response.status == 200
            # The app holds the second event until /release: the first must arrive on its own.
            assert response.readline() == b"data: first\n"
            assert response.readline() == b"\n"
            assert proxy.get("release").status == 200
            assert response.read() == b"data: second\n\n"
        finally:
            conn.close()


def test_256_mib_stream_both_ways_without_growing_memory(proxy):
    size = 256 * MiB
    baseline = peak_rss_kib(proxy.pid)

    # Upload, with a Content-Length the app sees unchanged, in 1 MiB pieces.
    piece = bytes(range(256)) * 4096
    expected = hashlib.sha256()
    for _ in range(size // len(piece)):
        expected.update(piece)

    def pieces():
        for _ in range(size // len(piece)):
            yield piece

    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
    conn.request(
        "POST", proxy.prefix + "upload", body=pieces(), headers={"Content-Length": str(size)}
    )
    answer = conn.getresponse()
    result = json.loads(answer.read())
    conn.close()
    assert result == {
        "bytes": size,
        "sha256": expected.hexdigest(),
        "content_length": str(size),
        "transfer_encoding": None,
    }

    # Upload again without a length (chunked).
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
    conn.request(
        "PUT",
        proxy.prefix + "upload",
        body=pieces(),
        encode_chunked=True,
        headers={"Transfer-Encoding": "chunked"},
    )
    result = json.loads(conn.getresponse().read())
    conn.close()
    assert result["bytes"] == size
    assert result["sha256"] == expected.hexdigest()

    # Download, read as it comes.
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
    conn.request("GET", proxy.prefix + f"download?n={size}")
    response = conn.getresponse()
    received = 0
    while chunk := response.read(MiB):
        received += len(chunk)
    conn.close()
    assert received == size

    grown_mib = (peak_rss_kib(proxy.pid) - baseline) / 1024
    assert grown_mib < 64, f"proxy peak memory grew by {grown_mib:.0f} MiB"


def test_app_refusing_connections_gives_a_502_page(proxy):
    assert proxy.get("close-listener").status == 200
    wait_for(
        lambda: proxy.get("echo", headers={"Accept": "text/html"}).status == 502,
        what="a 502 once the app stopped listening",
    )
    response = proxy.get("echo", headers={"Accept": "text/html"})
    assert b"502" in response.body and b"<html" in response.body
    assert b"Traceback" not in response.body


def test_slow_app_gives_504_but_long_streams_are_not_cut(start_proxy):
    proxy = start_proxy(["--request-timeout", "1"])
    response = proxy.get("slow?s=5")
    assert response.status == 504
    assert b"did not answer within 1 seconds" in response.body

    # A stream that outlives the timeout: the first event comes at once, the rest when released.
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
    try:
        conn.request("GET", proxy.prefix + "gated-sse")
        stream = conn.getresponse()
        assert stream.readline() == b"data: first\n"
        done = threading.Event()
        threading.Timer(2.0, done.set).start()  # outlive --request-timeout on purpose
        done.wait(5)
        assert proxy.get("release").status == 200
        assert stream.read().endswith(b"data: second\n\n")
    finally:
        conn.close()


def test_own_pages_have_no_traceback_even_with_debug(start_proxy):
    proxy = start_proxy(["--debug"])
    response = request(proxy.port, "GET", "/nowhere", headers={"Accept": "text/html"})
    assert response.status == 404
    assert b"<html" in response.body
    assert b"Traceback" not in response.body


def test_malformed_app_response_is_a_502_not_a_599(start_proxy, tmp_path):
    garbage = tmp_path / "garbage.py"
    garbage.write_text(
        "import socket, sys\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "ok = b'HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n'\n"
        "while True:\n"
        "    c, _ = s.accept(); data = c.recv(65536)\n"
        "    c.sendall(ok if data.startswith(b'GET / ') else b'NOT HTTP AT ALL\\r\\n\\r\\n')\n"
        "    c.close()\n"
    )
    proxy = start_proxy(app=[sys.executable, str(garbage), "{port}"])
    response = proxy.get("x")
    assert response.status == 502


def test_no_identity_is_forwarded_with_authtype_none(start_proxy):
    proxy = start_proxy(["--forward-user-info", "--query-user-info"])
    seen = proxy.get(
        "echo?CDSDASHBOARDS_JH_USER=forged&a=1",
        headers={"X-CDSDASHBOARDS-JH-USER": '{"name": "admin"}', "X_Cdsdashboards_Jh_User": "x"},
    ).json()
    assert seen["uri"] == "/echo?a=1"
    assert not [k for k, _ in seen["headers"] if "cdsdashboards" in k.lower()]


def test_an_apps_header_reaches_the_client_byte_for_byte_or_not_at_all(start_proxy):
    """Raw UTF-8 in an app's header value (a download's file name) is passed on as it was sent;
    a control character, which no header may hold, drops that header, not the answer (it was a
    500 for both)."""
    proxy = start_proxy(app=[sys.executable, str(APPS / "headers_app.py"), "{port}"])
    utf8 = proxy.get("x?h=" + quote('Content-Disposition:attachment; filename="café.csv"'))
    assert utf8.status == 200
    raw = utf8.header("Content-Disposition").encode("latin-1")
    assert raw == 'attachment; filename="café.csv"'.encode()
    control = proxy.get("x?h=" + quote("X-Odd:a\x0bb") + "&h=X-Fine:yes")
    assert control.status == 200 and control.header("X-Fine") == "yes"
    assert control.header("X-Odd") is None
    proxy.wait_log("header holds a control character")
