"""Who may show the app in a frame (issue 18, item 8): `frame-ancestors 'self'` unless the app
decided, `--frame-ancestors SOURCES` to embed it in named sites, and a real browser that obeys.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from multidict import CIMultiDict

from browser import chromium_page, screenshot
from conftest import APPS, cli_error, request, run_cli
from jhsingle_native_proxy.framing import (
    names_frame_ancestors,
    policy_to_add,
    sources_problem,
)

HEADERS_APP = [sys.executable, str(APPS / "headers_app.py"), "{port}"]
CSP = "Content-Security-Policy"


# -- the rule ----------------------------------------------------------------------------------


def test_a_frame_ancestors_directive_is_found_in_any_spelling_and_policy():
    assert names_frame_ancestors("frame-ancestors 'none'")
    assert names_frame_ancestors("default-src 'self'; FRAME-ANCESTORS https://a.example")
    assert names_frame_ancestors("default-src 'self', frame-ancestors 'self'")  # two policies
    assert names_frame_ancestors("  ;frame-ancestors\t'self';")
    assert not names_frame_ancestors("default-src 'self'; script-src frame-ancestors.example")
    assert not names_frame_ancestors("")


def test_the_policy_is_added_unless_the_app_decided():
    def added(*pairs):
        return policy_to_add(CIMultiDict(pairs), "'self'")

    assert added() == "frame-ancestors 'self'"
    assert added(("Content-Type", "text/html")) == "frame-ancestors 'self'"
    assert added((CSP, "default-src 'self'")) == "frame-ancestors 'self'"
    assert added((CSP, "default-src 'self'"), (CSP.lower(), "frame-ancestors 'none'")) is None
    assert added(("x-frame-options", "SAMEORIGIN")) is None
    # Report-only policies enforce nothing: ours is still added.
    assert added((CSP + "-Report-Only", "frame-ancestors 'none'")) == "frame-ancestors 'self'"
    assert policy_to_add(CIMultiDict(), "'self' https://lms.example.org") == (
        "frame-ancestors 'self' https://lms.example.org"
    )


@pytest.mark.parametrize(
    "sources",
    ["'self'", "'none'", "'SELF' https://lms.example.org", "https:", "*.example.org:443/path"],
)
def test_source_lists_that_are_accepted(sources):
    assert sources_problem(sources) is None


@pytest.mark.parametrize(
    ("sources", "said"),
    [
        ("", "at least one source"),
        ("'self'; script-src *", "no ';' or ','"),
        ("'self', https://a.example", "no ';' or ','"),
        ("'self'\r\nSet-Cookie: a=1", "no line breaks"),
        ("self", "with its quotes: 'self'"),
        ("'unsafe-inline'", "is not a source"),
        ("https://a.example'", "is not a source"),
    ],
)
def test_source_lists_that_are_refused(sources, said):
    assert said in (sources_problem(sources) or "")


@pytest.mark.parametrize("sources", ["'self'; script-src *", "self", "'self'\nx"])
def test_the_command_line_refuses_a_bad_source_list_in_clicks_shape(sources):
    result = run_cli(["--authtype", "none", "--frame-ancestors", sources, "--", "true"])
    message = cli_error(result.stderr, result.returncode)
    assert result.returncode == 2 and message.startswith("--frame-ancestors"), message


# -- through the proxy -------------------------------------------------------------------------


def csp_of(proxy, *headers: str) -> list[str]:
    query = "&".join("h=" + quote(h) for h in headers)
    return proxy.get("page?" + query).header_all(CSP)


def test_the_apps_responses_carry_frame_ancestors_unless_it_decided(start_proxy):
    proxy = start_proxy(app=HEADERS_APP)
    assert csp_of(proxy) == ["frame-ancestors 'self'"]
    # The app's own policy is kept whole; ours comes beside it (policies intersect).
    assert csp_of(proxy, f"{CSP}: default-src 'self'") == [
        "default-src 'self'",
        "frame-ancestors 'self'",
    ]
    assert csp_of(proxy, f"{CSP}: frame-ancestors https://a.example") == [
        "frame-ancestors https://a.example"
    ]
    answer = proxy.get("page?h=" + quote("X-Frame-Options: DENY"))
    assert answer.header_all(CSP) == [] and answer.header("X-Frame-Options") == "DENY"
    # Our own pages follow the same rule.
    ours = request(proxy.port, "GET", "/not-under-the-prefix", headers={"Accept": "text/html"})
    assert ours.status == 404 and ours.header_all(CSP) == ["frame-ancestors 'self'"]


def test_frame_ancestors_names_the_sites_that_may_embed_the_app(start_proxy):
    sources = "'self' https://lms.example.org"
    proxy = start_proxy(["--frame-ancestors", sources], app=HEADERS_APP)
    assert csp_of(proxy) == [f"frame-ancestors {sources}"]
    ours = request(proxy.port, "GET", "/not-under-the-prefix", headers={"Accept": "text/html"})
    assert ours.status == 404 and ours.header_all(CSP) == [f"frame-ancestors {sources}"]
    assert proxy.get("_jhsnp/").header_all(CSP) == ["frame-ancestors 'none'"]  # the console


# -- in a browser: a page on another site frames the app ---------------------------------------


class _Embedding(BaseHTTPRequestHandler):
    """Another site's page, with the app in an iframe."""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>another site</title></head>'
            f'<body><iframe id="app" src="{self.server.app_url}"'  # type: ignore[attr-defined]
            " onload=\"document.title = 'frame loaded'\"></iframe></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _frame_of(page, site: str):
    """Load `site`'s page; its frame once loaded: the app, or what the browser shows instead."""
    page.goto(site)
    page.wait_for_function("document.title === 'frame loaded'", timeout=20_000)
    [frame] = page.main_frame.child_frames
    return frame


