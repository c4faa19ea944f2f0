"""podman for the tests, and the top-level Dockerfile built with it once per session.

No container registry is reachable here, so the base image `debian:bookworm-slim` is made
locally with debootstrap (minbase) from the machine's Debian mirror and imported under that
name; it is kept in podman's storage, so later runs on the same machine skip that step. The
build never pulls (`--pull=never`). Podman runs with its own containers.conf, written to a temp
folder and named by CONTAINERS_CONF: runc as the runtime and explicit rlimits (on these machines
crun cannot start containers and the default rlimits are refused).

HTTPS from inside the build may be re-signed by a local CA that only the host's bundle holds:
pip gets that bundle the way the README tells corporate users to, as build secrets (a pip.conf
naming /run/secrets/ca.crt).

The session's `podman` and `image` fixtures (conftest.py) are made here; `docker_api` runs
podman's Docker-compatible API on a unix socket for DockerSpawner (tests/test_spawner.py).
Without podman (or runc, or root for debootstrap) the tests are skipped, except under CI (the
CI variable set), where that is a failure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BASE = "debian:bookworm-slim"
IMAGE = "localhost/jhsingle-native-proxy:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""


def unavailable(message: str) -> None:
    """Skip the test; fail instead under CI, which must never skip the image silently."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the image test must run)")
    pytest.skip(message)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Podman:
    """`podman` with this module's containers.conf; remembers the containers it started."""

    def __init__(self, directory: Path):
        self.directory = directory
        conf = directory / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.names: list[str] = []

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited with {result.returncode}:\n"
                f"{tail(result.stdout)}\n{tail(result.stderr)}"
            )
        return result

    def name(self) -> str:
        """A fresh container name, removed by `remove_all` whatever happens."""
        name = f"jhsnp-test-{uuid.uuid4().hex[:12]}"
        self.names.append(name)
        return name

    def remove(self, name: str) -> None:
        self("rm", "-f", "--time", "5", name, timeout=60, check=False)

    def remove_all(self) -> None:
        for name in self.names:
            self.remove(name)

    def image_id(self, image: str) -> str | None:
        result = self("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def build(self, tag: str, *args: str, timeout: float = 600, fail: bool = False) -> float:
        """Build the Dockerfile as `tag`; return the seconds it took. The image it replaces is
        removed, so repeated runs leave no dangling images (its layers stay as the cache).
        With `fail`, the build must fail instead: return its output."""
        previous = self.image_id(tag)
        secrets = []
        if HOST_CA.is_file():
            pip_conf = self.directory / "pip.conf"
            pip_conf.write_text("[global]\ncert = /run/secrets/ca.crt\n")
            secrets = ["--secret", f"id=pip.conf,src={pip_conf}"]
            secrets += ["--secret", f"id=ca.crt,src={HOST_CA}"]
        log = self.directory / f"build-{tag.rsplit(':', 1)[-1]}.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            result = subprocess.run(
                ["podman", "build", "--pull=never", "--network=host", *secrets, *args]
                + ["--tag", tag, "--file", str(DOCKERFILE), str(ROOT)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        took = time.monotonic() - started
        text = log.read_text(errors="replace")
        if fail:
            assert result.returncode != 0, f"podman build succeeded:\n{tail(text, 60)}"
            return text
        assert result.returncode == 0, f"podman build failed:\n{tail(text, 60)}"
        current = self.image_id(tag)
        if previous and previous != current:
            self("rmi", previous, check=False)
        return took


def debian_mirror(suite: str = "bookworm") -> str:
    """The Debian mirror of this machine's apt sources for `suite`, or deb.debian.org."""
    sources = Path("/etc/apt")
    for path in [
        sources / "sources.list",
        *sorted(sources.glob("sources.list.d/*.sources")),
        *sorted(sources.glob("sources.list.d/*.list")),
    ]:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822: blocks of "Field: value" lines
            for block in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", block, re.M))
                if (
                    suite in fields.get("Suites", "").split()
                    and "deb" in fields.get("Types", "").split()
                ):
                    for uri in fields.get("URIs", "").split():
                        if uri.startswith("http"):
                            return uri.rstrip("/")
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if (
                    len(words) >= 3
                    and words[:1] == ["deb"]
                    and words[2] == suite
                    and words[1].startswith("http")
                ):
                    return words[1].rstrip("/")
    return "http://deb.debian.org/debian"


def ensure_base(podman: Podman, directory: Path) -> str:
    """Make `debian:bookworm-slim` with debootstrap unless podman already has it."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return "cached"
    if os.geteuid() != 0:
        unavailable(f"{BASE} is not in podman's storage, and debootstrap needs root to make it")
    debootstrap = shutil.which("debootstrap", path=os.environ["PATH"] + ":/usr/sbin:/sbin")
    if debootstrap is None:
        unavailable("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = directory / "rootfs"
    mirror = debian_mirror()
    started = time.monotonic()
    try:
        result = subprocess.run(
            [debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, (
            f"debootstrap from {mirror} failed:\n{tail(result.stdout)}\n{tail(result.stderr)}"
        )
        # Like the real slim image: no package lists, no downloaded packages.
        for leftover in [
            *rootfs.glob("var/lib/apt/lists/*_*"),
            *rootfs.glob("var/cache/apt/*.bin"),
            *rootfs.glob("var/cache/apt/archives/*.deb"),
        ]:
            leftover.unlink()
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            imported = subprocess.run(
                ["podman", "import", "-", BASE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                env=podman.env,
                timeout=300,
            )
        finally:
            tar.stdout.close()
            tar.wait(60)
        assert imported.returncode == 0 and tar.returncode == 0, imported.stderr
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return f"debootstrap from {mirror} and import: {time.monotonic() - started:.0f}s"


def require_podman() -> None:
    """Skip (fail under CI) unless podman and runc, which podman runs with here, are installed."""
    if shutil.which("podman") is None:
        unavailable("podman is not installed (apt-get install podman runc debootstrap)")
    if shutil.which("runc", path=os.environ["PATH"] + ":/usr/sbin:/sbin") is None:
        unavailable("runc is not installed (apt-get install runc): podman runs with runc here")


def build_image(podman: Podman, directory: Path) -> str:
    """The Dockerfile, built as the `IMAGE` tag (the base made first if podman lacks it)."""
    base = ensure_base(podman, directory)
    took = podman.build(IMAGE)
    sys.stderr.write(f"\n[image] base: {base}; build: {took:.0f}s\n")
    return IMAGE


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: how podman's Docker-compatible API is reached."""

    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def docker_api_get(socket_path: str, path: str) -> tuple[int, bytes]:
    """GET `path` of the Docker API on `socket_path`: (status, body)."""
    connection = _UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def docker_api(podman: Podman, directory: Path) -> Iterator[str]:
    """`podman system service` on a unix socket in `directory`, with the tests' containers.conf:
    yields the socket's path once `/_ping` answers; the service is ended by its PID on the way
    out. Containers it started outlive it (conmon holds them): their owner removes them."""
    socket_path = str(directory / "podman.sock")
    log = open(directory / "podman-service.log", "wb")  # noqa: SIM115 (closed in finally)
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=podman.env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def pong():
            if service.poll() is not None:
                raise AssertionError(
                    f"podman system service exited with {service.returncode}:\n"
                    + tail((directory / "podman-service.log").read_text(errors="replace"))
                )
            try:
                return docker_api_get(socket_path, "/_ping") == (200, b"OK")
            except OSError:
                return False

        wait_for(pong, 60, interval=0.1, what="podman's Docker API")
        yield socket_path
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(10)
        log.close()
