"""`--app shiny` with examples/shiny/app.R in Chromium under /user/test/: the app renders and a
slider move round-trips over Shiny's websocket to the R server, which renders the text; the
page asks nothing of any host but the proxy."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

import pytest
from example_support import EXAMPLES, PREFIX, preset_running, require_program

pytestmark = pytest.mark.examples


def test_shiny_preset_renders_and_runs_a_server_render(tmp_path):
    require_program("R")
    assert (
        subprocess.run(
            ["R", "--quiet", "--no-save", "-e", "library(shiny)"], capture_output=True
        ).returncode
        == 0
    ), "R has no shiny package (apt-get install r-cran-shiny)"
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    app = EXAMPLES / "shiny" / "app.R"
    with preset_running("shiny", app, tmp_path) as proxy, chromium_page() as page:
        hosts = set()
        page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
        with page.expect_websocket(timeout=30000) as websocket:
            page.goto(proxy.url())
        socket = websocket.value
        # Shiny's page finds its websocket from the browser's address, under the prefix.
        assert urlsplit(socket.url).path.startswith(PREFIX)
        expect(page.get_by_text("Shiny behind jhsingle-native-proxy")).to_be_visible(timeout=30000)
        drawn = page.locator("#drawn")
        expect(drawn).to_have_text("The server drew 3 stars: ★★★", timeout=30000)
        # A click at 3/4 of the slider's track (1 to 5) sets 4: the new value goes to R, whose
        # renderText sends the new text back.
        track = page.locator(".irs-line").bounding_box()
        page.mouse.click(track["x"] + 0.75 * track["width"], track["y"] + track["height"] / 2)
        expect(drawn).to_have_text("The server drew 4 stars: ★★★★", timeout=30000)
        assert not socket.is_closed()
        assert page.title() == "Shiny demo"
        screenshot(page, "example-shiny-preset")
        assert hosts == {f"127.0.0.1:{proxy.port}"}, f"the page reached out to {hosts}"
