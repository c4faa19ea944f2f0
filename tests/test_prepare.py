"""Before launch, through the real CLI: a git checkout the app runs in, a conda environment, and
the live progress page a person sees meanwhile."""

from __future__ import annotations

import json
import os
import site
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ECHO_APP, cli_error, run_cli, wait_for

HTML = {"Accept": "text/html"}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Upstream",
    "GIT_AUTHOR_EMAIL": "upstream@example.org",
    "GIT_COMMITTER_NAME": "Upstream",
    "GIT_COMMITTER_EMAIL": "upstream@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_upstream(root: Path, files: dict[str, str] | None = None, name: str = "upstream") -> Path:
    """A real repository with one commit on its default branch `trunk`."""
    repo = root / name
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "trunk")
    for name, text in (files or {"README.md": "hello\n", "deck/Talk.ipynb": "{}\n"}).items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def slow_git(root: Path, seconds: float) -> Path:
    """A `git` that runs the real one, then lingers after clone and fetch, so a person (and the
    test) can watch the progress page while the checkout is under way."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    bindir = root / "slowbin"
    bindir.mkdir()
    wrapper = bindir / "git"
    wrapper.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        {real} "$@"
        rc=$?
        case "$*" in *clone*|*fetch*) sleep {seconds};; esac
        exit $rc
        """)
    )
    wrapper.chmod(0o755)
    return bindir


def test_repo_is_cloned_and_the_app_runs_in_it(start_proxy, tmp_path):
    upstream = make_upstream(tmp_path)
    proxy = start_proxy(
        [
            "--repo",
            f"file://{upstream}",
            "--repofolder",
            "work",
            "--presentation-path",
            "deck/Talk.ipynb",
        ],
        app=[sys.executable, ECHO_APP, "{port}", "--say", "{repofolder}|{presentation_path}"],
    )
    work = tmp_path / "work"
    assert (work / "README.md").read_text() == "hello\n"
    log = proxy.log()
    assert f"echo app cwd: {work}" in log
    assert f"out| {work}|{work}/deck/Talk.ipynb" in log
    assert proxy.get("echo").status == 200


def test_default_folder_is_named_after_the_repo(start_proxy, tmp_path):
    upstream = make_upstream(tmp_path / "remote", name="dashboard")
    proxy = start_proxy(["--repo", f"file://{upstream}"])
    assert f"echo app cwd: {tmp_path / 'dashboard'}" in proxy.log()
    assert (tmp_path / "dashboard" / "README.md").exists()


def test_local_work_survives_a_relaunch_with_upstream_changes(start_proxy, tmp_path):
    upstream = make_upstream(tmp_path)
    args = ["--repo", f"file://{upstream}", "--repofolder", "work"]
    first = start_proxy(args)
    first.stop()
    work = tmp_path / "work"
    (work / "README.md").write_text("my edit\n")
    (work / "notes.txt").write_text("my notes\n")
    (upstream / "new.txt").write_text("from upstream\n")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "more")
    second = start_proxy(args)
    assert (work / "README.md").read_text() == "my edit\n"
    assert (work / "notes.txt").read_text() == "my notes\n"
    assert (work / "new.txt").read_text() == "from upstream\n"
    assert second.get("echo").status == 200


