"""--rewrite-urls with real apps that write root-absolute URLs (issue 22), through the real CLI,
in Chromium (tests/browser.py) where a page must run: every request stays under the prefix."""

from __future__ import annotations

import gzip
import importlib.util
import socket
import sys
from urllib.parse import urlsplit

import pytest

from conftest import APPS, request
from jhsingle_native_proxy.proxy.rewrite_response import script_version

PREFIX = "/user/alice/"
ROOT_APP = [sys.executable, str(APPS / "root_absolute_app.py"), "{port}"]
NAVIGATION = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
SCRIPT_TAG = f'<script src="{PREFIX}_jhsnp/rewrite.js?v={script_version()}"'


def test_off_the_page_passes_byte_for_byte(start_proxy):
    """Without the option nothing changes: the app's bytes, length and ETag."""
    proxy = start_proxy(app=ROOT_APP)
    response = proxy.get("", headers=NAVIGATION)
    assert response.status == 200
    assert b'<link rel="stylesheet" href="/static/style.css">' in response.body
    assert b"_jhsnp/rewrite.js" not in response.body
    assert response.header("Content-Length") == str(len(response.body))
    etag = response.header("ETag")
    assert etag and not etag.startswith("W/")
    assert proxy.get("static/style.css").body.startswith(b'@import "/static/more.css";')