def test_a_browser_shows_the_app_in_another_sites_frame_only_when_allowed(start_proxy):
    site = ThreadingHTTPServer(("127.0.0.1", 0), _Embedding)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    # `localhost` and `127.0.0.1` are different sites to the browser.
    site_url = f"http://localhost:{site.server_address[1]}"
    try:
        allowed = start_proxy(["--frame-ancestors", site_url], app=HEADERS_APP)
        refused = start_proxy(app=HEADERS_APP)
        with chromium_page() as page:
            site.app_url = allowed.url("page")  # type: ignore[attr-defined]
            frame = _frame_of(page, site_url + "/")
            assert frame.url == allowed.url("page")
            assert frame.locator("#app-text").text_content() == "app content"
            screenshot(page, "framed-allowed")
            site.app_url = refused.url("page")  # type: ignore[attr-defined]
            frame = _frame_of(page, site_url + "/")
            screenshot(page, "framed-refused")
            # Chromium shows its own error page in the frame instead of the app's.
            assert frame.url.startswith("chrome-error://"), frame.url
            assert frame.locator("#app-text").count() == 0
            assert "app content" not in frame.locator("body").inner_text()
            # The app itself still answered: it is the browser that would not show it.
            assert refused.get("page").status == 200
    finally:
        site.shutdown()
        site.server_close()
        thread.join(10)


# -- an X-Frame-Options that browsers ignore is no decision ------------------------------------


@pytest.mark.parametrize(
    ("value", "decided"),
    [
        ("DENY", True),
        (" sameorigin ", True),
        ("ALLOWALL", True),  # the app says so: any site may
        ("SAMEORIGIN, ALLOW-FROM https://a.example", True),  # a conflict: browsers refuse
        ("ALLOW-FROM https://a.example", False),  # no current browser supports it
        ("", False),
        ("none", False),
    ],
)
def test_only_an_x_frame_options_that_browsers_obey_counts_as_the_apps_decision(value, decided):
    added = policy_to_add(CIMultiDict([("X-Frame-Options", value)]), "'self'")
    assert (added is None) is decided, (value, added)


def test_an_app_with_an_ignored_x_frame_options_is_not_left_framable(start_proxy):
    """`X-Frame-Options: ALLOW-FROM https://lms.example` (or an empty or unknown value) is
    ignored by browsers, which then let any site frame the page: it got no policy of ours
    either, so any site could frame the app."""
    proxy = start_proxy(app=HEADERS_APP)
    for value in ("ALLOW-FROM https://lms.example", "", "ALLOW"):
        answer = proxy.get("page?h=" + quote(f"X-Frame-Options: {value}"))
        assert answer.header_all(CSP) == ["frame-ancestors 'self'"], value
