"""examples/dash.sh, and `--app dash` with its app file, in Chromium under /user/test/:
the page renders and a callback round-trips,
and the page asks nothing of any host but the proxy."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from example_support import HOW, PREFIX, require, running

pytestmark = pytest.mark.examples


@HOW
def test_dash_example_renders_and_runs_a_callback(tmp_path, how):
    require("dash")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    with running(how, "dash.sh", tmp_path) as proxy, chromium_page() as page:
        hosts = set()
        page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
        page.goto(proxy.url())
        # Dash's React renderer has drawn the layout, and the first callback has answered.
        heading = page.get_by_role("heading", name="Dash behind jhsingle-native-proxy")
        expect(heading).to_be_visible(timeout=30000)
        greeting = page.locator("#greeting")
        expect(greeting).to_have_text("Hello, world! (5 characters)", timeout=30000)
        # A new value goes to the server's callback (a POST under the prefix) and back.
        # (Dash 4 adds a query string to that URL.)
        callback_path = f"{PREFIX}_dash-update-component"
        with page.expect_response(
            lambda r: urlsplit(r.url).path == callback_path, timeout=30000
        ) as update:
            page.fill("#name", "proxy user")
        assert update.value.status == 200
        assert update.value.request.method == "POST"
        expect(greeting).to_have_text("Hello, proxy user! (10 characters)", timeout=30000)
        assert page.title() == "Dash demo"
        screenshot(page, f"example-dash-{how}")
        assert hosts == {f"127.0.0.1:{proxy.port}"}, f"the page reached out to {hosts}"