def test_foreign_folder_is_refused_and_untouched(start_proxy, tmp_path):
    upstream = make_upstream(tmp_path)
    foreign = tmp_path / "work"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work\n")
    proxy = start_proxy(["--repo", f"file://{upstream}", "--repofolder", "work"], wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the refusal")
    page = proxy.get("", headers=HTML)
    assert page.status == 503
    assert b"is not a git clone of" in page.body and b"nothing in it was changed" in page.body
    wait_for(lambda: proxy.status().get("state") == "failed", what="the refusal, again")
    assert sorted(os.listdir(foreign)) == ["thesis.tex"]
    assert (foreign / "thesis.tex").read_text() == "years of work\n"
    assert not proxy.app_pids()


def test_credentials_in_the_repo_url_never_show(start_proxy, tmp_path):
    proxy = start_proxy(
        ["--repo", "http://alice:s3cr3t@127.0.0.1:1/x.git", "--repofolder", "w"], wait="listening"
    )
    wait_for(lambda: proxy.status().get("state") == "failed", what="the failed checkout")
    page = proxy.get("", headers=HTML)
    status = proxy.get("_jhsnp/status")
    assert b"s3cr3t" not in page.body
    assert b"s3cr3t" not in status.body
    assert "s3cr3t" not in proxy.log()
    assert b"could not be prepared" in page.body


def test_progress_page_then_retry_after_a_fixed_failure_in_a_browser(start_proxy, tmp_path):
    """A person opens the server while the repo is missing: an error with a retry button. The repo
    appears; Try again shows the live progress of a slow pull, then the app, at the same URL."""
    from browser import chromium_page, screenshot

    upstream = tmp_path / "later" / "upstream"
    bindir = slow_git(tmp_path, 4)
    proxy = start_proxy(
        ["--repo", f"file://{upstream}", "--repofolder", "work"],
        env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"},
        wait="listening",
    )
    with chromium_page() as page:
        page.goto(proxy.url("deep/page?x=1"))
        page.wait_for_selector("text=Try again", timeout=30000)
        assert "could not be prepared" in page.inner_text("body")
        screenshot(page, "checkout-failed")

        # Enough data for git to report its progress.
        make_upstream(
            tmp_path / "later", {f"data/{i}.bin": os.urandom(30000).hex() for i in range(40)}
        )
        page.click("text=Try again")
        page.wait_for_function(
            "document.getElementById('lines') && "
            "document.getElementById('lines').textContent.includes('Receiving objects')",
            timeout=30000,
        )
        assert "Getting file://" in page.inner_text("body")
        screenshot(page, "checkout-progress")
        page.wait_for_function("document.body.innerText.includes('/deep/page?x=1')", timeout=60000)
        assert page.url == proxy.url("deep/page?x=1")
        screenshot(page, "checkout-done-app")


def see_our_packages(env: Path) -> None:
    """Let the environment's `python` (a link to the tests' own) import what the tests have.

    A link to a virtual environment's python outside that environment no longer finds the
    environment's packages (Python looks for `pyvenv.cfg` beside the link). So the stand-in
    environment becomes a virtual environment of its own whose site-packages point, by a `.pth`
    file, at the tests' packages.
    """
    home = os.path.dirname(os.path.realpath(sys.executable))
    (env / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_dir = env / "lib" / version / "site-packages"
    site_dir.mkdir(parents=True)
    (site_dir / "tests-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")


def conda_style_env(root: Path) -> Path:
    env = root / "envs" / "dash"
    (env / "conda-meta").mkdir(parents=True)
    (env / "conda-meta" / "history").write_text("")
    (env / "bin").mkdir()
    os.symlink(sys.executable, env / "bin" / "python")
    see_our_packages(env)
    activate = env / "etc" / "conda" / "activate.d"
    activate.mkdir(parents=True)
    (activate / "vars.sh").write_text("export DASH_ENV_VAR=activated\n")
    return env


def test_conda_env_by_path_runs_the_app_inside_it(start_proxy, tmp_path):
    env = conda_style_env(tmp_path)
    proxy = start_proxy(
        ["--conda-env", str(env)],
        app=[
            "python",
            ECHO_APP,
            "{port}",
            "--say-env",
            "CONDA_PREFIX",
            "--say-env",
            "DASH_ENV_VAR",
        ],
    )
    log = proxy.log()
    assert f"echo app python: {env}/bin/python" in log
    assert f"echo app env CONDA_PREFIX={env}" in log
    assert "echo app env DASH_ENV_VAR=activated" in log


def test_conda_env_by_name_through_conda_on_path(start_proxy, tmp_path):
    env = conda_style_env(tmp_path)
    bindir = tmp_path / "condabin"
    bindir.mkdir()
    conda = bindir / "conda"
    conda.write_text("#!/bin/sh\necho '" + json.dumps({"envs": [str(tmp_path), str(env)]}) + "'\n")
    conda.chmod(conda.stat().st_mode | stat.S_IEXEC)
    proxy = start_proxy(
        ["--conda-env", "dash"],
        app=["python", ECHO_APP, "{port}", "--say-env", "CONDA_PREFIX"],
        env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert f"echo app env CONDA_PREFIX={env}" in proxy.log()


@pytest.mark.parametrize("name", ["no-such-env"])
def test_missing_conda_is_a_clear_startup_error(tmp_path, name):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_cli(
        ["--authtype", "none", "--conda-env", name, "--", "python", "-V"], env={"PATH": str(empty)}
    )
    assert "conda" in cli_error(result.stderr, result.returncode)


def test_shutdown_during_a_slow_checkout_ends_git_too(start_proxy, tmp_path):
    """SIGTERM while a clone runs: the proxy exits at once, and no git is left behind."""
    import time

    upstream = make_upstream(tmp_path)
    bindir = slow_git(tmp_path, 60)
    proxy = start_proxy(
        ["--repo", f"file://{upstream}", "--repofolder", "work"],
        env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"},
        wait="listening",
    )
    proxy.wait_log("Cloning")
    started = time.monotonic()
    assert proxy.stop(timeout=30) == 0
    assert time.monotonic() - started < 20, "shutdown waited for the clone"

    def slow_gits():
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if str(bindir).encode() in cmdline:
                    found.append(int(entry))
        return found

    wait_for(lambda: not slow_gits(), 10, what="the slowed-down git to be gone")
