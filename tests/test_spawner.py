"""Our image spawned by a real JupyterHub with DockerSpawner, through podman's Docker API.

The layout is docs/deployment.md's "hub on the host, servers on the host's network": this test
reads that page's jupyterhub_config.py block and runs it (tests/hub.py's hub around it), with
only the socket, the image's tag, a container-name prefix and the per-server commands laid over.
A login spawns the default server (the image's own CMD, the demo page); two named servers run
an `--app static` site and the echo app (tests/apps/echo_app.py, mounted read-only) for a
websocket, all seen in Chromium through the hub. The console answers the owner and refuses a
user the app is shared with; stopping a server from the hub's API removes its container.

The image is the session's (tests/podman_image.py builds it once). podman's API service is
started here and ended by PID; every container of this module's name prefix is removed at the
end, whatever happened. Marked `image`: skipped without podman, a failure under CI.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import uuid
from pathlib import Path

import pytest

from browser import chromium_page, screenshot
from conftest import ECHO_APP, wait_for
from hub import PASSWORD, start_hub, stop_hub
from podman_image import docker_api, docker_api_get, tail, unavailable

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

DEPLOYMENT = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
EXCERPT_FIRST_LINE = (
    "# jupyterhub_config.py: the hub on the host, its servers on the host's network"
)
SHARE = "/srv/jhsnp-test"  # the test's read-only folder inside the containers
STATIC_MARKER = "served by the static preset, spawned by DockerSpawner"
# Per named server, the command laid over the image's CMD ("" keeps the CMD: the demo).
COMMANDS = {
    "static": ["jhsingle-native-proxy", "--app", "static", "--presentation-path", f"{SHARE}/site"],
    "echo": ["jhsingle-native-proxy", "--", "python3", f"{SHARE}/echo_app.py", "{port}"],
}
WAIT_MS = 60_000


def documented_config() -> str:
    """The jupyterhub_config.py block of docs/deployment.md's host-network section."""
    text = DEPLOYMENT.read_text()
    found = re.search(r"```python\n(" + re.escape(EXCERPT_FIRST_LINE) + r"\n.*?)```", text, re.S)
    assert found, f"docs/deployment.md has no python block starting {EXCERPT_FIRST_LINE!r}"
    return found.group(1)


def overrides_for_the_test(socket_path: str, image: str, prefix: str, share: Path) -> str:
    """What the test lays over the documented block: where podman is, which image, and the
    per-server commands (the documented hook still picks the port)."""
    return f"""
c.DockerSpawner.client_kwargs = {{"base_url": "unix://{socket_path}"}}
c.DockerSpawner.image = {image!r}
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.prefix = {prefix!r}
c.DockerSpawner.volumes = {{{str(share)!r}: {{"bind": {SHARE!r}, "mode": "ro"}}}}
c.Spawner.environment = {{}}  # tests/hub.py's pidfile is a host path
COMMANDS = {COMMANDS!r}


def pick_port_and_command(spawner):
    pick_a_free_port(spawner)
    if spawner.name in COMMANDS:
        spawner.cmd = COMMANDS[spawner.name]


c.Spawner.pre_spawn_hook = pick_port_and_command
"""


def make_share(directory: Path) -> Path:
    """The folder mounted at SHARE: a static site and the echo app, readable by uid 1000."""
    site = directory / "site"
    site.mkdir(parents=True)
    (site / "index.html").write_text(
        f"<!doctype html><title>static</title><h1 id='marker'>{STATIC_MARKER}</h1>\n"
    )
    shutil.copy(ECHO_APP, directory / "echo_app.py")
    for path in [directory, site]:
        path.chmod(0o755)
    for path in [site / "index.html", directory / "echo_app.py"]:
        path.chmod(0o644)
    return directory


def containers(socket_path: str, prefix: str) -> dict[str, dict]:
    """podman's containers (running or not) whose name starts with `prefix`, by name."""
    filters = json.dumps({"name": [f"^{prefix}"]})
    status, body = docker_api_get(
        socket_path, f"/containers/json?all=true&filters={urllib.parse.quote(filters)}"
    )
    assert status == 200, body[:500]
    listed = {}
    for entry in json.loads(body):
        for name in entry.get("Names") or []:
            if name.lstrip("/").startswith(prefix):
                listed[name.lstrip("/")] = entry
    return listed


def remove_containers(podman, prefix: str) -> None:
    """Remove every container whose name starts with `prefix` (podman's CLI: no service needed)."""
    listed = podman("ps", "--all", "--format", "{{.Names}}", check=False).stdout.split()
    for name in listed:
        if name.startswith(prefix):
            podman.remove(name)


@pytest.fixture(scope="module")
def spawner_hub(podman, image, tmp_path_factory):
    """A hub spawning `image` with the documented host-network config; yields (hub, socket,
    container-name prefix)."""
    try:
        import dockerspawner  # noqa: F401 (the hub imports it; a clear message if it cannot)
    except ImportError:
        unavailable("dockerspawner is not installed (pip install -e '.[test]')")
    directory = tmp_path_factory.mktemp("spawner")
    prefix = f"jhsnp-spawner-{uuid.uuid4().hex[:8]}"
    share = make_share(directory / "share")
    with docker_api(podman, directory) as socket_path:
        hub = None
        try:
            config = documented_config() + overrides_for_the_test(socket_path, image, prefix, share)
            hub = start_hub(directory / "hub", more=config)
            hub.ensure_users("alice", "carol")
            hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
            yield hub, socket_path, prefix
        finally:
            if hub is not None:
                stop_hub(hub)  # the hub stops (and so removes) its servers' containers
            remove_containers(podman, prefix)


