"""The app's life under the supervisor: start at launch, readiness, restarts, logs, shutdown."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ECHO_APP, pid_alive, wait_for

HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_app_starts_at_launch_not_at_first_request(start_proxy):
    proxy = start_proxy(wait="listening")
    # No request is made: the app must come up on its own.
    wait_for(lambda: proxy.app_pids(), what="the app's pid")
    proxy.wait_log("The app is ready")
    # Only now a request, as a marker: the app's output is logged in order, so once the marker
    # is in the log, so is every request the app got before it.
    assert proxy.get("marker").status == 200
    proxy.wait_log("app got GET /marker\n")
    # Before the marker, the app got the readiness probe and nothing else.
    assert re.findall(r"app got (.*)$", proxy.log(), re.MULTILINE) == ["GET /", "GET /marker"]


def test_browser_gets_a_loading_page_while_the_app_starts(start_proxy):
    proxy = start_proxy(
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "4"], wait="listening"
    )
    response = proxy.get("some/page", headers=HTML)
    assert response.status == 503
    assert response.header("Retry-After")
    assert b"Starting the app" in response.body
    assert b"/user/alice/_jhsnp/status" in response.body
    assert (
        b"http://" not in response.body and b"https://" not in response.body
    )  # no external assets
    proxy.wait_ready()
    assert proxy.get("some/page", headers=HTML).json()["uri"] == "/some/page"


def test_api_client_waits_for_the_starting_app(start_proxy):
    proxy = start_proxy(
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "2"], wait="listening"
    )
    response = proxy.get("echo", headers={"Accept": "application/json"})
    assert response.status == 200
    assert response.json()["uri"] == "/echo"


def test_without_a_hub_the_hubs_readiness_paths_are_the_apps_own(start_proxy):
    """JupyterHub polls `{prefix}api` (5, 6) or the prefix (4.1) for readiness; a server the hub
    did not spawn (no JUPYTERHUB_API_URL) gets no such poll, so there those are the app's paths:
    a client waits for the app like any other, and never gets the proxy's "starting" text."""
    proxy = start_proxy(
        ["--hub-probe-timeout", "0"],
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "2"],
        wait="listening",
    )
    with ThreadPoolExecutor(2) as pool:
        answers = pool.map(lambda path: proxy.get(path, headers={"Accept": "*/*"}), ["api", ""])
        for path, response in zip(["/api", "/"], answers, strict=True):
            assert response.status == 200, (path, response.body[:200])
            assert response.json()["uri"] == path


def test_api_client_gets_503_with_retry_after_when_the_app_is_not_ready(start_proxy):
    proxy = start_proxy(
        ["--ready-timeout", "1.5"],
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "60"],
        wait="listening",
    )
    response = proxy.get("echo")
    assert response.status == 503
    assert response.header("Retry-After")
    assert b"Traceback" not in response.body


def test_never_ready_app_is_killed_shown_and_retried_by_the_next_request(start_proxy):
    proxy = start_proxy(
        ["--ready-timeout", "1.5"],
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "60", "--say", "warming up"],
        wait="listening",
    )
    wait_for(lambda: proxy.status().get("state") == "failed", what="the app to be given up on")
    first = proxy.app_pids()
    assert len(first) == 1
    wait_for(lambda: not pid_alive(first[0]), what="the never-ready app to be killed")
    # The next request starts it again, and its page says what went wrong last time.
    page = proxy.get("", headers=HTML)
    assert page.status == 503
    assert b"did not answer HTTP at / within 1.5 seconds" in page.body
    assert b"warming up" in page.body
    wait_for(lambda: len(proxy.app_pids()) == 2, what="a second start")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the second failure")
    assert proxy.status()["reason"] == "did not answer HTTP at / within 1.5 seconds"
    # An API client's request after the second failure starts it again as well, waits
    # --ready-timeout for it and gets one line of plain text, not a page.
    api = proxy.get("data.json", headers={"Accept": "application/json"})
    assert api.status == 503
    assert api.header("Retry-After")
    assert api.header("Content-Type") == "text/plain; charset=utf-8"
    assert api.body == b"503 Service Unavailable: the app is not ready yet (waited 1.5 s)\n"
    wait_for(lambda: len(proxy.app_pids()) == 3, what="a third start, asked for by the API client")


