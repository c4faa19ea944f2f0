"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for what a person sees.

Playwright never downloads a browser here: it drives the system's Chromium.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Chromium's background services try to reach the internet, which this machine does not allow.
QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def chromium_page():
    """A fresh page in a fresh headless Chromium; closed (browser included) on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=QUIET_FLAGS)
        try:
            context = browser.new_context()
            yield context.new_page()
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """Keep a screenshot as a test artifact (test-artifacts/NAME.png)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