def container_of(socket_path: str, prefix: str, server: str = "") -> dict:
    """The inspected container of alice's `server`, as DockerSpawner named it."""
    name = f"{prefix}-alice" + (f"--{server}" if server else "")
    status, body = docker_api_get(socket_path, f"/containers/{name}/json")
    assert status == 200, (name, sorted(containers(socket_path, prefix)))
    return json.loads(body)


def wait_ready(hub, server: str) -> None:
    """Wait until the hub says alice's `server` is ready; the hub's log in the failure (a failed
    container is removed, its own log with it)."""
    try:
        wait_for(
            lambda: (hub.server_model("alice", server) or {}).get("ready"),
            WAIT_MS / 1000,
            interval=0.2,
            what=f"alice's server {server!r}",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{tail(hub.log(), 60)}") from None


def test_a_login_spawns_our_image_and_its_apps_answer_in_chromium(spawner_hub, podman, image):
    hub, socket_path, prefix = spawner_hub
    with chromium_page() as page:
        # The hub's login sends a user without a server to spawn one: the image's own CMD.
        page.goto(f"{hub.url}/hub/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(re.compile(r".*/user/alice/$"), timeout=WAIT_MS)
        page.wait_for_selector("h1", timeout=WAIT_MS)
        assert page.inner_text("h1") == "It works"
        screenshot(page, "dockerspawner-demo")

        demo = container_of(socket_path, prefix)
        assert demo["Config"]["Image"] == image
        assert demo["HostConfig"]["NetworkMode"] == "host"
        assert demo["State"]["Running"] is True
        image_cmd = podman("image", "inspect", "--format", "{{json .Config.Cmd}}", image)
        assert demo["Config"]["Cmd"] == json.loads(image_cmd.stdout)
        assert json.loads(image_cmd.stdout)[0] == "jhsingle-native-proxy"

        # Two named servers, started from the hub's API, each with a port of its own.
        for name in COMMANDS:
            hub.start_server("alice", name, wait=False)
        for name in COMMANDS:
            wait_ready(hub, name)
        ports = {n: service_port(socket_path, prefix, n) for n in ["", *COMMANDS]}
        assert len(set(ports.values())) == 3, ports

        page.goto(f"{hub.url}/user/alice/static/")
        assert page.inner_text("#marker") == STATIC_MARKER
        screenshot(page, "dockerspawner-static")

        # The echo app's page opens a websocket back through the hub's proxy and ours.
        page.goto(f"{hub.url}/user/alice/echo/wspage")
        page.wait_for_function(
            "document.getElementById('out') && "
            "document.getElementById('out').textContent.startsWith('echo:')",
            timeout=WAIT_MS,
        )
        assert page.inner_text("#out") == "echo: ping-from-browser"
        screenshot(page, "dockerspawner-websocket")


def service_port(socket_path: str, prefix: str, server: str) -> int:
    """The port the spawner gave alice's `server` (the pre-spawn hook's choice): its proxy is told
    to listen there on the host's loopback, and the hub's proxy routes the server there."""
    env = dict(e.split("=", 1) for e in container_of(socket_path, prefix, server)["Config"]["Env"])
    url = urllib.parse.urlsplit(env["JUPYTERHUB_SERVICE_URL"])
    path = "/user/alice/" + (f"{server}/" if server else "")
    assert (url.scheme, url.hostname, url.path) == ("http", "127.0.0.1", path), url
    return url.port


def test_the_console_answers_the_owner_and_refuses_a_user_the_app_is_shared_with(spawner_hub):
    hub, _, _ = spawner_hub
    hub.start_server("alice", timeout=WAIT_MS / 1000)
    url = f"{hub.url}/user/alice/_jhsnp/"
    owner = hub.get_as(hub.login("alice"), url)
    assert owner.status_code == 200 and "Restart the app" in owner.text
    # carol may use alice's app (the friends group), not its console.
    carol = hub.login("carol")
    app = hub.get_as(carol, f"{hub.url}/user/alice/")
    assert app.status_code == 200 and "It works" in app.text
    refused = hub.get_as(carol, url)
    assert refused.status_code == 403 and "Restart the app" not in refused.text


def test_stopping_a_server_from_the_hub_removes_its_container(spawner_hub, podman):
    hub, socket_path, prefix = spawner_hub
    hub.start_server("alice", timeout=WAIT_MS / 1000)
    name = container_of(socket_path, prefix)["Name"].lstrip("/")
    hub.stop_server("alice", timeout=60)  # the REST API's DELETE
    wait_for(
        lambda: name not in containers(socket_path, prefix),
        30,
        interval=0.2,
        what=f"the container {name} to be removed",
    )
    listed = podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
    assert name not in listed, listed
    for server in COMMANDS:
        if hub.server_model("alice", server):
            hub.stop_server("alice", server, timeout=60)
    wait_for(
        lambda: not containers(socket_path, prefix),
        30,
        interval=0.2,
        what="every container of the test to be removed",
    )
