"""The release as a user gets it, and the files a maintainer edits to cut one (RELEASING.md).

`python -m build` runs on a copy of the tracked files (what a fresh clone of the tag holds, so
nothing a developer's checkout has lying about, such as a stale *.egg-info, can change the
result); `twine check --strict` judges both files as PyPI would; the sdist and the wheel must hold
the package with every page it serves and nothing else. The wheel alone (not the checkout) goes
into a fresh virtual environment, with its dependencies from the index, and runs README.md's demo
one-liner. The version is stated in `jhsingle_native_proxy/_version.py` only, and CHANGELOG.md
keeps an Unreleased section above released versions in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version
from test_hub import children_of

from conftest import free_port, kill_pid, pid_alive, request, wait_for
from jhsingle_native_proxy._version import __version__

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "jhsingle_native_proxy"
DEMO_TITLE = b"<title>jhsingle-native-proxy: demo app</title>"
# Files an sdist holds besides the package: setuptools' own, and ours that it adds.
SDIST_MUST = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE"}
SDIST_MAY = {"setup.cfg", "MANIFEST.in"}
# The variables that would make a subprocess import the checkout, or another environment's
# packages, instead of what the wheel installed.
NOT_INHERITED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


@functools.lru_cache(maxsize=1)
def tracked_files() -> tuple[str, ...]:
    """The repository's files as git has them: what a release is built from."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        if os.environ.get("CI"):
            pytest.fail("the release tests need a git checkout and git")
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout
    return tuple(n for n in listing.decode().split("\0") if n and (ROOT / n).is_file())


def package_files() -> set[str]:
    """Everything of the package that git tracks: each must be installed, pages included."""
    return {name for name in tracked_files() if name.startswith(PACKAGE + "/")}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env = {k: v for k, v in env.items() if not k.startswith("JUPYTERHUB_")}
    env.update(extra)
    return env


def find_uv() -> str | None:
    """uv from the test environment (the test extra installs it) or PATH: it makes the fresh
    environment in seconds; without it, venv and pip do."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def run(argv: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert done.returncode == 0, (
        f"{argv[:4]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


@dataclass
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> Dists:
    """`python -m build` on a copy of the tracked files: the sdist, and the wheel built from it."""
    source = tmp_path_factory.mktemp("release-source")
    for name in tracked_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    out = tmp_path_factory.mktemp("release-dist")
    argv = [sys.executable, "-m", "build", "--outdir", str(out), str(source)]
    uv = find_uv()
    env = clean_env()
    if uv:
        argv[3:3] = ["--installer", "uv"]
        env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"
    run(argv, timeout=240, env=env)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(sdist, wheel)


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel and its dependencies from the index; its bin."""
    venv = tmp_path_factory.mktemp("release-venv") / "venv"
    python = venv / "bin" / "python"
    uv = find_uv()
    env = clean_env()
    if uv:
        run([uv, "venv", "-q", "--python", sys.executable, str(venv)], timeout=60, env=env)
        run([uv, "pip", "install", "-q", "--python", str(python), str(dists.wheel)], 240, env=env)
    else:
        run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env)
        run([str(python), "-m", "pip", "install", "-q", str(dists.wheel)], timeout=300, env=env)
    return venv / "bin"


def test_sdist_holds_the_package_and_nothing_else(dists):
    with tarfile.open(dists.sdist) as sdist:
        top = f"{PACKAGE}-{__version__}/"
        names = {m.name.removeprefix(top) for m in sdist.getmembers() if m.isfile()}
        pkg_info = sdist.extractfile(top + "PKG-INFO").read().decode()
    assert f"\nVersion: {__version__}\n" in pkg_info
    missing = (SDIST_MUST | package_files()) - names
    assert not missing, f"the sdist lacks {sorted(missing)}"
    junk = sorted(
        n
        for n in names - SDIST_MUST - SDIST_MAY - package_files()
        if not n.startswith(f"{PACKAGE}.egg-info/")
    )
    assert not junk, f"the sdist holds files it should not: {junk}"


def test_wheel_holds_the_package_with_its_pages_and_license(dists):
    dist_info = f"{PACKAGE}-{__version__}.dist-info/"
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(dist_info + "METADATA").decode()
    package = {n for n in names if not n.startswith(dist_info)}
    assert package == package_files(), (
        f"missing: {sorted(package_files() - package)}; extra: {sorted(package - package_files())}"
    )
    assert dist_info + "licenses/LICENSE" in names
    assert f"\nVersion: {__version__}\n" in metadata
    assert "\nLicense-Expression: BSD-3-Clause\n" in metadata


