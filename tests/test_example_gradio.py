"""examples/gradio.sh, and `--app gradio` with its app file, in Chromium under /user/test/:
the page renders and a submit round-trips,
and the page asks nothing of any host but the proxy (no CDN fonts, no analytics)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from example_support import HOW, PREFIX, require, running

pytestmark = pytest.mark.examples


@HOW
def test_gradio_example_renders_and_answers_a_submit(tmp_path, how):
    require("gradio")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    with running(how, "gradio.sh", tmp_path) as proxy, chromium_page() as page:
        hosts = set()
        page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
        page.goto(proxy.url())
        # Gradio's Svelte front end has drawn the interface from the config under the prefix.
        expect(page.get_by_role("heading", name="Gradio demo")).to_be_visible(timeout=30000)
        name = page.get_by_label("Name")
        greeting = page.get_by_label("Greeting")
        expect(name).to_be_editable(timeout=30000)
        name.fill("proxy user")
        # The submit joins Gradio's queue (a POST under the prefix); the answer comes back as
        # server-sent events on a long GET, streamed by the proxy.
        join_path = f"{PREFIX}gradio_api/queue/join"
        with page.expect_response(lambda r: urlsplit(r.url).path == join_path) as join:
            page.get_by_role("button", name="Submit").click()
        assert join.value.status == 200
        expect(greeting).to_have_value("Hello, proxy user! (10 characters)", timeout=30000)
        screenshot(page, f"example-gradio-{how}")
        assert hosts == {f"127.0.0.1:{proxy.port}"}, f"the page reached out to {hosts}"
