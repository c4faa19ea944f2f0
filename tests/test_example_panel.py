"""examples/panel.sh, and `--app panel` with its app file, in Chromium under /user/test/:
the app renders and a slider move
round-trips over its websocket to the Python function bound to it on the server; the page
asks nothing of any host but the proxy."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from example_support import HOW, PREFIX, require, running

pytestmark = pytest.mark.examples


@HOW
def test_panel_example_renders_and_runs_a_server_callback(tmp_path, how):
    require("panel")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    with running(how, "panel.sh", tmp_path) as proxy, chromium_page() as page:
        hosts = set()
        # (Panel also loads a blob: URL, made in the page; it names the page's origin.)
        page.on("request", lambda r: hosts.add(urlsplit(r.url.removeprefix("blob:")).netloc))
        with page.expect_websocket(timeout=30000) as websocket:
            page.goto(proxy.url())
        socket = websocket.value
        # --index: the app is at the prefix itself; its websocket is found from that address.
        assert page.url == proxy.url()
        assert urlsplit(socket.url).path == f"{PREFIX}ws"
        expect(page.get_by_text("Panel behind jhsingle-native-proxy")).to_be_visible(timeout=30000)
        expect(page.get_by_text("★★★", exact=True)).to_be_visible(timeout=30000)

        # One step right: the new value goes to the server, where pn.bind calls stars(4).
        page.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        expect(page.get_by_text("★★★★", exact=True)).to_be_visible(timeout=30000)
        assert not socket.is_closed()
        assert page.title() == "Panel demo"
        screenshot(page, f"example-panel-{how}")
        assert hosts == {f"127.0.0.1:{proxy.port}"}, f"the page reached out to {hosts}"
