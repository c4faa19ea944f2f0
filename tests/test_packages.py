"""The repository's packages, installed for real from the package index: the real CLI, a real
git repository over file://, and tests/apps/imports_app.py, which imports the packages it is
told to and says where each came from.

The packages are small pure-Python ones the test environment lacks (inflection, termcolor).
The installer is chosen by the app's PATH: the test venv's bin (it has uv) for uv, the system's
bin only for pip. Every environment goes into the test's own --env-cache.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import tornado
from test_checkout import git

from conftest import APPS, console_form, wait_for

IMPORTS_APP = (APPS / "imports_app.py").read_text()
VENV_BIN = os.path.dirname(sys.executable)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
MISSING = "jhsnp-no-such-package-zz9"


class Repository:
    """The app's repository: app.py (imports_app.py) and what the test declares."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir()
        git(path, "init", "--quiet", "--initial-branch=main")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def push(self, files: dict[str, str]) -> str:
        (self.path / "app.py").write_text(IMPORTS_APP)
        (self.path / "version.txt").write_text(str(len(files)))
        for name, text in files.items():
            (self.path / name).write_text(text)
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", "a push")
        return git(self.path, "rev-parse", "HEAD").strip()


@pytest.fixture
def repository(tmp_path) -> Repository:
    return Repository(tmp_path / "upstream")


def environments(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.is_dir()) if cache.exists() else []


def start_app(
    start_proxy, repository, tmp_path, modules, *more, path=VENV_BIN, wait="ready", env=None
):
    """The proxy with --repo, running app.py importing `modules`."""
    proxy = start_proxy(
        [
            "--repo", repository.url, "--repofolder", str(tmp_path / "work"),
            "--env-cache", str(tmp_path / "cache"), "--ready-timeout", "20", *more,
        ],
        app=[sys.executable, "{repofolder}/app.py", "{port}", *modules],
        env={"PATH": f"{path}:{SYSTEM_PATH}" if path else SYSTEM_PATH, **(env or {})},
        wait="listening",
    )  # fmt: skip
    if wait == "ready":
        proxy.wait_ready(timeout=120)
    return proxy


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_apps_packages_are_installed_once_then_reused(
    start_proxy, repository, tmp_path, installer
):
    # tornado is the image's (the test venv's): used from there, not installed again.
    repository.push({"requirements.txt": "inflection\ntornado>=6\n"})
    path = VENV_BIN if installer == "uv" else ""
    cache = tmp_path / "cache"
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection", "tornado"], path=path)
    body = proxy.get("").body.decode()
    assert f"inflection 0.5.1 {cache}" in body, body  # from the environment, not the venv's
    assert f"tornado ? {os.path.dirname(tornado.__file__)}/" in body, body
    assert not list(cache.glob("*/lib/python*/site-packages/tornado*")), "installed again"
    assert f"Building the environment {environments(cache)[0]} with {installer}" in "\n".join(
        proxy.status()["lines"]
    )
    built = environments(cache)
    assert len(built) == 1
    proxy.stop()

    # The same requirements again: the same environment, nothing installed.
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection"], path=path)
    lines = "\n".join(proxy.status()["lines"])
    assert f"Using the environment {built[0]} (built before)" in lines
    assert "Building" not in lines and "Installing" not in proxy.log()
    assert environments(cache) == built
    proxy.stop()

    # A changed requirement: a new environment; the old one is kept (the cache keeps three).
    repository.push({"requirements.txt": "inflection\ntornado>=6\ntermcolor\n"})
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection", "termcolor"], path=path)
    assert "termcolor" in proxy.get("").body.decode()
    assert len(environments(cache)) == 2 and built[0] in environments(cache)


