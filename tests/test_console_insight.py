"""What the console shows of the app's insides (issue 23): its memory and CPU live, a chart of
the last hour, why its last run ended in words (the kernel's OOM killer included), and the
output of its last runs to download.

(tests/test_insight_units.py has the pure parts; tests/test_console.py the console's access
rules with a real hub, a run's download included.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import pytest
from test_console_live import ask_restart

from browser import chromium_page, docs_screenshot, screenshot
from conftest import APPS, wait_for
from jhsingle_native_proxy.exit_reason import MemoryCgroup
from jhsingle_native_proxy.run_history import RUNS_KEPT

HTML = {"Accept": "text/html"}
MEMORY_APP = str(APPS / "memory_app.py")
WAIT_MS = 20_000
OOM_LIMIT_MIB = 300


def console(proxy) -> dict:
    return proxy.get("_jhsnp/console.json", timeout=5).json()


def memory_cgroup(limit_mib: int) -> Path | None:
    """A child of our memory cgroup limited to `limit_mib` MiB, or None where none can be made
    (not root, no memory controller, v2 without delegation)."""
    ours = MemoryCgroup.of_this_process()
    if ours is None:
        return None
    child = Path(ours.directory) / f"jhsnp-test-{uuid.uuid4().hex[:12]}"
    try:
        child.mkdir()
    except OSError:
        return None
    limit = str(limit_mib * 2**20)
    try:
        if ours.version == 1:
            (child / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                (child / "memory.memsw.limit_in_bytes").write_text(limit)
        else:
            (child / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (child / "memory.swap.max").write_text("0")
        return child
    except OSError:
        child.rmdir()
        return None


def remove_cgroup(child: Path) -> None:
    """Once every process in it has ended (the test ended them by PID)."""
    wait_for(lambda: not (child / "cgroup.procs").read_text().split(), what="an empty cgroup")
    child.rmdir()


def test_an_app_killed_by_the_kernel_for_memory_is_said_so(start_proxy):
    """The whole proxy runs in a memory cgroup limited to 300 MiB; the app grows past it on a
    request and the kernel's OOM killer ends it: the console says so, with the limit. Where no
    cgroup can be made here, the app is SIGKILLed instead and only the signal is checked."""
    child = memory_cgroup(OOM_LIMIT_MIB)
    if child is None:
        proxy = start_proxy(app=[sys.executable, MEMORY_APP, "{port}"])
        os.kill(proxy.app_pids()[-1], signal.SIGKILL)
        wait_for(lambda: console(proxy)["last_end"], what="the run's end")
        assert console(proxy)["last_end"] == "killed by signal 9 (SIGKILL)"
        pytest.skip(
            "no memory cgroup can be made here (not root, or no writable memory "
            "controller): the OOM words were not checked, only a SIGKILL's"
        )
    try:
        # The launcher moves itself into the cgroup, then becomes the proxy (same pid).
        procs = child / "cgroup.procs"
        launcher = ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "launcher"]
        proxy = start_proxy(app=[sys.executable, MEMORY_APP, "{port}"], launcher=launcher)
        assert str(proxy.pid) in procs.read_text().split()
        grown = proxy.get("grow?mib=2000", timeout=60)
        assert grown.status >= 500  # the app died under the request
        wait_for(lambda: console(proxy)["last_end"], 30, what="the run's end")
        words = f"killed by the kernel: out of memory (limit {OOM_LIMIT_MIB} MiB)"
        assert console(proxy)["last_end"] == words
        [first] = [r for r in console(proxy)["runs"] if r["number"] == 1]
        assert first["end"] == words and first["ended"]
        # The page says it too, and the proxy lived on: the app is back.
        wait_for(lambda: console(proxy)["state"] == "ready", 30, what="the app again")
        page = proxy.get("_jhsnp/", headers=HTML).body.decode()
        assert words in page
    finally:
        start_proxy.cleanup()
        remove_cgroup(child)


def test_a_sigkilled_app_and_an_exit_status_are_said_in_words(start_proxy):
    proxy = start_proxy(app=[sys.executable, MEMORY_APP, "{port}"])
    os.kill(proxy.app_pids()[-1], signal.SIGKILL)
    wait_for(lambda: console(proxy)["last_end"], what="the run's end")
    assert console(proxy)["last_end"] == "killed by signal 9 (SIGKILL)"
    sh = start_proxy(app=["sh", "-c", "sleep 1; exit 1"], wait="listening")
    wait_for(lambda: console(sh)["last_end"], 30, what="the run's end")
    assert console(sh)["last_end"] == "exited with status 1"


def test_the_console_shows_the_apps_memory_and_a_chart_in_a_browser(start_proxy):
    """An app holding 100 MiB: the console's memory figure says at least that (and not some
    absurd number), and the chart of the last hour is drawn, one line per figure. The shot is
    docs/images/console.png."""
    proxy = start_proxy(app=[sys.executable, MEMORY_APP, "{port}", "100"])
    with chromium_page(docs_image="console") as page:
        page.goto(proxy.url("_jhsnp/"))
        page.wait_for_function(
            "document.querySelectorAll('#usage-chart polyline').length === 3", timeout=WAIT_MS
        )
        memory = page.text_content("#memory")
        found = re.fullmatch(r"([0-9.]+) MiB", memory)
        assert found and 100 <= float(found.group(1)) < 1000, memory
        assert re.fullmatch(r"[0-9.]+ %", page.text_content("#cpu"))
        for line in page.query_selector_all("#usage-chart polyline"):
            assert len(line.get_attribute("points").split()) >= 2
        assert "Memory: " in page.text_content("#usage-chart")
        assert page.text_content("#runs tbody tr td:nth-child(4)") == "running"
        screenshot(page, "console-insight")
        assert page.text_content("#state") == "ready" and not page.is_visible("text=Wake")
        docs_screenshot(page, "console", shows="Memory: ")
    assert console(proxy)["usage"]["memory_bytes"] >= 100 * 2**20
    # Requests per minute count what reached the app (through the proxy), not the console's.
    before = proxy.get("_jhsnp/usage.json").json()["requests"]
    for _ in range(3):
        assert proxy.get("?counted").status == 200
        console(proxy)
    assert proxy.get("_jhsnp/usage.json").json()["requests"] == before + 3


def test_the_console_lists_the_last_five_runs_each_to_download(start_proxy):
    """Seven runs (six restarts asked on the console): the five last are listed, newest first,
    and each one's download is that run's own output, as a text file."""
    proxy = start_proxy()
    for n in range(1, 8):
        wait_for(
            lambda n=n: (
                console(proxy)["state"] == "ready" and console(proxy)["runs"][0]["number"] == n
            ),
            30,
            what=f"run {n}",
        )
        assert proxy.get(f"echo?marker-of-run-{n}").status == 200
        wait_for(lambda n=n: f"marker-of-run-{n}" in "\n".join(console(proxy)["lines"]))
        if n < 7:
            assert ask_restart(proxy).status == 200
    runs = console(proxy)["runs"]
    assert [r["number"] for r in runs] == [7, 6, 5, 4, 3] and RUNS_KEPT == 5
    assert runs[0]["end"] == "running"
    assert all(r["end"] == "stopped: restart asked" for r in runs[1:])
    page = proxy.get("_jhsnp/", headers=HTML).body.decode()
    for n in range(1, 8):
        got = proxy.get(f"_jhsnp/runs/{n}.txt")
        if n < 3:
            assert got.status == 404  # no longer kept
            continue
        assert f'href="/user/alice/_jhsnp/runs/{n}.txt"' in page
        assert got.status == 200
        assert got.header("Content-Type") == "text/plain; charset=utf-8"
        assert got.header("Content-Disposition") == f'attachment; filename="app-run-{n}.txt"'
        text = got.body.decode()
        assert f"app got GET /echo?marker-of-run-{n}" in text
        assert all(f"marker-of-run-{m}" not in text for m in range(1, 8) if m != n)
