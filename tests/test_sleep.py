"""Sleeping apps (`--idle-stop`) and idle shutdown (`--idle-shutdown`), through the real CLI.

The app is the echo app (its pid is its process group's: the supervisor starts it in a session
of its own). "Idle" is waited for, never slept through: each test waits on the state the status
endpoint reports, which, like every endpoint of ours, is no use of the app.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import pytest

from conftest import ECHO_APP, console_form, pid_alive, wait_for
from jhsingle_native_proxy.app_state import AppState, AppStatus, EndReason
from jhsingle_native_proxy.console import console_view
from jhsingle_native_proxy.idle_watch import CHECK_MAX, CHECK_MIN, check_interval
from jhsingle_native_proxy.process import group_alive
from jhsingle_native_proxy.sleep_options import SleepSettings

HTML = {"Accept": "text/html"}
IDLE = "2"


def state(proxy) -> str:
    return proxy.status().get("state", "")


def wait_asleep(proxy, timeout: float = 30) -> None:
    wait_for(lambda: state(proxy) == "sleeping", timeout, what="the app to sleep")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def ws_url(proxy, path: str = "ws") -> str:
    return proxy.url(path).replace("http://", "ws://")


def test_an_idle_app_sleeps_and_a_plain_request_wakes_it(start_proxy):
    proxy = start_proxy(["--idle-stop", IDLE])
    first = proxy.app_pids()[0]
    wait_asleep(proxy)
    # Its whole group is gone; the proxy runs on.
    wait_for(lambda: not group_alive(first), timeout=10, what="the app's group to end")
    assert not pid_alive(first) and proxy.process.poll() is None
    assert "The app has been idle" in proxy.log() and "exited" not in proxy.log()
    # A client that is not a browser waits as at a start, and gets the app's answer.
    answer = proxy.get("echo?woken=1")
    assert answer.status == 200 and answer.json()["uri"].endswith("/echo?woken=1")
    assert state(proxy) == "ready"
    assert len(proxy.app_pids()) == 2 and pid_alive(proxy.app_pids()[1])
    # The console's run history and the metrics say why the first run ended.
    runs = proxy.get("_jhsnp/console.json").json()["runs"]
    assert [r["end"] for r in runs] == ["running", "stopped: idle"]  # newest first
    metrics = proxy.get("_jhsnp/metrics").body.decode()
    assert 'jhsnp_app_restarts_total{reason="idle"} 1.0' in metrics


def test_status_polls_and_excluded_paths_do_not_keep_it_awake(start_proxy):
    proxy = start_proxy(["--idle-stop", IDLE, "--activity-exclude", "/health"])

    def polled_asleep():
        assert proxy.get("health").status in (200, 503)
        proxy.get("_jhsnp/status")
        proxy.get("_jhsnp/console.json")
        return state(proxy) == "sleeping"

    wait_for(polled_asleep, timeout=30, interval=0.2, what="the app to sleep while polled")
    # A health check does not wake it either: it is told the app sleeps.
    answer = proxy.get("health")
    assert answer.status == 503 and b"asleep" in answer.body
    assert state(proxy) == "sleeping" and len(proxy.app_pids()) == 1


def test_an_open_websocket_keeps_it_awake_and_a_websocket_wakes_it(start_proxy):
    proxy = start_proxy(["--idle-stop", "1"])
    first = proxy.app_pids()[0]

    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(ws_url(proxy)) as ws:
                await ws.send_str("hello")
                assert (await ws.receive(timeout=10)).data == "hello"
                sent_at = time.time()
                # Silent, but open, for several times --idle-stop (the server's own clock).
                await asyncio.to_thread(
                    wait_for,
                    lambda: time.time() - sent_at > 4 and state(proxy) == "ready",
                    30,
                    0.2,
                )
                assert state(proxy) == "ready" and pid_alive(first)
                await ws.send_str("still here")
                assert (await ws.receive(timeout=10)).data == "still here"
            # Closed: now it may sleep.
            await asyncio.to_thread(wait_asleep, proxy)
            assert not group_alive(first)
            # A websocket wakes it, and is relayed once the app is up.
            async with s.ws_connect(ws_url(proxy)) as ws:
                await ws.send_str("woken")
                assert (await ws.receive(timeout=10)).data == "woken"

    run(go())
    assert len(proxy.app_pids()) == 2


def test_a_browser_sees_waking_up_then_the_app(start_proxy):
    from browser import chromium_page, screenshot

    with chromium_page() as page:
        proxy = start_proxy(
            ["--idle-stop", IDLE], app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "2"]
        )
        wait_asleep(proxy)
        page.goto(proxy.url("deep/link?x=1"))
        assert page.inner_text("h1") == "Waking up your app"
        assert "Waking up the app" in page.inner_text("#phase")
        screenshot(page, "waking-up-page")
        page.wait_for_function(
            "document.body && document.body.innerText.includes('/deep/link?x=1')", timeout=30000
        )
        assert page.url == proxy.url("deep/link?x=1")
    assert len(proxy.app_pids()) == 2


def test_the_console_shows_sleeping_and_its_wake_button_wakes_it(start_proxy):
    proxy = start_proxy(["--idle-stop", IDLE])
    wait_asleep(proxy)
    view = proxy.get("_jhsnp/console.json").json()
    assert view["state"] == "sleeping" and view["reason"].startswith("Sleeping since ")
    page = proxy.get("_jhsnp/", headers=HTML).body.decode()
    assert '<form id="wake" method="post"' in page and 'wake" hidden' not in page
    sent = console_form(proxy)
    origin = f"http://127.0.0.1:{proxy.port}"
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin", **sent["headers"]}
    answer = proxy.request("POST", "_jhsnp/wake", body=sent["body"], headers=headers)
    assert answer.status == 303
    wait_for(lambda: state(proxy) == "ready", timeout=30, what="the app to wake")
    assert len(proxy.app_pids()) == 2 and "Wake asked by" in proxy.log()
    # Awake, the button is hidden.
    assert '<form id="wake" method="post" action="/user/alice/_jhsnp/wake" hidden>' in (
        proxy.get("_jhsnp/", headers=HTML).body.decode()
    )


def test_idle_shutdown_exits_0_and_leaves_nothing(start_proxy):
    proxy = start_proxy(["--idle-shutdown", IDLE])
    pids = proxy.app_pids()
    assert proxy.process.wait(60) == 0
    assert "shutting down" in proxy.log()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="no app left")


# -- pure parts --------------------------------------------------------------------------------


def test_the_check_interval_is_a_tenth_of_the_shorter_timeout_within_bounds():
    assert check_interval(SleepSettings(idle_stop=900)) == 30.0 == CHECK_MAX
    assert check_interval(SleepSettings(idle_stop=60, idle_shutdown=86400)) == 6.0
    assert check_interval(SleepSettings(idle_shutdown=1)) == CHECK_MIN
    assert not SleepSettings().watched


def test_the_console_says_since_when_it_sleeps():
    status = AppStatus(AppState.SLEEPING, "", [], None, None, sleeping_since=0.0)
    assert console_view(status)["reason"] == (
        "Sleeping since 1970-01-01 00:00:00 UTC (--idle-stop); the next visit wakes it."
    )
    assert EndReason.IDLE.value == "stopped: idle"


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_the_options_take_durations_only(value):
    import click

    from jhsingle_native_proxy.cli import parse_args

    for option in ("--idle-stop", "--idle-shutdown"):
        with pytest.raises(click.ClickException):
            parse_args(["--authtype", "none", option, value, "--", "x", "{port}"], {})


def test_in_publish_mode_the_live_revision_sleeps_and_a_push_while_asleep_goes_live(
    start_proxy, tmp_path
):
    from test_follow import Upstream, revisions, start_published

    upstream = Upstream(tmp_path / "upstream")
    proxy = start_published(start_proxy, upstream, tmp_path, "--idle-stop", IDLE)
    wait_asleep(proxy)
    first = proxy.app_pids()[0]
    assert not group_alive(first)
    assert proxy.get("").body.decode().strip() == "v1"  # woken
    wait_asleep(proxy)
    # A push while the live revision sleeps goes live (its app started), and sleeps in turn.
    commit = upstream.push("v2")
    wait_for(lambda: revisions(proxy)["live"]["commit"] == commit, 30, what="v2 to go live")
    wait_asleep(proxy)
    assert proxy.get("").body.decode().strip() == "v2"
    assert "Traceback" not in proxy.log()
