"""Fixtures that run the real CLI in front of real small apps, on 127.0.0.1.

Every process a test starts is ended by the fixture in `finally`, by PID: the proxy with SIGTERM
(then SIGKILL), and every app instance that wrote itself into the test's pidfile with SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
APPS = TESTS / "apps"
ECHO_APP = str(APPS / "echo_app.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def raw_exchange(port: int, data: bytes, until: bytes = b"\r\n\r\n") -> bytes:
    """Send `data` as it is on a new connection and read the answer up to `until` (or the
    connection's end): for requests no HTTP client would write."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while until not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


def request(
    port: int, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 30
) -> Response:
    """One HTTP request with the path sent byte for byte as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


@dataclass
class Proxy:
    """A running `jhsingle-native-proxy` and what the test needs to talk to it."""

    process: subprocess.Popen
    port: int
    prefix: str
    log_path: Path
    pidfile: Path
    extra_pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{path}"

    def get(self, path: str = "", **kw) -> Response:
        return request(self.port, "GET", self.prefix + path, **kw)

    def request(self, method: str, path: str = "", **kw) -> Response:
        return request(self.port, method, self.prefix + path, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def app_pids(self) -> list[int]:
        if not self.pidfile.exists():
            return []
        return [int(x) for x in self.pidfile.read_text().split()]

    def status(self) -> dict:
        try:
            return self.get("_jhsnp/status", timeout=5).json()
        except (OSError, ValueError):
            return {}

    def wait_listening(self, timeout: float = 20) -> None:
        def listening():
            if self.process.poll() is not None:
                raise AssertionError(f"proxy exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, timeout, what="the proxy to listen")

    def wait_ready(self, timeout: float = 20) -> None:
        self.wait_listening(timeout)
        wait_for(lambda: self.status().get("state") == "ready", timeout, what="the app to be ready")

    def wait_log(self, text: str, timeout: float = 20, count: int = 1) -> None:
        wait_for(lambda: self.log().count(text) >= count, timeout, what=f"{text!r} in the log")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            for pid in self.app_pids() + self.extra_pids:
                kill_pid(pid)


class ProxyStarter:
    """Starts the real CLI, its files in `directory`; `cleanup()` ends every proxy it started.

    Call it as `start(args, app=[...])`: see `start_proxy`.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.started: list[Proxy] = []

    def __call__(
        self,
        args: list[str] | None = None,
        app: list[str] | None = None,
        *,
        prefix: str = "/user/alice/",
        env: dict | None = None,
        wait: str | None = "ready",
        port: int | None = None,
        cwd: str | None = None,
        authtype: str = "none",
        raw_argv: list[str] | None = None,
        launcher: list[str] | None = None,
    ) -> Proxy:
        """`raw_argv`, when given, is the whole command line after the program name;
        `launcher` comes before the program and must `exec` it (so the PID stays the proxy's)."""
        port = port or free_port()
        n = len(self.started)
        pidfile = self.directory / f"app-pids-{n}.txt"
        log_path = self.directory / f"proxy-{n}.log"
        if app is None:
            app = [sys.executable, ECHO_APP, "{port}"]
        if raw_argv is None:
            raw_argv = ["--authtype", authtype, "--port", str(port), *(args or []), "--", *app]
        argv = [*(launcher or []), sys.executable, "-m", "jhsingle_native_proxy", *raw_argv]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        environment["JUPYTERHUB_SERVICE_PREFIX"] = prefix
        environment["TEST_PIDFILE"] = str(pidfile)
        environment.update(env or {})
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=cwd or str(self.directory),
                stdin=subprocess.DEVNULL,
            )
        proxy = Proxy(process, port, prefix, log_path, pidfile)
        self.started.append(proxy)
        if wait == "ready":
            proxy.wait_ready()
        elif wait == "listening":
            proxy.wait_listening()
        return proxy

    def cleanup(self) -> None:
        for proxy in self.started:
            proxy.cleanup()


@pytest.fixture
def start_proxy(tmp_path):
    """Start the real CLI: `start_proxy(args, app=[...])`; stopped and cleaned up after the test."""
    start = ProxyStarter(tmp_path)
    try:
        yield start
    finally:
        start.cleanup()


@pytest.fixture(scope="module")
def start_module_proxy(tmp_path_factory):
    """`start_proxy` for a whole test module: what it starts is ended after the module's last test,
    so one proxy can serve many tests (fuzzing, where starting one per example costs too much)."""
    start = ProxyStarter(tmp_path_factory.mktemp("module-proxy"))
    try:
        yield start
    finally:
        start.cleanup()


USAGE_LINES = [
    "Usage: jhsingle-native-proxy [OPTIONS] [COMMAND]...",
    "Try 'jhsingle-native-proxy --help' for help.",
    "",
]


def cli_error(stderr: str, returncode: int | None) -> str:
    """The message of a CLI run that refused to start, after checking click's shape: a usage
    error (exit 2) is the usage line, where help is, a blank line and `Error: ...`; a start-up
    error (exit 1) is the `Error: ...` line alone. No traceback either way."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.rstrip("\n").split("\n")
    if returncode == 2:
        assert lines[:3] == USAGE_LINES, stderr
        lines = lines[3:]
    else:
        assert returncode == 1, (returncode, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0].removeprefix("Error: ")


def run_cli(
    args: list[str], env: dict | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run the CLI to completion (for options that make it exit)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "jhsingle_native_proxy", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field}")


def peak_rss_kib(pid: int) -> int:
    """The most memory the process has held so far."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    """The memory the process holds now."""
    return _status_kib(pid, "VmRSS")


async def ws_try(url: str, headers: dict) -> str:
    """Open a websocket and echo one message: `echo:hello`, or `refused:STATUS`."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as s, s.ws_connect(url, headers=headers) as ws:
            await ws.send_str("hello")
            msg = await ws.receive(timeout=10)
            return f"echo:{msg.data}"
    except aiohttp.WSServerHandshakeError as e:
        return f"refused:{e.status}"


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """podman with the tests' containers.conf (tests/podman_image.py), for the whole session;
    the containers it named are removed at the end. Skipped without podman, failed under CI."""
    from podman_image import Podman, require_podman

    require_podman()
    p = Podman(tmp_path_factory.mktemp("podman"))
    try:
        yield p
    finally:
        p.remove_all()


@pytest.fixture(scope="session")
def image(podman, tmp_path_factory) -> str:
    """The top-level Dockerfile, built once per session (its base made first if podman lacks it)."""
    from podman_image import build_image

    return build_image(podman, tmp_path_factory.mktemp("base"))


def pytest_terminal_summary(terminalreporter):
    """The reliability suite's figures, as one table, and as JSON in test-artifacts/."""
    import loadgen

    path = loadgen.save_figures()
    if path is None:
        return
    terminalreporter.section("reliability figures")
    for line in loadgen.figures_table():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(also in {path})")


def form_token(page: str | bytes) -> str:
    """The token the console page's forms carry."""
    text = page.decode() if isinstance(page, bytes) else page
    found = re.findall(r'<input type="hidden" name="_xsrf" value="([0-9a-f]{64})">', text)
    assert found and len(set(found)) == 1, "the console's forms carry no token"
    return found[0]


def console_form(proxy) -> dict:
    """What the console's forms send: their token, as a form body."""
    token = form_token(proxy.get("_jhsnp/", headers={"Accept": "text/html"}).body)
    return {
        "body": f"_xsrf={token}",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
