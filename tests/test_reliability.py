"""The reliability suite: load, faults, vanishing and slow clients, a misbehaving hub, shutdown.

Quick mode (the default, run by CI) keeps each part to seconds; `JHSNP_RELIABILITY=full` runs
the durations and counts of the full suite. Every test records its figures (see loadgen), and
asserts on the ones that say whether the proxy held: errors, mismatches, recoveries, leaks.
Timings are recorded, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time

import pytest
from loadgen import (
    MODE,
    open_fds,
    process_tree,
    record,
    rss_mib,
    scale,
    start_wrk,
    websocket_echoers,
    wrk_result,
)

from conftest import ECHO_APP, pid_alive, request, wait_for
from jhsingle_native_proxy.proxy.http import APP_TURNS

pytestmark = pytest.mark.reliability
PREFIX = "/user/alice/"


def test_load_http_and_websockets_together(start_proxy):
    """1,000 keep-alive HTTP clients at full speed and 200 websockets echoing every 100 ms."""
    seconds = scale(15, 60)
    connections = scale(1000, 1000)
    sockets = 200
    proxy = start_proxy()
    fds_before = open_fds(proxy.pid)
    wrk = start_wrk(proxy.url("echo"), connections, seconds)
    ws = asyncio.run(
        websocket_echoers(f"ws://127.0.0.1:{proxy.port}{PREFIX}ws", sockets, 0.1, seconds)
    )
    http = wrk_result(wrk, seconds + 60)
    fds_right_after = open_fds(proxy.pid)
    # The clients are gone; what stays is the pool of kept-alive connections to the app, at
    # most one per turn (proxy.http.APP_TURNS), until they idle out.
    wait_for(
        lambda: open_fds(proxy.pid) <= fds_before + APP_TURNS + 10,
        timeout=30,
        what="the clients' descriptors to be closed",
    )
    record(
        "load",
        seconds=seconds,
        http_clients=connections,
        http_requests=http["requests"],
        http_errors=http["errors"],
        http_p50_ms=http["p50_ms"],
        http_p99_ms=http["p99_ms"],
        ws_clients=sockets,
        ws_sent=ws["sent"],
        ws_echoed=ws["echoed"],
        ws_mismatched=ws["mismatched"],
        ws_dropped=ws["dropped"] + ws["failed_to_open"],
        ws_echo_p50_ms=ws["p50_ms"],
        ws_echo_p99_ms=ws["p99_ms"],
        proxy_peak_rss_mib=rss_mib(proxy.pid, "VmHWM"),
        proxy_fds_before=fds_before,
        proxy_fds_at_end=fds_right_after,
        proxy_fds_settled=open_fds(proxy.pid),
    )
    assert http["requests"] > 0, http["output"]
    assert http["errors"] == 0, http["output"]
    assert ws["mismatched"] == 0 and ws["dropped"] == 0 and ws["failed_to_open"] == 0, ws
    assert ws["echoed"] == ws["sent"]
    assert proxy.process.poll() is None


class Pacer:
    """Light background load: a GET every `interval` s, counting answers by status."""

    def __init__(self, port: int, path: str, interval: float = 0.05):
        self.port, self.path, self.interval = port, path, interval
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 600  # bounded even if a test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status = request(self.port, "GET", self.path, timeout=10).status
            except OSError:
                status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)


def _answers_200(proxy) -> bool:
    try:
        return proxy.get("echo", timeout=5).status == 200
    except OSError:
        return False


def test_the_app_killed_again_and_again_comes_back_at_once(start_proxy):
    """SIGKILL (as the OOM killer does) an app that was serving: it is back each time."""
    kills = scale(6, 20)
    up_for = scale(2.5, 5.0)  # how long the app serves before each kill
    proxy = start_proxy()
    back_after: list[float] = []
    with Pacer(proxy.port, PREFIX + "echo") as pacer:
        for _ in range(kills):
            wait_for(lambda: _answers_200(proxy), 30, what="the app to answer")
            time.sleep(up_for)
            pid = proxy.app_pids()[-1]
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda p=pid: p not in _live(proxy.app_pids()), 10, what="the kill")
            wait_for(lambda: _answers_200(proxy), 30, interval=0.02, what="the app's return")
            back_after.append(time.monotonic() - killed_at)
            assert proxy.process.poll() is None
    back_after.sort()
    record(
        "app killed",
        kills=kills,
        recovered=f"{len(back_after)}/{kills}",
        median_s_back=back_after[len(back_after) // 2],
        max_s_back=back_after[-1],
        pacer_answers=sum(pacer.statuses.values()),
        pacer_non_200=sum(n for s, n in pacer.statuses.items() if s != 200),
    )
    assert len(back_after) == kills
    # No backoff for an app that had been serving (0.8.3 restarts at once too).
    assert _own_log(proxy).count("Restarting the app now") == kills
    assert "Traceback" not in _own_log(proxy)


def _own_log(proxy) -> str:
    """The proxy's log without the app's output (the app may log its own tracebacks)."""
    return "\n".join(
        line for line in proxy.log().splitlines() if "jhsingle_native_proxy.app]" not in line
    )


def _live(pids: list[int]) -> list[int]:
    return [p for p in pids if pid_alive(p)]


def test_a_frozen_app_gives_clean_504s_and_recovers_at_once(start_proxy):
    """SIGSTOP the app for longer than --request-timeout while requests come in."""
    timeout = 2.0
    frozen_for = scale(4.0, 10.0)
    proxy = start_proxy(["--request-timeout", str(timeout)])
    pid = proxy.app_pids()[-1]
    fds_before = open_fds(proxy.pid)
    statuses: list[int] = []

    def ask():
        statuses.append(proxy.get("echo", timeout=30).status)

    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        peak_fds = 0
        while time.monotonic() - started < frozen_for:
            threads = [threading.Thread(target=ask) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            peak_fds = max(peak_fds, open_fds(proxy.pid))
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    wait_for(lambda: _answers_200(proxy), 10, interval=0.02, what="the app after SIGCONT")
    back = time.monotonic() - resumed
    wait_for(lambda: open_fds(proxy.pid) <= fds_before + 10, 40, what="descriptors back")
    record(
        "app frozen",
        frozen_s=frozen_for,
        requests=len(statuses),
        answered_504=statuses.count(504),
        other_answers=len(statuses) - statuses.count(504),
        peak_fds=peak_fds,
        fds_before=fds_before,
        s_to_200_after_sigcont=back,
        rss_mib=rss_mib(proxy.pid),
    )
    assert statuses and set(statuses) == {504}, statuses
    assert "Traceback" not in _own_log(proxy)


def _abort_download(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {PREFIX}download?n={50 * 2**20} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def _abort_upload(port: int, sent: int = 65536) -> None:
    """An upload of 10 MiB whose sender leaves after `sent` bytes (in 64 KiB writes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {PREFIX}upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {10 * 2**20}\r\n\r\n".encode()
        )
        for _ in range(sent // 65536):
            sock.sendall(b"x" * 65536)


def _vanishing_websocket(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {PREFIX}ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")


def _leave_while_the_app_thinks(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {PREFIX}slow?s=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        time.sleep(0.2)


def test_clients_that_vanish_leave_nothing_behind(start_proxy):
    """Aborted downloads, aborted uploads and websockets gone without a close frame."""
    count = scale(150, 500)
    proxy = start_proxy()
    app_pid = proxy.app_pids()[-1]
    proxy.get("echo")
    fds = (open_fds(proxy.pid), open_fds(app_pid))
    rss_before = rss_mib(proxy.pid)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        for job in (_abort_download, _abort_upload, _vanishing_websocket):
            list(pool.map(lambda _, job=job: job(proxy.port), range(count)))
        # Gone while the proxy waits for the app's answer: a normal event, no traceback.
        list(pool.map(lambda _: _leave_while_the_app_thinks(proxy.port), range(count // 3)))
    settled = time.monotonic()
    wait_for(
        lambda: open_fds(proxy.pid) <= fds[0] + 10 and open_fds(app_pid) <= fds[1] + 10,
        timeout=20,
        what="the proxy's and the app's descriptors to be back",
    )
    record(
        "clients vanish",
        each_kind=count,
        s_to_fds_back=time.monotonic() - settled,
        proxy_fds=f"{fds[0]} -> {open_fds(proxy.pid)}",
        app_fds=f"{fds[1]} -> {open_fds(app_pid)}",
        proxy_rss_mib=f"{rss_before:.0f} -> {rss_mib(proxy.pid):.0f}",
    )
    assert proxy.get("echo").status == 200
    own = _own_log(proxy)
    assert "Traceback" not in own and "] 500 " not in own
    assert rss_mib(proxy.pid) < rss_before + 40


# How far above its start the proxy's RSS may stay after rounds of aborted uploads (issue 18).
ABORTED_UPLOADS_BOUND_MIB = 32


def _rss_settled(pid: int, bound: float, timeout: float) -> float:
    """The process's RSS (MiB) once it is at most `bound`, or the last seen after `timeout` s.

    Freed memory goes back to the system at the proxy's next heap check (jhsingle_native_proxy
    .heap, every 2 s), so the figure that matters is the one a moment after a round, not the
    one at its end. The wait is a bound for the poll; the assertion is on memory, not on time.
    """
    seen: list[float] = []
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: seen.append(rss_mib(pid)) or seen[-1] <= bound,
            timeout,
            interval=0.2,
            what="the RSS to settle",
        )
    return seen[-1]


def test_aborted_uploads_give_their_memory_back(start_proxy):
    """Rounds of uploads aborted at 1 MiB, 25 senders at a time. Before issue 18 the first round
    of 500 took the proxy from 42 to 99 MiB, and five more to 127: free memory that glibc kept
    (see jhsingle_native_proxy.heap). After every round the RSS must be back within
    ABORTED_UPLOADS_BOUND_MIB of the start."""
    rounds = scale(3, 6)
    per_round = scale(300, 500)
    proxy = start_proxy()
    proxy.get("echo")
    fds_before = open_fds(proxy.pid)
    start = rss_mib(proxy.pid)
    bound = start + ABORTED_UPLOADS_BOUND_MIB
    at_end, settled = [], []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(25) as pool:
        for _ in range(rounds):
            list(pool.map(lambda _: _abort_upload(proxy.port, sent=2**20), range(per_round)))
            at_end.append(round(rss_mib(proxy.pid)))
            # The senders are gone as soon as their bytes are in the kernel's buffers: the
            # proxy is still relaying many of them; the round is over when they are closed.
            wait_for(
                lambda: open_fds(proxy.pid) <= fds_before + 10,
                timeout=30,
                what="the round's connections to be closed",
            )
            settled.append(round(_rss_settled(proxy.pid, bound, timeout=20)))
    record(
        "aborted uploads",
        rounds=rounds,
        uploads_per_round=per_round,
        rss_mib_start=round(start),
        rss_mib_at_round_ends=at_end,
        rss_mib_settled=settled,
        proxy_peak_rss_mib=rss_mib(proxy.pid, "VmHWM"),
    )
    assert max(settled) <= bound, (start, settled)
    assert proxy.get("echo").status == 200
    own = _own_log(proxy)
    assert "Traceback" not in own and "] 500 " not in own


def test_slow_clients_do_not_slow_the_owner_down(start_proxy):
    """500 connections sending a header byte a second, and slow readers of large bodies."""
    loris_count = 500
    seconds = scale(6, 30)
    proxy = start_proxy()
    fds_before = open_fds(proxy.pid)
    loris = []
    readers = []
    try:
        for _ in range(loris_count):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.setblocking(False)
            loris.append(sock)
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                f"GET {PREFIX}download?n={200 * 2**20} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            readers.append(sock)
        header = f"GET {PREFIX}echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode() + b"a" * 600
        latencies = []
        fds_during = 0
        for second in range(seconds):
            for sock in loris:
                with contextlib.suppress(OSError):
                    sock.send(header[second : second + 1])
            for sock in readers:
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.recv(1024)
            began = time.monotonic()
            assert proxy.get("echo", timeout=20).status == 200
            latencies.append((time.monotonic() - began) * 1000)
            fds_during = max(fds_during, open_fds(proxy.pid))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    finally:
        for sock in loris + readers:
            sock.close()
    wait_for(lambda: open_fds(proxy.pid) <= fds_before + 10, 20, what="descriptors back")
    record(
        "slow clients",
        slowloris=loris_count,
        slow_readers=len(readers),
        owner_requests=len(latencies),
        owner_max_ms=max(latencies),
        owner_median_ms=sorted(latencies)[len(latencies) // 2],
        fds_during=fds_during,
        fds_after=open_fds(proxy.pid),
        proxy_peak_rss_mib=rss_mib(proxy.pid, "VmHWM"),
    )
    assert proxy.process.poll() is None


def test_sigterm_under_load_ends_everything_in_time(start_proxy):
    """SIGTERM while HTTP load, websockets and slow clients run: out within grace + 2 s."""
    grace = 2.0
    proxy = start_proxy(
        ["--shutdown-grace", str(grace)],
        app=["sh", "-c", f"{sys.executable} {ECHO_APP} {{port}} & sleep 1000 & wait"],
    )
    wrk = start_wrk(proxy.url("echo"), 200, 30)
    loris = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10) for _ in range(100)]
    for sock in loris:
        sock.sendall(b"GET " + PREFIX.encode() + b"echo HTTP/1.1\r\nHost: 1")

    async def websockets_then_term():
        import aiohttp

        async with aiohttp.ClientSession() as session:
            sockets = [
                await session.ws_connect(f"ws://127.0.0.1:{proxy.port}{PREFIX}ws")
                for _ in range(50)
            ]
            await asyncio.sleep(1.0)  # let the HTTP load reach full speed
            tree = process_tree(proxy.pid)
            sent_at = time.monotonic()
            proxy.process.send_signal(signal.SIGTERM)
            while proxy.process.poll() is None and time.monotonic() - sent_at < 30:
                await asyncio.sleep(0.05)
            took = time.monotonic() - sent_at
            for ws in sockets:
                await ws.close()
            return tree, took

    try:
        tree, took = asyncio.run(websockets_then_term())
    finally:
        for sock in loris:
            sock.close()
        wrk.kill()
        wrk.wait(5)
    left = _live(tree)
    record(
        "shutdown",
        grace_s=grace,
        s_to_exit=took,
        processes_in_tree=len(tree) + 1,
        left_running=len(left),
        exit_status=proxy.process.returncode,
    )
    assert proxy.process.returncode == 0
    assert took <= grace + 2
    assert left == []


def test_mode_is_reported():
    record("run", mode=MODE)


def test_a_slow_or_dead_hub_keeps_logged_in_viewers_working(tmp_path):
    """The hub frozen (SIGSTOP): viewers already known keep working from the cache, a new
    token gets the 503 page within --aiohttp-request-timeout, activity reports wait, and
    nothing of the proxy blocks or exits. After SIGCONT, new viewers get in again."""
    import requests

    from hub import start_hub, stop_hub

    hub = start_hub(tmp_path / "hub", extra={"": {"proxy": ["--aiohttp-request-timeout", "3"]}})
    try:
        hub.ensure_users("alice")
        hub.start_server("alice")
        proxy_pid = hub.server_pid("alice")
        session = hub.login("alice")
        url = f"{hub.url}/user/alice/echo"
        assert session.get(url).status_code == 200
        token = hub.user_token("alice")
        os.kill(hub.process.pid, signal.SIGSTOP)
        try:
            cached = []
            for _ in range(10):
                began = time.monotonic()
                assert session.get(url, timeout=30).status_code == 200
                cached.append((time.monotonic() - began) * 1000)
            began = time.monotonic()
            fresh = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=30)
            fresh_s = time.monotonic() - began
            assert fresh.status_code == 503
            assert "Traceback" not in fresh.text
            # The bound applied is --aiohttp-request-timeout's, as the proxy's log line (in the
            # hub's log: the spawner's output) says; ignoring the option, it would say 20 s.
            # A line, not a stopwatch: fresh_s is recorded, never asserted.
            said = "Cannot check the viewer with JupyterHub: JupyterHub did not answer within 3 s"
            assert said in hub.log()
        finally:
            os.kill(hub.process.pid, signal.SIGCONT)
        after = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=30)
        assert after.status_code == 200
        assert pid_alive(proxy_pid)
        record(
            "hub frozen",
            cached_viewer_requests=len(cached),
            cached_viewer_max_ms=max(cached),
            new_token_answer=fresh.status_code,
            new_token_s=fresh_s,
            after_sigcont=after.status_code,
        )
    finally:
        stop_hub(hub)


def test_a_hub_answering_500_gets_503_pages_and_retried_reports(start_proxy):
    """A hub whose API answers 500 to everything (a stand-in on loopback, as only a broken
    hub would): identified requests get the 503 page, reports are retried, the proxy stays."""
    import http.server

    class Broken(http.server.BaseHTTPRequestHandler):
        def _fail(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _fail

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}/hub/api"
        proxy = start_proxy(
            ["--last-activity-interval", "1"],
            authtype="oauth",
            wait="listening",
            env={
                "JUPYTERHUB_API_TOKEN": "t" * 32,
                "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
                "JUPYTERHUB_API_URL": api,
                "JUPYTERHUB_ACTIVITY_URL": api + "/users/alice/activity",
                "JUPYTERHUB_USER": "alice",
            },
        )
        proxy.wait_log("The app is ready")
        answers = [
            request(proxy.port, "GET", PREFIX + "echo", headers={"Authorization": "token x"})
            for _ in range(5)
        ]
        assert {a.status for a in answers} == {503}
        proxy.wait_log("The hub refused the activity report: 500", count=2, timeout=30)
        record("hub 500", identified_requests=len(answers), answered="503 page")
        assert proxy.process.poll() is None
        assert "Traceback" not in _own_log(proxy)
    finally:
        server.shutdown()
        server.server_close()
