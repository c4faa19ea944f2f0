"""examples/bokeh.sh, and `--app bokeh` with its app file, in Chromium under /user/test/:
the app renders and a slider move
round-trips over its websocket to the Python callback on the server; the page asks nothing
of any host but the proxy."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from example_support import HOW, PREFIX, require, running

pytestmark = pytest.mark.examples


@HOW
def test_bokeh_example_renders_and_runs_a_server_callback(tmp_path, how):
    require("bokeh")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    with running(how, "bokeh.sh", tmp_path) as proxy, chromium_page() as page:
        hosts = set()
        page.on("request", lambda r: hosts.add(urlsplit(r.url.removeprefix("blob:")).netloc))
        with page.expect_websocket(timeout=30000) as websocket:
            page.goto(proxy.url())
        socket = websocket.value
        # The prefix redirects to the app, named after its file; everything stays under the
        # prefix (--prefix {base_url} with the proxy's --absolute-url).
        assert page.url == proxy.url("bokeh_app")
        assert urlsplit(socket.url).path == f"{PREFIX}bokeh_app/ws"
        # A Bokeh server page holds no document: BokehJS (from .../static/) fetches it over
        # the websocket, so this text shows only once both came through the proxy.
        expect(page.get_by_text("Bokeh behind jhsingle-native-proxy")).to_be_visible(timeout=30000)
        expect(page.get_by_text("Move the slider.")).to_be_visible(timeout=30000)

        # One step right: the new value goes to the server, whose callback writes the text.
        page.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        expect(page.get_by_text("The server drew 4 stars: ★★★★")).to_be_visible(timeout=30000)
        assert not socket.is_closed()
        assert page.title() == "Bokeh demo"
        screenshot(page, f"example-bokeh-{how}")
        assert hosts == {f"127.0.0.1:{proxy.port}"}, f"the page reached out to {hosts}"