def test_everything_already_there_installs_nothing(start_proxy, repository, tmp_path):
    """The image has it all (the 0.8.3 way): no environment, no installer started."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    calls = tmp_path / "uv-calls"
    (fake / "uv").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    (fake / "uv").chmod(0o755)
    repository.push({"requirements.txt": "tornado>=6\npackaging\n"})
    proxy = start_app(start_proxy, repository, tmp_path, ["tornado"], path=str(fake))
    assert "tornado" in proxy.get("").body.decode()
    assert not calls.exists()
    assert environments(tmp_path / "cache") == []
    assert "The 2 packages requirements.txt declares are installed" in proxy.status()["lines"]


def test_no_install_never_installs(start_proxy, repository, tmp_path):
    repository.push({"requirements.txt": "inflection\n"})
    proxy = start_app(
        start_proxy, repository, tmp_path, ["inflection"], "--no-install", wait="listening"
    )
    proxy.get("", headers={"Accept": "text/html"})
    wait_for(lambda: proxy.status().get("state") == "failed", 30, what="the app to fail")
    assert "cannot import inflection" in "\n".join(proxy.status()["lines"])
    assert environments(tmp_path / "cache") == []


def test_a_requirement_that_does_not_exist_then_a_push_that_fixes_it(
    start_proxy, repository, tmp_path
):
    repository.push(
        {
            "requirements.txt": (
                f"--extra-index-url http://alice:s3cretTOKEN@127.0.0.1:9/simple\n{MISSING}==1.0\n"
            )
        }
    )
    # The unreachable index is not asked again and again (an admin's setting the app inherits).
    quick = {"UV_HTTP_RETRIES": "0"}
    modules = ["inflection"]
    proxy = start_app(start_proxy, repository, tmp_path, modules, wait="listening", env=quick)
    proxy.get("", headers={"Accept": "text/html"})
    wait_for(lambda: proxy.status().get("state") == "failed", 120, what="the install to fail")
    assert environments(tmp_path / "cache") == []  # nothing half-built is kept
    status = proxy.status()
    shown = "\n".join(status["lines"])
    assert MISSING in shown, shown  # uv's own error, for the owner
    assert "installing the app's packages failed" in status["reason"], status
    page = proxy.get("", headers={"Accept": "text/html"}).body.decode()
    for text in (shown, page, status["reason"], proxy.log()):
        assert "s3cretTOKEN" not in text

    repository.push({"requirements.txt": "inflection\n"})
    proxy.get("", headers={"Accept": "text/html"})  # "Try again" is a reload
    wait_for(lambda: proxy.status().get("state") == "ready", 120, what="the app after the fix")
    assert "inflection 0.5.1" in proxy.get("").body.decode()


def test_a_python_console_script_of_the_image_runs_with_the_environments_python(
    start_proxy, repository, tmp_path
):
    """The image's `streamlit` (a script whose #! is the image's Python) would not see what the
    environment installed: it runs under the environment's Python."""
    scripts = tmp_path / "image-bin"
    scripts.mkdir()
    script = scripts / "imports-app"
    script.write_text(f"#!{sys.executable}\n" + IMPORTS_APP)
    script.chmod(0o755)
    repository.push({"requirements.txt": "inflection\n"})
    proxy = start_proxy(
        [
            "--repo", repository.url, "--repofolder", str(tmp_path / "work"),
            "--env-cache", str(tmp_path / "cache"), "--ready-timeout", "20",
        ],
        app=["imports-app", "{port}", "inflection"],
        env={"PATH": f"{scripts}:{VENV_BIN}:{SYSTEM_PATH}"},
        wait="listening",
    )  # fmt: skip
    proxy.wait_ready(timeout=120)
    body = proxy.get("").body.decode()
    assert f"python {tmp_path / 'cache'}" in body and "inflection 0.5.1" in body


def test_a_local_folder_with_install_requirements(start_proxy, tmp_path):
    folder = tmp_path / "dashboard"
    folder.mkdir()
    (folder / "app.py").write_text(IMPORTS_APP)
    (folder / "requirements.txt").write_text("inflection\n")
    args = ["--presentation-path", str(folder), "--env-cache", str(tmp_path / "cache")]
    app = [sys.executable, str(folder / "app.py"), "{port}", "inflection"]
    env = {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}"}
    proxy = start_proxy([*args, "--install-requirements"], app=app, env=env, wait="listening")
    proxy.wait_ready(timeout=120)
    assert "inflection 0.5.1" in proxy.get("").body.decode()
    proxy.stop()
    # Without the option, a local folder is the admin's: nothing is installed.
    proxy = start_proxy(args, app=app, env=env, wait="listening")
    proxy.get("", headers={"Accept": "text/html"})
    wait_for(lambda: proxy.status().get("state") == "failed", 30, what="the app to fail")