def test_twine_check_strict_passes(dists):
    done = run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)],
        timeout=120,
        env=clean_env(),
    )
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_installed_wheel_runs_the_readme_demo(installed, tmp_path):
    """README.md's one-liner, run from the repository's root with the wheel's program."""
    probe = run(
        [str(installed / "python"), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
        timeout=60,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert probe.stdout.startswith(str(installed.parent)), probe.stdout  # not the checkout
    program = str(installed / "jhsingle-native-proxy")
    shown = run([program, "--version"], timeout=60, env=clean_env()).stdout
    assert __version__ in shown, shown

    port = free_port()
    demo = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "container/demo"]
    argv = [program, "--authtype", "none", "--port", str(port), "--", *demo, "{port}"]
    env = clean_env(PATH=f"{installed}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "proxy.log"
    with open(log, "wb") as out:
        proxy = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    app_pids: list[int] = []
    try:

        def demo_page():
            if proxy.poll() is not None:
                raise AssertionError(f"exited {proxy.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                answer = request(port, "GET", "/", timeout=5)
                return answer.status == 200 and DEMO_TITLE in answer.body
            return False

        wait_for(demo_page, timeout=60, what="the demo page through the installed proxy")
        app_pids = children_of(proxy.pid)  # in a session of its own
        status = request(port, "GET", "/_jhsnp/status").json()
        assert status["state"] == "ready", status
        # The pages come from the wheel's package data: the console's template and rewrite.js.
        console = request(port, "GET", "/_jhsnp/", headers={"Accept": "text/html"})
        assert console.status == 200 and b"<h1>Your app</h1>" in console.body, console.status
        script = request(port, "GET", "/_jhsnp/rewrite.js")
        packaged = (ROOT / PACKAGE / "pages" / "rewrite.js").read_bytes()
        assert script.status == 200 and script.body == packaged
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proxy.pid, signal.SIGTERM)
        try:
            proxy.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proxy.pid, signal.SIGKILL)
            proxy.wait(5)
        for pid in app_pids:
            if pid_alive(pid):
                kill_pid(pid)


# The places a version could be written again besides _version.py: the package, the build's
# and the image's files, the docs' configuration (a Sphinx conf.py's `release`) and the demo
# page. Not prose (*.md, *.rst): "new in 1.2" there is history, not a second version.
VERSION_SCOPES = (
    "pyproject.toml",
    "Dockerfile",
    ".readthedocs",
    PACKAGE + "/",
    "docs/",
    "container/",
)
PROSE = (".md", ".rst", ".txt")
VERSION_ASSIGNMENT = re.compile(
    r"""\b(__version__|version|release|image\.version)\s*[=:]\s*["']v?\d+\.\d+""", re.I
)


def test_the_version_is_stated_in_version_py_only():
    """Anything else that needs the version reads it from there (pyproject's dynamic version,
    the CLI's --version), so a release bumps one line."""
    stated = {Version(__version__).base_version, __version__}
    for name in tracked_files():
        if not name.startswith(VERSION_SCOPES) or name.endswith(PROSE):
            continue
        if name == f"{PACKAGE}/_version.py":
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        assert not any(v in text for v in stated), f"{name} states the version {__version__}"
        found = VERSION_ASSIGNMENT.search(text)
        assert not found, f"{name} sets a version of its own: {found.group(0)!r}"


CHANGELOG_HEADING = re.compile(r"^## (.*)$", re.M)
RELEASE_HEADING = re.compile(r"^\[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})$")


def test_changelog_keeps_unreleased_above_releases_in_order():
    headings = CHANGELOG_HEADING.findall((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert headings and headings[0] == "[Unreleased]", headings[:1]
    releases = []
    for heading in headings[1:]:
        found = RELEASE_HEADING.match(heading)
        assert found, f"not a release heading ('## [1.2.3] - 2026-01-31'): {heading!r}"
        releases.append((Version(found["version"]), found["date"]))
    versions = [v for v, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    dates = [d for _, d in releases]
    assert dates == sorted(dates, reverse=True), dates
    current = Version(__version__)
    assert all(v <= current for v in versions), f"a release newer than {current}"
    if not (current.is_devrelease or current.is_prerelease):
        assert current in versions, f"_version.py says {current}: CHANGELOG.md needs its heading"
