"""A real JupyterHub for the tests: pip's jupyterhub, npm's configurable-http-proxy, sqlite in a
temp dir, a dummy authenticator with a password, and a local-process spawner whose command is
this project's CLI in front of the echo app. Everything runs on 127.0.0.1 and is stopped by PID.

The hub is the installed jupyterhub, or with JHSNP_HUB_VERSION=4.1.6 (any version pip knows)
that version, in a virtual environment of its own made on first use; the servers it spawns
still run this project with the test's Python (see
docs/development.md, "Other JupyterHub versions").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import requests

from conftest import ECHO_APP, free_port, kill_pid, pid_alive, wait_for

PASSWORD = "correct horse"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

CONFIG = """
import sys
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
API_PORT = {proxy_api_port}
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{{API_PORT}}"
c.ConfigurableHTTPProxy.pid_file = {dir!r} + "/chp.pid"
c.JupyterHub.db_url = "sqlite:///" + {dir!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {dir!r} + "/cookie_secret"
c.JupyterHub.pid_file = {dir!r} + "/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"admin"}}
c.JupyterHub.allow_named_servers = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {dir!r} + "/home/{{username}}"
c.Spawner.http_timeout = {http_timeout}
c.Spawner.start_timeout = 60
c.Spawner.environment = {{"TEST_PIDFILE": {dir!r} + "/app-pids"}}
CMD = [{python!r}, "-m", "jhsingle_native_proxy", "--last-activity-interval", "1",
       "--forward-user-info", "--query-user-info", "--shutdown-grace", "2"]
APP = ["--", {python!r}, {echo_app!r}, "{{port}}"]
EXTRA = {extra_args!r}

def pre_spawn_hook(spawner):
    # Per-server extras, by server name, e.g. a slow-starting app for the readiness tests.
    spawner.cmd = CMD + EXTRA.get(spawner.name, {{}}).get("proxy", []) + APP \\
        + EXTRA.get(spawner.name, {{}}).get("app", [])
    extra_env = EXTRA.get(spawner.name, {{}}).get("env", {{}})
    spawner.environment = {{**spawner.environment, **extra_env}}
    spawner.ip = EXTRA.get(spawner.name, {{}}).get("ip", "")

c.Spawner.pre_spawn_hook = pre_spawn_hook
c.JupyterHub.load_groups = {{"friends": {{"users": ["carol"]}}}}
import jupyterhub
SHARES = ["shares"] if int(jupyterhub.__version__.split(".")[0]) >= 5 else []  # new in 5.0
c.JupyterHub.load_roles = [
    {{"name": "friends-use-alice", "groups": ["friends"],
      "scopes": ["access:servers!user=alice"]}},
    {{"name": "tester", "services": ["tester"],
      "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens", *SHARES,
                 "read:users:activity", "admin:groups", "list:users"]}},
]
c.JupyterHub.services = [{{"name": "tester", "api_token": {token!r}}}]
{more}
"""


class FormFields(HTMLParser):
    """The name/value pairs a browser would submit from the first form of a page."""

    def __init__(self):
        super().__init__()
        self.pairs: list[tuple[str, str]] = []
        self.forms = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms += 1
        elif tag == "input" and self.forms == 1 and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.pairs.append((a["name"], a.get("value") or ""))


@dataclass
class SpawnWatch:
    """One spawn: when it was requested, and when (or why not) the hub said it is ready."""

    requested_at: float
    ready_at: float | None = None
    failure: str | None = None
    thread: threading.Thread | None = None

    def wait(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"no ready or failed event within {timeout} s"


@dataclass
class Hub:
    process: subprocess.Popen
    url: str
    token: str
    dir: Path
    log_path: Path

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kw
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def major_version(self) -> int:
        """The hub's major version, from its API (JHSNP_HUB_VERSION may run an older one)."""
        version = requests.get(f"{self.url}/hub/api", timeout=30).json()["version"]
        return int(version.split(".")[0])

    def ensure_users(self, *names: str) -> None:
        self.api("POST", "/users", json={"usernames": list(names)})

    def server_model(self, user: str, name: str = "") -> dict | None:
        model = self.api("GET", f"/users/{user}").json()
        return model.get("servers", {}).get(name)

    def start_server(self, user: str, name: str = "", wait: bool = True, timeout: float = 60):
        self.ensure_users(user)
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        r = self.api("POST", path)
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        if wait:
            wait_for(
                lambda: (self.server_model(user, name) or {}).get("ready"),
                timeout,
                interval=0.2,
                what=f"{user}/{name} to be ready",
            )

    def spawn_watching_progress(self, user: str, name: str = "") -> SpawnWatch:
        """Request a spawn and follow the hub's progress events, in a thread (the hub holds the
        request up to its slow_spawn_timeout, 10 s), so that the moment the hub declares the
        server ready is recorded as it happens, not when a poll notices."""
        self.ensure_users(user)
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        watch = SpawnWatch(requested_at=time.time())

        def follow() -> None:
            try:
                r = self.api("POST", path)
                if r.status_code not in (201, 202):
                    watch.failure = f"the spawn request got {r.status_code}: {r.text[:300]}"
                    return
                with requests.get(
                    f"{self.url}/hub/api{path}/progress",
                    headers={"Authorization": f"token {self.token}"},
                    stream=True,
                    timeout=(10, 60),  # the hub sends a keepalive every 8 s
                ) as events:
                    for line in events.iter_lines(decode_unicode=True):
                        if not line or not line.startswith("data:"):
                            continue
                        event = json.loads(line[len("data:") :])
                        if event.get("ready"):
                            watch.ready_at = time.time()
                            return
                        if event.get("failed"):
                            watch.failure = str(event.get("message"))
                            return
                watch.failure = "the progress events ended without ready or failed"
            except Exception as e:  # the test reports it; a thread cannot raise into it
                watch.failure = f"following the spawn failed: {e!r}"

        watch.thread = threading.Thread(target=follow, daemon=True)
        watch.thread.start()
        return watch

    def stop_server(self, user: str, name: str = "", timeout: float = 30) -> None:
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        self.api("DELETE", path)
        wait_for(
            lambda: self.server_model(user, name) is None,
            timeout,
            interval=0.2,
            what=f"{user}/{name} to stop",
        )

    def server_pid(self, user: str, name: str = "") -> int:
        return int(self.server_model(user, name)["state"]["pid"])

    def user_token(self, user: str) -> str:
        r = self.api("POST", f"/users/{user}/tokens", json={"note": "test"})
        assert r.status_code in (200, 201), r.text
        return r.json()["token"]

    def login(self, user: str) -> requests.Session:
        """Log in through the hub's form, as a person would."""
        session = requests.Session()
        session.headers.update(BROWSER)
        page = session.get(f"{self.url}/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        data = {"username": user, "password": PASSWORD}
        if xsrf:
            data["_xsrf"] = xsrf.group(1)
        r = session.post(f"{self.url}/hub/login", data=data, allow_redirects=False, timeout=30)
        assert r.status_code == 302, (r.status_code, r.text[:500])
        return session

    def get_as(self, session: requests.Session, url: str, **kw) -> requests.Response:
        """GET through the OAuth dance, approving the hub's "authorize access" page if shown
        (JupyterHub asks a user to confirm before using somebody else's server)."""
        response = session.get(url, **kw)
        if "/hub/api/oauth2/authorize" in response.url and response.status_code == 200:
            fields = FormFields()
            fields.feed(response.text)
            response = session.post(response.url, data=fields.pairs, **kw)
        return response

    def app_pids(self) -> list[int]:
        path = self.dir / "app-pids"
        return [int(x) for x in path.read_text().split()] if path.exists() else []


HUB_VERSION = os.environ.get("JHSNP_HUB_VERSION", "")


def hub_python() -> str:
    """The Python that runs JupyterHub: the test's own, or one with JHSNP_HUB_VERSION's hub.

    That one is a virtual environment made once per version under ~/.cache/jhsnp-test-hubs
    (XDG_CACHE_HOME respected), with the idle culler, which runs as a service of the hub.
    """
    if not HUB_VERSION:
        return sys.executable
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "jhsnp-test-hubs" / f"jupyterhub-{HUB_VERSION}"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"jupyterhub=={HUB_VERSION}",
                "jupyterhub-idle-culler",
            ],
            check=True,
        )
        (venv / "ready").touch()
    return str(python)