def test_on_pages_and_stylesheets_are_rewritten_with_our_etag(start_proxy):
    proxy = start_proxy(["--rewrite-urls"], app=ROOT_APP)
    response = proxy.get("", headers={**NAVIGATION, "Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.header("Content-Length") is None
    assert response.header("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in response.header("Vary")
    page = gzip.decompress(response.body).decode()
    assert SCRIPT_TAG in page
    assert f'href="{PREFIX}static/style.css"' in page
    assert 'href="/static/' not in page
    etag = response.header("ETag")
    assert etag.startswith('W/"') and script_version() in etag
    # The app validates its own tag: 304, and the client keeps ours.
    again = proxy.get("", headers={**NAVIGATION, "If-None-Match": etag})
    assert again.status == 304 and again.header("ETag") == etag
    css = proxy.get("static/style.css", headers={"Accept": "text/css,*/*;q=0.1"})
    assert css.body.decode().startswith(f'@import "{PREFIX}static/more.css";')
    # Scripts and JSON pass as they are.
    script = proxy.get("static/app.js")
    assert b'fetch("/api/x")' in script.body
    assert script.header("Content-Length") == str(len(script.body))
    # HEAD: the headers of a GET, no body.
    head = proxy.request("HEAD", "", headers=NAVIGATION)
    assert head.status == 200 and head.body == b"" and head.header("ETag") == etag


def test_on_the_script_is_served_with_a_long_cache(start_proxy):
    proxy = start_proxy(["--rewrite-urls"], app=ROOT_APP)
    script = proxy.get(f"_jhsnp/rewrite.js?v={script_version()}")
    assert script.status == 200
    assert script.header("Content-Type").startswith("text/javascript")
    assert "immutable" in script.header("Cache-Control")
    assert b"XMLHttpRequest.prototype.open" in script.body
    assert proxy.get("_jhsnp/rewrite.js?v=old").header("Cache-Control") == "no-cache"


def test_on_a_compressed_page_is_decoded_for_a_client_without_gzip(start_proxy):
    """The app gzips whatever it is asked; a client that takes no gzip gets the page plain."""
    proxy = start_proxy(["--rewrite-urls"], app=[*ROOT_APP, "--gzip"])
    response = proxy.get("", headers={**NAVIGATION, "Accept-Encoding": "br"})
    assert response.status == 200 and response.header("Content-Encoding") is None
    assert SCRIPT_TAG.encode() in response.body
    assert f'href="{PREFIX}static/style.css"'.encode() in response.body


@pytest.mark.skipif(importlib.util.find_spec("brotli") is None, reason="no brotli decoder")
def test_on_a_brotli_page_is_decoded_and_rewritten(start_proxy):
    proxy = start_proxy(["--rewrite-urls"], app=ROOT_APP)
    response = proxy.get("br-page", headers={"Accept": "*/*", "Accept-Encoding": "gzip, br"})
    assert response.status == 200 and response.header("Content-Encoding") == "gzip"
    page = gzip.decompress(response.body)
    assert SCRIPT_TAG.encode() in page and f'src="{PREFIX}static/a.png"'.encode() in page


def test_on_a_corrupt_compressed_page_cuts_the_connection(start_proxy):
    """As an app that broke off: the status line is gone, so the client sees a truncation."""
    proxy = start_proxy(["--rewrite-urls"], app=ROOT_APP)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {PREFIX}broken-gzip HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert not answer.endswith(b"0\r\n\r\n")  # no last chunk
    proxy.wait_log("broke off the response")
    assert "Traceback" not in proxy.log()
    assert request(proxy.port, "GET", PREFIX + "api/xhr").status == 200


# -- in Chromium ------------------------------------------------------------------------------

DONE = """() => { const d = document.body && document.body.dataset;
  return d && d.fetch && d.cookie && d.fetchAbsolute && d.xhr && d.ws && d.events && d.beacon
    && d.scriptImg && d.late && d.redirect && d.inline; }"""


def _error(message) -> bool:
    """A console error, but for the browser's own `/favicon.ico` at the origin's root: that one
    is the hub's (which serves it), never a page's request, and here nothing answers it."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


def _watched(page, proxy):
    """Every request and websocket the page makes, and its console errors."""
    seen: dict[str, list[str]] = {"requests": [], "websockets": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("websocket", lambda w: seen["websockets"].append(w.url))
    page.on("console", lambda m: _error(m) and seen["errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    return seen


def _all_under_prefix(seen, proxy) -> None:
    outside = [
        url
        for url in seen["requests"] + seen["websockets"]
        if urlsplit(url).netloc != f"127.0.0.1:{proxy.port}"
        or not urlsplit(url).path.startswith(PREFIX)
    ]
    assert not outside, f"requests outside the prefix: {outside}"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_every_pattern_stays_under_the_prefix_in_chromium(start_proxy, compressed):
    from browser import chromium_page

    app = [*ROOT_APP, "--gzip"] if compressed else ROOT_APP
    proxy = start_proxy(["--rewrite-urls"], app=app)
    with chromium_page() as page:
        seen = _watched(page, proxy)
        page.goto(proxy.url())
        page.wait_for_function(DONE, timeout=20000)
        data = page.evaluate("() => Object.assign({}, document.body.dataset)")
        assert data["fetch"] == "ok" and data["fetchAbsolute"] == "200" and data["xhr"] == "ok"
        assert data["cookie"] == "1"  # its path put under the prefix, and sent back
        assert data["ws"] == "echo:ping" and data["events"] == "one,two"
        assert data["beacon"] == "true" and data["scriptImg"] == "loaded"
        assert data["late"] == "ran" and data["redirect"] == proxy.url("page2")
        # CSS: the stylesheet, its @import and its url() all came through.
        assert (
            page.evaluate("() => getComputedStyle(document.querySelector('a')).color")
            == "rgb(0, 128, 0)"
        )
        page.click("#link")
        page.wait_for_url(proxy.url("page2"))
        page.go_back()
        page.wait_for_function(DONE, timeout=20000)
        page.click("#submit")
        page.wait_for_url(proxy.url("page2"))
        page.go_back()
        page.click("#go")
        page.wait_for_url(proxy.url("page2"))
        assert page.locator("#two").text_content() == "page two"
    beacons = proxy.get("api/beacons").json()["beacons"]
    assert beacons and set(beacons) == {"hello"}
    _all_under_prefix(seen, proxy)
    paths = {urlsplit(u).path for u in seen["requests"]}
    for path in ("static/more.css", "static/bg.png", "static/b.png", "static/inline.png",
                 "static/style-attr.png", "static/icon.png", "events", "beacon"):  # fmt: skip
        assert PREFIX + path in paths, path
    assert seen["errors"] == []


def test_a_nonce_only_policy_lets_our_script_run(start_proxy):
    from browser import chromium_page

    policy = "script-src 'nonce-NONCE' 'strict-dynamic'"
    proxy = start_proxy(["--rewrite-urls"], app=[*ROOT_APP, "--csp", policy])
    with chromium_page() as page:
        seen = _watched(page, proxy)
        page.goto(proxy.url())
        page.wait_for_function(DONE, timeout=20000)
        assert page.evaluate("() => document.body.dataset.fetch") == "ok"
        assert page.evaluate("() => window.__jhsnpRewriteUrls") == PREFIX
    _all_under_prefix(seen, proxy)
    assert seen["errors"] == []


def test_the_hubs_own_pages_stay_as_they_are(start_proxy):
    """Behind a hub, `/hub/...` is JupyterHub's (its home, logout, API), not the app's: neither
    the page's markup nor what its scripts build is put under the prefix."""
    from browser import chromium_page

    hub = {"JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api", "JUPYTERHUB_BASE_URL": "/"}
    proxy = start_proxy(["--rewrite-urls"], app=ROOT_APP, env=hub)
    page = proxy.get("hub-links", headers=NAVIGATION).body
    assert b'href="/hub/home"' in page and b"url(/hub/logo)" in page
    assert f'href="{PREFIX}page2"'.encode() in page and b'data-keep="/hub/"' in page
    with chromium_page() as browser_page:
        browser_page.goto(proxy.url("hub-links"))
        built = browser_page.evaluate("""() => {
            const a = document.createElement("a"), b = document.createElement("a");
            a.setAttribute("href", "/hub/logout"); b.href = "/api/x";
            return [a.getAttribute("href"), new URL(b.href).pathname];
        }""")
        assert built == ["/hub/logout", PREFIX + "api/x"]


def test_a_flask_app_with_hand_written_static_urls(start_proxy):
    from browser import chromium_page

    proxy = start_proxy(
        ["--rewrite-urls"], app=[sys.executable, str(APPS / "flask_root_app.py"), "{port}"]
    )
    with chromium_page() as page:
        seen = _watched(page, proxy)
        page.goto(proxy.url())
        page.wait_for_function(
            "() => document.getElementById('data').textContent === 'data from Flask'",
            timeout=20000,
        )
        color = page.evaluate("() => getComputedStyle(document.querySelector('h1')).color")
        assert color == "rgb(0, 128, 0)"
    _all_under_prefix(seen, proxy)
    assert seen["errors"] == []


def test_a_repositorys_jhsnp_toml_turns_it_on(start_proxy, tmp_path):
    """`rewrite_urls = true` in jhsnp.toml: the app's own setting, read after the checkout."""
    import json

    from test_repository_app import Repository, start_repo

    command = json.dumps([sys.executable, str(APPS / "root_absolute_app.py"), "{port}"])
    repo = Repository(
        tmp_path / "repo", {"jhsnp.toml": f"command = {command}\nrewrite_urls = true\n"}
    )
    proxy = start_repo(start_proxy, tmp_path, repo)
    page = proxy.get("", headers=NAVIGATION)
    assert page.status == 200 and page.header("Content-Length") is None
    assert script_version() in page.header("ETag")
    assert SCRIPT_TAG.encode() in page.body


@pytest.mark.examples
def test_plain_bokeh_serve_without_prefix_or_absolute_url(start_proxy):
    """`bokeh serve` told nothing of the prefix (no --prefix, no --absolute-url): its page links
    BokehJS at /static/ and opens its websocket at ws://HOST/bokeh_app/ws; with --rewrite-urls
    the slider round trip to the server's Python callback works behind the prefix."""
    from example_support import EXAMPLES, require
    from playwright.sync_api import expect

    from browser import chromium_page

    require("bokeh")
    bokeh = [sys.executable, "-m", "bokeh", "serve", str(EXAMPLES / "bokeh_app.py"), "--address",
             "127.0.0.1", "--port", "{port}", "--allow-websocket-origin=*"]  # fmt: skip
    proxy = start_proxy(["--rewrite-urls", "--ready-timeout", "60"], app=bokeh, wait=None)
    proxy.wait_ready(timeout=60)
    with chromium_page() as page:
        seen = _watched(page, proxy)
        with page.expect_websocket(timeout=30000) as websocket:
            page.goto(proxy.url())
        assert page.url == proxy.url("bokeh_app")
        assert urlsplit(websocket.value.url).path == f"{PREFIX}bokeh_app/ws"
        expect(page.get_by_text("Move the slider.")).to_be_visible(timeout=30000)
        page.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        expect(page.get_by_text("The server drew 4 stars: ★★★★")).to_be_visible(timeout=30000)
        assert not websocket.value.is_closed()
    _all_under_prefix(seen, proxy)
    assert seen["errors"] == []
