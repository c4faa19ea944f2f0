"""examples/voila.sh, and `--app voila` with its app file, in Chromium under /user/test/:
the notebook renders, and moving its slider
updates a label that the kernel computes, over the kernel's websocket through the proxy."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from example_support import HOW, PREFIX, require, running

pytestmark = pytest.mark.examples


@HOW
def test_voila_example_renders_and_a_widget_talks_to_the_kernel(tmp_path, how):
    require("voila")
    require("ipykernel")
    require("ipywidgets")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    with running(how, "voila.sh", tmp_path) as proxy, chromium_page() as page:
        hosts, sockets, cdn = set(), [], []
        page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
        # Voilà's templates link Font Awesome's stylesheets from jsDelivr, whatever the notebook
        # (see voila.sh): refused here, so the test never depends on the internet.
        page.route(
            re.compile(r"^https?://cdn\.jsdelivr\.net/"),
            lambda route: (cdn.append(route.request.url), route.abort()),
        )
        page.on("websocket", lambda ws: sockets.append(urlsplit(ws.url).path))
        page.goto(proxy.url())
        # Voilà ran the notebook in a kernel and sent its outputs: the markdown, the print, and
        # the widgets, drawn once the page's widget manager reached the kernel.
        heading = page.get_by_role("heading", name="Voilà behind jhsingle-native-proxy")
        expect(heading).to_be_visible(timeout=45000)
        expect(page.get_by_text("says hello")).to_be_visible(timeout=30000)
        answer = page.get_by_text("squared is")
        expect(answer).to_have_text("3 squared is 9, says the kernel", timeout=30000)
        # One step right on the slider: the new value goes to the kernel, whose observer sets the
        # label, which comes back on the same websocket.
        page.locator(".widget-slider .noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        expect(answer).to_have_text("4 squared is 16, says the kernel", timeout=30000)
        screenshot(page, f"example-voila-{how}")
        assert any(
            path.startswith(f"{PREFIX}api/kernels/") and path.endswith("/channels")
            for path in sockets
        ), sockets
        assert hosts - {"cdn.jsdelivr.net"} == {f"127.0.0.1:{proxy.port}"}, hosts
        assert all("/@fortawesome/fontawesome-free@" in url for url in cdn), cdn