def start_hub(
    tmp: Path, *, extra: dict | None = None, more: str = "", http_timeout: float = 30
) -> Hub:
    tmp.mkdir(parents=True, exist_ok=True)
    port, hub_port, api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(16)
    config = tmp / "jupyterhub_config.py"
    config.write_text(
        CONFIG.format(
            port=port,
            hub_port=hub_port,
            proxy_api_port=api_port,
            dir=str(tmp),
            password=PASSWORD,
            token=token,
            python=sys.executable,
            echo_app=ECHO_APP,
            extra_args=extra or {},
            more=textwrap.dedent(more),
            http_timeout=http_timeout,
        )
    )
    log_path = tmp / "hub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(16)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [hub_python(), "-m", "jupyterhub", "-f", str(config)],
            cwd=str(tmp),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    hub = Hub(process, f"http://127.0.0.1:{port}", token, tmp, log_path)

    def up():
        if process.poll() is not None:
            raise AssertionError(f"jupyterhub exited:\n{hub.log()[-3000:]}")
        try:
            return requests.get(f"{hub.url}/hub/api", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, 60, interval=0.2, what="JupyterHub to answer")
    except BaseException:
        stop_hub(hub)
        raise
    return hub


def stop_hub(hub: Hub) -> None:
    """Stop the hub (it stops its servers and its proxy), then make sure of it by PID."""
    pids = hub.app_pids()
    chp_pid = None
    chp_file = hub.dir / "chp.pid"
    if chp_file.exists():
        try:
            chp_pid = int(chp_file.read_text().strip())
        except ValueError:
            chp_pid = None
    if hub.process.poll() is None:
        hub.process.send_signal(signal.SIGTERM)
        try:
            hub.process.wait(30)
        except subprocess.TimeoutExpired:
            hub.process.kill()
            hub.process.wait(10)
    # The hub runs in its own session: anything of it still alive goes with the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(hub.process.pid, signal.SIGKILL)
    for pid in [*pids, *([chp_pid] if chp_pid else [])]:
        kill_pid(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