def test_publish_mode_installs_a_revisions_packages_before_it_goes_live(
    start_proxy, repository, tmp_path
):
    """A push that adds a package switches to a revision that has it; a push naming one that
    does not exist never goes live (the revision before serves on)."""
    repository.push({"requirements.txt": "inflection\n"})
    proxy = start_app(
        start_proxy, repository, tmp_path, ["inflection"],
        "--follow", "--follow-interval", "1", "--drain-timeout", "1", "--repobranch", "main",
    )  # fmt: skip

    def live() -> str:
        return (proxy.get("_jhsnp/revisions.json").json()["live"] or {}).get("commit", "")

    def state_of(commit: str) -> str:
        revisions = proxy.get("_jhsnp/revisions.json").json()["revisions"]
        return next((r["state"] for r in revisions if r["commit"] == commit), "")

    added = repository.push(
        {"requirements.txt": "inflection\ntermcolor\n", "imports.txt": "termcolor\n"}
    )
    wait_for(lambda: live() == added, 120, what="the revision with termcolor to go live")
    assert "termcolor" in proxy.get("").body.decode()
    broken = repository.push(
        {"requirements.txt": f"inflection\n{MISSING}\n", "imports.txt": "termcolor\n"}
    )
    wait_for(lambda: state_of(broken) == "failed", 120, what="the broken push to fail")
    revisions = proxy.get("_jhsnp/revisions.json").json()["revisions"]
    reason = next(r["reason"] for r in revisions if r["commit"] == broken)
    assert "installing the app's packages failed" in reason, reason
    assert live() == added and "termcolor" in proxy.get("").body.decode()


@pytest.mark.examples
def test_a_streamlit_app_through_the_preset_gets_its_package_in_chromium(
    start_proxy, repository, tmp_path
):
    """The preset's `streamlit` is the image's; the package is only in the environment."""
    from example_support import require

    require("streamlit")
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    app = "import inflection\nimport streamlit as st\n\n"
    app += 'st.title(inflection.titleize("from_the_repo"))\n'
    repository.push({"requirements.txt": "inflection\n", "streamlit_app.py": app})
    proxy = start_proxy(
        [
            "--app", "streamlit", "--presentation-path", "streamlit_app.py",
            "--repo", repository.url, "--repofolder", str(tmp_path / "work"),
            "--env-cache", str(tmp_path / "cache"), "--ready-timeout", "60",
        ],
        app=[],
        env={"PATH": f"{VENV_BIN}:{SYSTEM_PATH}"},
        wait="listening",
    )  # fmt: skip
    proxy.wait_ready(timeout=120)
    with chromium_page() as page:
        page.goto(proxy.url())
        expect(page.get_by_text("From The Repo")).to_be_visible(timeout=60000)
        screenshot(page, "packages-streamlit")


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append((int(entry), command))
    return found


@pytest.fixture
def silent_index():
    """An index URL whose server takes connections and never answers (an installer waits)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        yield f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
    finally:
        silent.close()


def installer_running(proxy) -> list[int]:
    return wait_for(
        lambda: [pid for pid, command in children(proxy.pid) if " pip compile " in command],
        60,
        what="uv to be running",
    )


def test_stopping_the_server_ends_an_install_under_way(
    start_proxy, repository, tmp_path, silent_index
):
    """SIGTERM to the proxy ends a waiting uv too, and the half-built environment is removed."""
    repository.push({"requirements.txt": f"--index-url {silent_index}\ninflection\n"})
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection"], wait="listening")
    installer = installer_running(proxy)
    assert proxy.status()["phase"] == "Installing 1 package"
    assert proxy.stop() == 0
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in installer), 10)
    assert environments(tmp_path / "cache") == []


def test_pull_and_restart_ends_a_stuck_install_and_brings_the_fix(
    start_proxy, repository, tmp_path, silent_index
):
    """The owner pushed a fix while an install hangs: the console's Pull and restart ends it."""
    repository.push({"requirements.txt": f"--index-url {silent_index}\ninflection\n"})
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection"], wait="listening")
    installer = installer_running(proxy)
    repository.push({"requirements.txt": "inflection\n"})
    assert proxy.request("POST", "_jhsnp/pull", **console_form(proxy)).status < 400
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in installer), 10)
    wait_for(lambda: proxy.status().get("state") == "ready", 120, what="the app after the pull")
    assert "inflection 0.5.1" in proxy.get("").body.decode()


def test_environment_yml_without_conda_installs_its_pip_list_and_says_so(
    start_proxy, repository, tmp_path
):
    yml = "dependencies:\n  - python=3.11\n  - pip\n  - libgdal\n  - pip:\n    - inflection\n"
    repository.push({"environment.yml": yml})
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection"])
    assert "inflection 0.5.1" in proxy.get("").body.decode()
    lines = "\n".join(proxy.status()["lines"])
    assert "environment.yml also names conda packages (libgdal)" in lines
    assert "no conda, mamba or micromamba was found" in lines
