"""The console's promises in time: its page updates once a second, and Restart starts the app at
once from any state, a failed app waiting out its backoff or waiting for a request included.

(tests/test_console.py has the rest of the console.)
"""

from __future__ import annotations

import re
import sys
from datetime import datetime

from browser import chromium_page
from conftest import ECHO_APP, Response, console_form, wait_for

LOG_TIME = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


def ask_restart(proxy) -> Response:
    """The console's Restart button, as its page's fetch sends it (same origin, JSON answer).

    Every console POST of the tests that need an allowed one goes through here."""
    origin = f"http://127.0.0.1:{proxy.port}"
    sent = console_form(proxy)
    headers = {
        **sent["headers"],
        "Accept": "application/json",
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
    }
    return proxy.request("POST", "_jhsnp/restart", body=sent["body"], headers=headers)


def console(proxy) -> dict:
    return proxy.get("_jhsnp/console.json", timeout=5).json()


def logged_at(proxy, text: str) -> datetime:
    """When the proxy logged the first line containing `text` (its own clock, to the ms)."""
    for line in proxy.log().splitlines():
        if text in line and (stamp := LOG_TIME.match(line)):
            return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f")
    raise AssertionError(f"{text!r} is not in the log")


def test_the_console_page_asks_for_news_once_a_second(start_proxy):
    """On the page's own clock (Playwright's fake timers, moved by hand), console.json is asked
    for 1 s after the page loaded and 1 s after each answer: not at 999 ms, once at 1000 ms,
    and what it says is on the page then. No real time is measured."""
    proxy = start_proxy()
    with chromium_page() as page:
        asked: list[str] = []
        page.on(
            "request", lambda r: asked.append(r.url) if r.url.endswith("console.json") else None
        )
        # Installed, the page's clock still runs with real time; paused, it moves only when
        # told (run_for), however slow the machine.
        start = datetime(2026, 1, 1)
        page.clock.install(time=start)
        page.clock.pause_at(start)
        page.goto(proxy.url("_jhsnp/"))
        for n in range(3):
            # The app prints a line for this request: the next poll must bring it.
            assert proxy.get(f"echo?poll-{n}").status == 200
            page.clock.run_for(999)
            assert len(asked) == n, asked
            page.clock.run_for(1)
            wait_for(lambda n=n: len(asked) == n + 1, 10, what=f"poll {n + 1}")
            wait_for(
                lambda n=n: f"app got GET /echo?poll-{n}" in page.text_content("#lines"),
                10,
                what=f"poll {n + 1} on the page",
            )
        assert len(asked) == 3


def test_restart_ends_a_backoff_at_once(start_proxy, tmp_path):
    """An app that exits while starting waits 0.5, 1, 2, 4, 8 s between tries. Asked in the
    middle of the 8 s wait, Restart starts it right away: the proxy's log shows it ready before
    that wait would have ended (the proxy's own timestamps; no timing of ours)."""
    works = tmp_path / "works"
    app = ["sh", "-c", f"test -f {works} || exit 3; exec {sys.executable} {ECHO_APP} {{port}}"]
    proxy = start_proxy(app=app, wait="listening")
    proxy.wait_log("Restarting the app in 8.0 s", timeout=30)
    assert console(proxy)["state"] == "failed"
    works.touch()
    asked = ask_restart(proxy)
    assert asked.status == 200, asked.body
    wait_for(lambda: console(proxy)["state"] == "ready", 30, what="the restarted app")
    waiting_since = logged_at(proxy, "Restarting the app in 8.0 s")
    ready_at = logged_at(proxy, "The app is ready")
    assert (ready_at - waiting_since).total_seconds() < 8.0, (waiting_since, ready_at)
    assert "Restart asked by" in proxy.log()


def test_restart_starts_an_app_that_failed_and_waits_for_a_request(start_proxy, tmp_path):
    """An app that never became ready (killed after --ready-timeout) waits for a request before
    it is tried again; Restart is one. No request reaches the app's routes here: without the
    Restart it would wait for good."""
    listen = tmp_path / "listen"
    app = [sys.executable, ECHO_APP, "{port}", "--wait-for-file", str(listen)]
    proxy = start_proxy(["--ready-timeout", "1"], app=app, wait="listening")
    wait_for(lambda: console(proxy)["state"] == "failed", 30, what="the app to fail")
    listen.touch()
    assert ask_restart(proxy).status == 200
    wait_for(lambda: console(proxy)["state"] == "ready", 30, what="the restarted app")
    assert len(proxy.app_pids()) == 2