def test_app_killed_with_sigkill_is_restarted(start_proxy):
    proxy = start_proxy()
    [first] = proxy.app_pids()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(proxy.app_pids()) == 2, what="a restart")
    proxy.wait_ready()
    assert proxy.get("echo").status == 200
    assert "was killed by SIGKILL" in proxy.log()
    ports = re.findall(r"Starting the app on port (\d+)", proxy.log())
    assert len(ports) == 2  # a port picked before each start (--destport 0)


def test_app_exiting_with_status_0_is_restarted(start_proxy):
    proxy = start_proxy()
    assert proxy.get("exit?code=0").status == 200
    wait_for(lambda: len(proxy.app_pids()) == 2, what="a restart after exit 0")
    proxy.wait_ready()
    assert proxy.get("echo").status == 200
    assert "exited with status 0" in proxy.log()


CRASHER = textwrap.dedent(
    """
    import os, sys, time
    with open(os.environ["TEST_PIDFILE"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open(os.environ["TEST_PIDFILE"] + ".times", "a") as f:
        f.write(f"{time.monotonic()}\\n")
    print("crasher says hello")
    print("something went wrong", file=sys.stderr)
    sys.exit(3)
    """
)


def test_crashed_app_shows_exit_status_and_its_last_output(start_proxy, tmp_path):
    crasher = tmp_path / "crasher.py"
    crasher.write_text(CRASHER)
    proxy = start_proxy(app=[sys.executable, str(crasher)], wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the crash")
    page = proxy.get("", headers=HTML)
    assert page.status == 503
    assert b"exited with status 3" in page.body
    assert b"crasher says hello" in page.body
    assert b"something went wrong" in page.body
    assert b"restarted in about" in page.body
    api = proxy.get("data.json")
    assert api.status == 503 and api.header("Retry-After")


def test_crash_loop_backs_off(start_proxy, tmp_path):
    crasher = tmp_path / "crasher.py"
    crasher.write_text(CRASHER)
    proxy = start_proxy(app=[sys.executable, str(crasher)], wait="listening")
    times_file = proxy.pidfile.with_name(proxy.pidfile.name + ".times")
    wait_for(
        lambda: times_file.exists() and len(times_file.read_text().split()) >= 5,
        timeout=30,
        what="five starts",
    )
    times = [float(t) for t in times_file.read_text().split()][:5]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Exponential backoff: the supervisor announces each wait (before the next start, so all four
    # are in the log by now), each double the one before ...
    announced = re.findall(r"Restarting the app in ([\d.]+) s", proxy.log())
    delays = [float(d) for d in announced[:4]]
    assert len(delays) == 4, proxy.log()
    assert delays[0] > 0 and all(b == 2 * a for a, b in zip(delays, delays[1:], strict=False))
    # ... and really waits it: each start comes at least its wait after the one before. Only a
    # lower bound, which holds however slow the machine (a slow start only adds to a gap).
    assert all(gap > delay for gap, delay in zip(gaps, delays, strict=True)), (gaps, delays)


def test_log_flood_after_a_restart_never_blocks_the_app(start_proxy):
    proxy = start_proxy(app=[sys.executable, ECHO_APP, "{port}", "--flood", "5"])
    [first] = proxy.app_pids()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(proxy.app_pids()) == 2, what="a restart")
    proxy.wait_ready(timeout=60)
    assert proxy.get("echo").status == 200
    log = proxy.log()
    assert log.count("flood done") == 2
    assert "[... line cut]" in log


def test_no_logs_really_silences_the_app(start_proxy):
    proxy = start_proxy(
        ["--no-logs"], app=[sys.executable, ECHO_APP, "{port}", "--say", "secret-marker"]
    )
    assert proxy.get("echo").status == 200
    proxy.stop()
    assert "| secret-marker" not in proxy.log()
    assert "echo app listening" not in proxy.log()


def test_app_output_is_logged_with_a_prefix(start_proxy):
    proxy = start_proxy(app=[sys.executable, ECHO_APP, "{port}", "--say", "visible-marker"])
    line = next(x for x in proxy.log().splitlines() if x.endswith("| visible-marker"))
    assert re.search(r"jhsingle_native_proxy\.app\] app\[\d+\] out\| visible-marker", line)


STUBBORN = textwrap.dedent(
    """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.environ["TEST_PIDFILE"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    while True:
        time.sleep(1)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_leaves_no_orphans(start_proxy, tmp_path, sig):
    """`sh -c 'app & stubborn & wait'`: the whole group goes, even a child ignoring SIGTERM."""
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(STUBBORN)
    sh = shutil.which("sh")
    proxy = start_proxy(
        ["--shutdown-grace", "1"],
        app=[
            sh,
            "-c",
            f"{sys.executable} {ECHO_APP} {{port}} & {sys.executable} {stubborn} & wait",
        ],
    )
    wait_for(lambda: len(proxy.app_pids()) == 2, what="both app processes")
    pids = proxy.app_pids()
    assert all(pid_alive(p) for p in pids)
    assert proxy.stop(sig) == 0
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="no orphans")
    assert "did not exit within 1s of SIGTERM" in proxy.log()


def test_loading_page_moves_on_to_the_app_in_a_browser(start_proxy):
    """Chromium opens a deep link while the app starts and ends up on the app at that link."""
    from browser import chromium_page, screenshot

    with chromium_page() as page:
        # The browser first: on a busy machine its start alone can outlast the app's delay.
        proxy = start_proxy(
            app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "3"], wait="listening"
        )
        page.goto(proxy.url("deep/link?x=1"))
        assert "Starting the app" in page.inner_text("body")
        screenshot(page, "loading-page")
        page.wait_for_function(
            "document.body && document.body.innerText.includes('/deep/link?x=1')", timeout=20000
        )
        assert page.url == proxy.url("deep/link?x=1")
        screenshot(page, "loading-page-moved-on")


def test_the_loading_page_shows_the_starts_progress_in_a_browser(start_proxy, tmp_path):
    """While the app starts, a viewer who may see its output (here: anyone, --authtype none)
    sees the phase and the app's latest lines, and the page moves on once the app listens.
    The app starts exactly as long as the test wants: until the test creates a file. The shot
    is docs/images/loading.png."""
    from browser import chromium_page, docs_screenshot

    listen = tmp_path / "listen-now"
    start = (
        'for step in "Reading the data" "Building the index" "Warming the cache"; do'
        ' echo "$step"; done;'
        ' exec "$0" "$1" "$2" --wait-for-file "$3" > /dev/null'
    )
    app = ["sh", "-c", start, sys.executable, ECHO_APP, "{port}", str(listen)]
    with chromium_page(docs_image="loading") as page:
        proxy = start_proxy(app=app, wait="listening")
        page.goto(proxy.url("dashboard"))
        page.wait_for_function(
            "document.getElementById('lines').textContent.includes('Warming the cache')",
            timeout=20000,
        )
        assert page.text_content("#heading") == "Starting your app"
        assert page.text_content("#phase") == "Starting the app\u2026"
        assert not page.is_visible("#failure")
        docs_screenshot(page, "loading", shows="Warming the cache")
        listen.touch()
        page.wait_for_function(
            "document.body && document.body.innerText.includes('\"/dashboard\"')", timeout=20000
        )
        assert page.url == proxy.url("dashboard")
