"""Publish mode in Chromium: a Streamlit app follows its branch, and the page a viewer has open
reconnects by itself to the pushed revision (after the old revision's 1012) and shows it at the
viewer's next interaction, without a reload.

Streamlit's page does not run the script again on its own after a reconnection (only when it
had never been connected, or a run was under way): what it shows changes at the next
interaction, which the test makes with a button.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from example_support import require
from test_checkout import git

from conftest import wait_for

pytestmark = pytest.mark.examples

STREAMLIT_APP = (
    'import streamlit as st\n\nst.title("Published revision {version}")\nst.button("Again")\n'
)


def push(repo: Path, version: str) -> str:
    (repo / "app.py").write_text(STREAMLIT_APP.format(version=version))
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", f"version {version}")
    return git(repo, "rev-parse", "HEAD").strip()


def test_an_open_streamlit_page_shows_the_pushed_revision_by_itself(start_proxy, tmp_path):
    require("streamlit")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    push(repo, "one")
    streamlit = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", "{port}"]
    streamlit += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    streamlit += ["--browser.gatherUsageStats", "false"]
    proxy = start_proxy(
        [
            "--repo", repo.as_uri(), "--repobranch", "main",
            "--repofolder", str(tmp_path / "published"),
            "--follow", "--follow-interval", "1", "--drain-timeout", "2",
            "--ready-timeout", "60",
        ],
        app=streamlit,
        wait="listening",
    )  # fmt: skip
    proxy.wait_ready(timeout=90)
    with chromium_page() as page:
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        page.goto(proxy.url())
        expect(page.get_by_text("Published revision one")).to_be_visible(timeout=60000)
        loads = len(navigations)
        pushed_at = time.monotonic()
        commit = push(repo, "two")

        def live() -> str:
            return (proxy.get("_jhsnp/revisions.json").json()["live"] or {}).get("commit", "")

        with page.expect_websocket(timeout=60000) as reconnected:
            # The page's websocket to the old revision is closed with 1012 after the drain.
            wait_for(lambda: live() == commit, 90, what="the pushed revision to go live")
        assert reconnected.value.url.endswith("_stcore/stream")
        page.get_by_role("button", name="Again").click()
        expect(page.get_by_text("Published revision two")).to_be_visible(timeout=60000)
        shown_after = time.monotonic() - pushed_at
        assert len(navigations) == loads, navigations
        screenshot(page, "follow-streamlit-after-push")
    assert "Switched the published app from " in proxy.log()
    print(f"push to shown in the open page: {shown_after:.1f} s")
