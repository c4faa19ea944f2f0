"""examples/streamlit.sh, and `--app streamlit` with its app file, in Chromium under /user/test/:
the app renders and a button click
round-trips over its websocket (the script runs again on the server); the page asks nothing
of any host but the proxy."""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from example_support import HOW, PREFIX, require, require_program, running

pytestmark = pytest.mark.examples


@HOW
def test_streamlit_example_renders_and_reruns_on_a_click(tmp_path, how):
    require("streamlit")
    from playwright.sync_api import expect

    from browser import chromium_page, docs_screenshot, screenshot

    # The preset's page, as a viewer sees it, is docs/images/preset-streamlit.png.
    docs_image = "preset-streamlit" if how == "preset" else ""
    with running(how, "streamlit.sh", tmp_path) as proxy, chromium_page(docs_image) as page:
        hosts = set()
        page.on("request", lambda r: hosts.add(urlsplit(r.url.removeprefix("blob:")).netloc))
        with page.expect_websocket(timeout=30000) as websocket:
            page.goto(proxy.url())
        socket = websocket.value
        # Streamlit finds its prefix from the browser's address (no --server.baseUrlPath).
        assert urlsplit(socket.url).path == f"{PREFIX}_stcore/stream"
        # Streamlit's page is an empty shell: the script's output comes over the websocket.
        expect(page.get_by_text("Streamlit behind jhsingle-native-proxy")).to_be_visible(
            timeout=30000
        )
        expect(page.get_by_text("Clicks counted by the server: 0")).to_be_visible(timeout=30000)

        # The click goes to the server, the script runs again there and sends the new count.
        page.get_by_role("button", name="Click me").click()
        expect(page.get_by_text("Clicks counted by the server: 1")).to_be_visible(timeout=30000)
        assert not socket.is_closed()
        screenshot(page, f"example-streamlit-{how}")
        if docs_image:
            docs_screenshot(page, docs_image, shows="Clicks counted by the server: 1")
        assert hosts == {f"127.0.0.1:{proxy.port}"}, f"the page reached out to {hosts}"


def test_streamlit_hello_with_an_angle_bracket_port_answers(start_proxy):
    """docs/getting-started.md's line, for real: `-- streamlit hello --server.port <port>` (the
    app was given a literal `<port>` and crash-looped)."""
    require_program("streamlit")
    page = Path(__file__).resolve().parent.parent / "docs" / "getting-started.md"
    line = next(
        x
        for x in page.read_text(encoding="utf-8").splitlines()
        if "streamlit hello --server.port <port>" in x
    )
    ours, _, app = line.partition(" -- ")
    assert ours == "jhsingle-native-proxy --authtype none"
    proxy = start_proxy(["--ready-timeout", "60"], app=shlex.split(app), wait="listening")
    proxy.wait_ready(timeout=90)
    health = proxy.get("_stcore/health")
    assert (health.status, health.body) == (200, b"ok")
