"""A repository that describes its app, run by the real CLI from real git repositories over
file:// with nothing but `--repo URL`: a Hugging Face Space, a jhsnp.toml, the command line over
it, a refused key fixed by a push, publish mode switching to a new command, a Docker Space.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from example_support import require
from test_checkout import git

from conftest import APPS, wait_for

HTML = {"Accept": "text/html"}
PUBLISHED_APP = (APPS / "published_app.py").read_text()
# The app's answer: version.txt, and $GREETING when set (the environment the manifest gives).
GREETING_APP = PUBLISHED_APP.replace(
    "VERSION = version_file.read().strip()",
    'VERSION = version_file.read().strip() + os.environ.get("GREETING", "")',
)
# The app's environment and a path mapped, both from the manifest.
MANIFEST_EXTRA = '[env]\nGREETING = " from the manifest"\n[mappath]\n"/version" = "/"\n'
COMMAND = f'command = [{json.dumps(sys.executable)}, "app.py", "{{port}}"]\n'


class Repository:
    """A git repository the proxy checks out; `push` commits files as a push would."""

    def __init__(self, path: Path, files: dict[str, str]):
        self.path = path
        path.mkdir()
        git(path, "init", "--quiet", "--initial-branch=main")
        self.push(files)

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def push(self, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        for name, text in files.items():
            (self.path / name).write_text(text)
        for name in remove:
            (self.path / name).unlink()
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "-m", "push")


def start_repo(start_proxy, tmp_path, repo: Repository, *args: str, wait="ready", env=None):
    """The proxy with `--repo URL` and no command at all (no `--`)."""
    from conftest import free_port

    port = free_port()
    argv = ["--authtype", "none", "--port", str(port), "--repo", repo.url]
    argv += ["--repofolder", str(tmp_path / "checkout"), *args]
    return start_proxy(raw_argv=argv, port=port, wait=wait, env=env)


def console(proxy) -> dict:
    return proxy.get("_jhsnp/console.json", timeout=5).json()


@pytest.mark.examples
def test_a_streamlit_space_runs_with_nothing_but_repo(start_proxy, tmp_path):
    require("streamlit")
    from playwright.sync_api import expect

    from browser import chromium_page

    repo = Repository(tmp_path / "space", {
        "README.md": "---\ntitle: Demo\nsdk: streamlit\napp_file: app.py\n---\n\n# Demo\n",
        "app.py": "import streamlit as st\n\nst.write('Hello from a Space')\n",
    })  # fmt: skip
    # streamlit on the PATH, as in an image that has it.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    proxy = start_repo(start_proxy, tmp_path, repo, wait="listening", env={"PATH": path})
    proxy.wait_ready(timeout=60)
    health = proxy.get("_stcore/health")
    assert (health.status, health.body) == (200, b"ok")
    view = console(proxy)
    assert view["app"] == "streamlit, from README.md front matter (Hugging Face Spaces)"
    assert "App: streamlit, from README.md front matter" in "\n".join(view["lines"])
    with chromium_page() as page:
        page.goto(proxy.url())
        expect(page.get_by_text("Hello from a Space")).to_be_visible(timeout=30000)


def test_a_jhsnp_toml_command_runs_and_the_command_line_wins_over_it(start_proxy, tmp_path):
    repo = Repository(tmp_path / "repo", {
        "jhsnp.toml": COMMAND + MANIFEST_EXTRA,
        "app.py": GREETING_APP,
        "version.txt": "v1\n",
    })  # fmt: skip
    proxy = start_repo(start_proxy, tmp_path, repo)
    assert proxy.get().body == b"v1 from the manifest"
    # The proxy follows the app's own mappath (the repository's), not only the command line's.
    assert proxy.get("version").body == b"v1 from the manifest"
    assert console(proxy)["app"] == "command, from jhsnp.toml"
    proxy.cleanup()
    # The same repository with --env on the command line: the command line's value wins.
    other = tmp_path / "again"
    other.mkdir()
    proxy = start_repo(start_proxy, other, repo, "--env", "GREETING= from the command line")
    assert proxy.get().body == b"v1 from the command line"


def test_a_refused_key_is_one_line_for_the_owner_and_a_push_fixes_it(start_proxy, tmp_path):
    repo = Repository(tmp_path / "repo", {
        "jhsnp.toml": COMMAND + 'authtype = "none"\n',
        "app.py": PUBLISHED_APP,
        "version.txt": "fixed\n",
    })  # fmt: skip
    proxy = start_repo(start_proxy, tmp_path, repo, wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the refused manifest")
    status = proxy.status()
    refusal = "jhsnp.toml: 'authtype' is refused: it decides who may enter"
    assert refusal in status["reason"] and "\n" not in status["reason"]
    assert any(line.startswith(refusal) for line in status["lines"])
    assert proxy.process.poll() is None  # the server stays up
    page = proxy.get("", headers=HTML)
    assert b"Try again" in page.body and b"&#x27;authtype&#x27; is refused" in page.body
    repo.push({"jhsnp.toml": COMMAND})
    # Try again: a visit starts it again, with a checkout that takes the push.
    proxy.get("", headers=HTML)
    wait_for(lambda: proxy.status().get("state") == "ready", what="the fixed app")
    assert proxy.get().body == b"fixed"


def test_publish_mode_switches_to_a_pushed_manifests_new_command(start_proxy, tmp_path):
    second = PUBLISHED_APP.replace('open("version.txt")', 'open("other.txt")')
    repo = Repository(tmp_path / "repo", {
        "jhsnp.toml": COMMAND,
        "app.py": PUBLISHED_APP,
        "second.py": second,
        "version.txt": "first command\n",
        "other.txt": "second command\n",
    })  # fmt: skip
    proxy = start_repo(start_proxy, tmp_path, repo, "--follow", "--follow-interval", "0.5")
    assert proxy.get().body == b"first command"
    repo.push({"jhsnp.toml": COMMAND.replace('"app.py"', '"second.py"')})
    wait_for(lambda: proxy.get().body == b"second command", timeout=30, what="the switch")


def test_a_docker_space_is_refused_with_its_sentence(start_proxy, tmp_path):
    repo = Repository(tmp_path / "space", {
        "README.md": "---\ntitle: Demo\nsdk: docker\napp_port: 7860\n---\n",
        "Dockerfile": "FROM python:3.11\n",
    })  # fmt: skip
    proxy = start_repo(start_proxy, tmp_path, repo, wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the refused Space")
    reason = proxy.status()["reason"]
    assert "sdk: docker is not supported" in reason and "not as a container image" in reason


def test_the_example_repository_runs_as_its_readme_says(start_proxy, tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "repository-manifest"
    files = {p.name: p.read_text() for p in example.iterdir() if p.is_file()}
    proxy = start_repo(start_proxy, tmp_path, Repository(tmp_path / "repo", files))
    assert b"<h1>Sales, this quarter</h1>" in proxy.get().body
    assert proxy.get("healthz").body == b"ok"
