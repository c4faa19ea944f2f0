"""checkout.py against real git repositories made in temporary folders, reached by file:// URLs.

The upstream repository's default branch is `trunk` (so the default branch must really be asked
for, not assumed), with a second branch `feature`. Git runs with an empty global configuration
and no identity: the module must bring its own. Nothing here uses the network beyond 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
import traceback
from pathlib import Path

import pytest

from jhsingle_native_proxy.checkout import CheckoutError, CheckoutResult, checkout

APP_PY = "".join(f"line {i}\n" for i in range(1, 11))


def git(cwd: Path, *args: str) -> str:
    """Git as a person would run it (with an identity given on the command line only)."""
    done = subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class Upstream:
    """A repository with a working tree, committed to directly by the tests."""

    def __init__(self, path: Path):
        self.path = path
        self.url = path.as_uri()

    def commit(self, message: str, files: dict[str, str | None], branch: str = "trunk") -> str:
        switch = git(self.path, "symbolic-ref", "--short", "HEAD").strip() != branch
        if switch:
            git(self.path, "checkout", "--quiet", branch)
        for name, text in files.items():
            if text is None:
                git(self.path, "rm", "--quiet", name)
            else:
                write(self.path / name, text)
                git(self.path, "add", "--force", name)
        git(self.path, "commit", "--quiet", "-m", message)
        sha = git(self.path, "rev-parse", "HEAD").strip()
        if switch:
            git(self.path, "checkout", "--quiet", "trunk")
        return sha

    def head(self, branch: str = "trunk") -> str:
        return git(self.path, "rev-parse", branch).strip()


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory, monkeypatch):
    """No global or system git configuration, and no identity from the environment."""
    config = tmp_path_factory.mktemp("gitconfig") / "config"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)
    return config


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    path = tmp_path / "upstream"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=trunk")
    repo = Upstream(path)
    repo.commit(
        "one",
        {
            "README.md": "# Demo\n",
            "app.py": APP_PY,
            "notes.txt": "a\nb\nc\n",
            "data/config.txt": "x = 1\n",
        },
    )
    repo.commit("two", {"README.md": "# Demo\n\nSecond version.\n"})
    git(path, "branch", "feature")
    repo.commit("feature work", {"feature.txt": "feature\n", "app.py": "feature app\n"}, "feature")
    return repo


@pytest.fixture
def work(tmp_path) -> Path:
    return tmp_path / "work"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder, by relative path."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = Path(dirpath, name)
            found[os.path.relpath(path, root)] = path.read_bytes()
    return found


def status(folder: Path) -> str:
    return git(folder, "status", "--porcelain", "--untracked-files=all")


# --- cloning


def test_clone_into_missing_folder(upstream, tmp_path):
    folder = tmp_path / "missing" / "deeper"
    result = checkout(upstream.url, str(folder))
    assert isinstance(result, CheckoutResult)
    assert result.action == "cloned"
    assert result.folder == str(folder)
    assert result.commit == upstream.head()
    assert (folder / "README.md").read_text() == "# Demo\n\nSecond version.\n"
    assert status(folder) == ""


def test_clone_into_empty_folder(upstream, work):
    work.mkdir()
    result = checkout(upstream.url, str(work))
    assert result.action == "cloned"
    assert (work / "app.py").read_text() == APP_PY


def test_clone_is_shallow_by_default(upstream, work):
    checkout(upstream.url, str(work))
    assert git(work, "rev-list", "--count", "HEAD").strip() == "1"


def test_clone_with_depth_none_has_full_history(upstream, work):
    checkout(upstream.url, str(work), depth=None)
    assert git(work, "rev-list", "--count", "HEAD").strip() == "2"


def test_default_branch_is_asked_of_the_remote(upstream, tmp_path):
    assert checkout(upstream.url, str(tmp_path / "a")).branch == "trunk"
    git(upstream.path, "symbolic-ref", "HEAD", "refs/heads/feature")
    result = checkout(upstream.url, str(tmp_path / "b"))
    assert result.branch == "feature"
    assert (tmp_path / "b" / "feature.txt").exists()


def test_named_branch_is_cloned(upstream, work):
    result = checkout(upstream.url, str(work), "feature")
    assert (result.branch, result.commit) == ("feature", upstream.head("feature"))
    assert git(work, "symbolic-ref", "--short", "HEAD").strip() == "feature"


# --- pulling


def test_pull_brings_upstream_additions_and_modifications(upstream, work):
    checkout(upstream.url, str(work))
    upstream.commit("three", {"README.md": "# Demo 3\n", "docs/new.md": "new\n"})
    result = checkout(upstream.url, str(work))
    assert (result.action, result.commit) == ("updated", upstream.head())
    assert (work / "README.md").read_text() == "# Demo 3\n"
    assert (work / "docs" / "new.md").read_text() == "new\n"
    assert status(work) == ""


def test_pull_with_nothing_new_is_up_to_date_and_commits_nothing(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "notes.txt", "mine\n")
    result = checkout(upstream.url, str(work))
    assert (result.action, result.commit) == ("up to date", upstream.head())
    assert status(work) == " M notes.txt\n"


def test_user_lines_win_where_upstream_changed_the_same_lines(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "app.py", APP_PY.replace("line 5\n", "mine 5\n"))
    upstream.commit(
        "theirs", {"app.py": APP_PY.replace("line 5\n", "theirs 5\n").replace("line 9", "up 9")}
    )
    result = checkout(upstream.url, str(work))
    assert result.action == "updated"
    assert (work / "app.py").read_text() == APP_PY.replace("line 5\n", "mine 5\n").replace(
        "line 9", "up 9"
    )
    assert any(note.startswith("app.py:") for note in result.notes)


def test_modified_file_kept_while_upstream_changes_other_files(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "notes.txt", "my notes\n")
    upstream.commit("readme", {"README.md": "# New readme\n"})
    checkout(upstream.url, str(work))
    assert (work / "notes.txt").read_text() == "my notes\n"
    assert (work / "README.md").read_text() == "# New readme\n"


def test_user_deleted_file_stays_deleted_when_upstream_modified_it(upstream, work):
    checkout(upstream.url, str(work))
    (work / "notes.txt").unlink()
    upstream.commit("notes", {"notes.txt": "a\nb\nc\nd\n", "README.md": "# Three\n"})
    result = checkout(upstream.url, str(work))
    assert not (work / "notes.txt").exists()
    assert git(work, "ls-files", "notes.txt") == ""
    assert (work / "README.md").read_text() == "# Three\n"
    assert any("stays deleted" in note for note in result.notes)


def test_user_modified_file_kept_when_upstream_deleted_it(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "notes.txt", "still needed\n")
    upstream.commit("drop notes", {"notes.txt": None, "README.md": "# Three\n"})
    checkout(upstream.url, str(work))
    assert (work / "notes.txt").read_text() == "still needed\n"
    assert git(work, "ls-files", "notes.txt") == "notes.txt\n"
    assert (work / "README.md").read_text() == "# Three\n"


def test_new_untracked_file_kept(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "scratch" / "mine.txt", "my own file\n")
    upstream.commit("readme", {"README.md": "# Three\n"})
    checkout(upstream.url, str(work))
    assert (work / "scratch" / "mine.txt").read_text() == "my own file\n"
    assert "?? scratch/mine.txt" in status(work)


def test_local_commit_kept(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "data" / "config.txt", "x = 2\n")
    write(work / "extra.py", "print('mine')\n")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "my commit")
    mine = git(work, "rev-parse", "HEAD").strip()
    upstream.commit("readme", {"README.md": "# Three\n"})
    checkout(upstream.url, str(work))
    assert git(work, "merge-base", "--is-ancestor", mine, "HEAD") == ""
    assert (work / "data" / "config.txt").read_text() == "x = 2\n"
    assert (work / "extra.py").read_text() == "print('mine')\n"
    assert (work / "README.md").read_text() == "# Three\n"


def test_untracked_file_where_upstream_adds_same_path_keeps_user_copy(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "data" / "new.csv", "mine\n")
    upstream.commit("add csv", {"data/new.csv": "theirs\n"})
    result = checkout(upstream.url, str(work))
    assert (work / "data" / "new.csv").read_text() == "mine\n"
    assert (work / "data" / "new.csv.upstream").read_text() == "theirs\n"
    assert any("data/new.csv.upstream" in note for note in result.notes)

    upstream.commit("change csv", {"data/new.csv": "theirs v2\n", "README.md": "# Four\n"})
    checkout(upstream.url, str(work))
    assert (work / "data" / "new.csv").read_text() == "mine\n"
    assert (work / "data" / "new.csv.upstream").read_text() == "theirs\n"
    assert (work / "README.md").read_text() == "# Four\n"


def test_ignored_file_where_upstream_adds_same_path_is_not_overwritten(upstream, work):
    upstream.commit("ignore logs", {".gitignore": "*.log\n"})
    checkout(upstream.url, str(work))
    write(work / "run.log", "my log\n")
    upstream.commit("add log", {"run.log": "their log\n"})
    checkout(upstream.url, str(work))
    assert (work / "run.log").read_text() == "my log\n"
    assert (work / "run.log.upstream").read_text() == "their log\n"


def test_shallow_clone_fetches_history_when_the_merge_base_is_missing(upstream, work):
    checkout(upstream.url, str(work))  # depth 1: only commit "two"
    write(work / "notes.txt", "mine\n")
    # Upstream rewrites its history: "two" is gone, "three" follows "one".
    git(upstream.path, "reset", "--quiet", "--hard", "HEAD~1")
    upstream.commit("three", {"data/config.txt": "x = 3\n"})
    result = checkout(upstream.url, str(work))
    assert result.action == "updated"
    assert (work / "notes.txt").read_text() == "mine\n"
    assert (work / "data" / "config.txt").read_text() == "x = 3\n"
    assert git(work, "merge-base", "--is-ancestor", upstream.head(), "HEAD") == ""


def test_saved_work_is_committed_with_the_modules_own_identity(upstream, work, isolated_git):
    assert isolated_git.read_text() == ""  # no user.name / user.email anywhere
    checkout(upstream.url, str(work))
    write(work / "notes.txt", "mine\n")
    upstream.commit("readme", {"README.md": "# Three\n"})
    checkout(upstream.url, str(work))
    authors = git(work, "log", "--format=%an <%ae>|%cn <%ce>|%s", "HEAD~1..HEAD")
    assert authors.count("jhsingle-native-proxy <jhsnp@localhost>") >= 2
    saved = git(work, "log", "--format=%an <%ae> %s", "--grep=Save local changes")
    assert saved.startswith("jhsingle-native-proxy <jhsnp@localhost> Save local changes")


# --- switching branches


def test_branch_switch_there_and_back_loses_nothing(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "app.py", "my trunk app\n")
    write(work / "mine.txt", "untracked\n")

    there = checkout(upstream.url, str(work), "feature")
    assert there.action == "switched"
    assert (work / "feature.txt").read_text() == "feature\n"
    assert (work / "app.py").read_text() == "feature app\n"
    assert (work / "mine.txt").read_text() == "untracked\n"
    write(work / "feature.txt", "my feature change\n")

    back = checkout(upstream.url, str(work), "trunk")
    assert (back.action, back.branch) == ("switched", "trunk")
    assert (work / "app.py").read_text() == "my trunk app\n"
    assert (work / "mine.txt").read_text() == "untracked\n"
    assert not (work / "feature.txt").exists()

    checkout(upstream.url, str(work), "feature")
    assert (work / "feature.txt").read_text() == "my feature change\n"


def test_switch_to_branch_that_has_a_file_the_user_created_keeps_user_copy(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "feature.txt", "my own feature.txt\n")
    checkout(upstream.url, str(work), "feature")
    assert (work / "feature.txt").read_text() == "my own feature.txt\n"
    assert (work / "feature.txt.upstream").read_text() == "feature\n"


def test_detached_head_commits_are_kept_on_a_branch(upstream, work):
    checkout(upstream.url, str(work))
    git(work, "checkout", "--quiet", "--detach")
    write(work / "detached.txt", "made while detached\n")
    git(work, "add", "detached.txt")
    git(work, "commit", "--quiet", "-m", "detached work")
    mine = git(work, "rev-parse", "HEAD").strip()
    result = checkout(upstream.url, str(work))
    assert (result.action, result.branch) == ("switched", "trunk")
    assert git(work, "branch", "--contains", mine, "--format=%(refname:short)").strip()
    assert any("jhsnp-saved-" in note for note in result.notes)


def test_existing_clone_is_recognised_whatever_the_url_spelling(upstream, tmp_path, work):
    git(tmp_path, "clone", "--quiet", str(upstream.path), str(work))
    upstream.commit("readme", {"README.md": "# Three\n"})
    result = checkout(upstream.url + "/", str(work))
    assert (result.action, result.commit) == ("updated", upstream.head())


# --- refusals and failures


def test_foreign_folder_is_refused_and_untouched(upstream, work):
    write(work / "thesis.tex", "my thesis\n")
    write(work / "figures" / "plot.png", "not really a png\n")
    before = snapshot(work)
    with pytest.raises(CheckoutError, match="not a git clone"):
        checkout(upstream.url, str(work))
    assert snapshot(work) == before


def test_clone_of_another_repository_is_refused_and_untouched(upstream, tmp_path, work):
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "--quiet", "--initial-branch=trunk")
    write(other / "other.txt", "other\n")
    git(other, "add", "-A")
    git(other, "commit", "--quiet", "-m", "other")
    git(tmp_path, "clone", "--quiet", other.as_uri(), str(work))
    write(work / "other.txt", "edited\n")
    before = snapshot(work)
    with pytest.raises(CheckoutError, match="not a git clone"):
        checkout(upstream.url, str(work))
    assert snapshot(work) == before


def test_unreachable_url_fails_fast(work):
    started = time.monotonic()
    with pytest.raises(CheckoutError, match="could not connect"):
        checkout("http://127.0.0.1:1/x.git", str(work), timeout=60)
    assert time.monotonic() - started < 10
    assert not work.exists()


def test_unresponsive_server_is_given_up_at_the_timeout(work):
    with socket.socket() as server:  # accepts connections (in the backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/x.git"
        started = time.monotonic()
        with pytest.raises(CheckoutError, match="timed out after 1.5 seconds"):
            checkout(url, str(work), timeout=1.5)
        assert time.monotonic() - started < 8


@pytest.mark.parametrize("userinfo", ["alice:s3cr3t", "s3cr3t-token-as-user"])
def test_credentials_never_appear_in_errors_progress_or_logs(work, caplog, userinfo):
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    secret_url = f"http://{userinfo}@127.0.0.1:1/x.git"
    with pytest.raises(CheckoutError) as caught:
        checkout(secret_url, str(work), progress=lines.append)
    error = caught.value
    assert "127.0.0.1" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    for text in (
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        "\n".join(lines),
        caplog.text,
    ):
        assert "s3cr3t" not in text
    assert lines  # progress was reported, redacted


def test_a_checkout_has_gitpythons_own_log_scrubbed_by_one_filter(work, caplog):
    git_log = logging.getLogger("git.cmd")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CheckoutError):
        checkout("http://127.0.0.1:1/x.git", str(work), timeout=30)
    filters = list(git_log.filters)
    with pytest.raises(CheckoutError):
        checkout("http://127.0.0.1:1/x.git", str(work), timeout=30)
    assert git_log.filters == filters and len(filters) >= 1  # installed once, not per checkout
    git_log.debug("Popen(%s)", ["git", "fetch", "https://s3cr3t-token@host/x.git"])
    assert "s3cr3t" not in caplog.text and "https://***@host/x.git" in caplog.text


def test_credentials_are_not_stored_in_the_clone(upstream, work, isolated_git, caplog):
    secret_url = "http://alice:s3cr3t@127.0.0.1:1/x.git"
    # The URL is served from the local upstream, as a proxy would. Git is only ever given the
    # URL without its credentials, so that is the one rewritten.
    isolated_git.write_text(f'[url "{upstream.url}"]\n\tinsteadOf = http://127.0.0.1:1/x.git\n')
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    checkout(secret_url, str(work), progress=lines.append)
    upstream.commit("readme", {"README.md": "# Three\n"})
    result = checkout(secret_url, str(work), progress=lines.append)
    assert result.action == "updated"
    assert git(work, "config", "remote.origin.url").strip() == "http://127.0.0.1:1/x.git"
    for path, content in snapshot(work / ".git").items():
        assert content is None or b"s3cr3t" not in content, path
    assert "s3cr3t" not in "\n".join(lines) + caplog.text


def test_missing_branch_is_an_error(upstream, work):
    with pytest.raises(CheckoutError, match="branch 'nope' does not exist"):
        checkout(upstream.url, str(work), "nope")
    assert not work.exists()


def test_stale_index_lock_is_removed(upstream, work):
    checkout(upstream.url, str(work))
    lock = work / ".git" / "index.lock"
    lock.write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    write(work / "notes.txt", "mine\n")
    upstream.commit("readme", {"README.md": "# Three\n"})
    assert checkout(upstream.url, str(work)).action == "updated"
    assert not lock.exists()
    assert (work / "notes.txt").read_text() == "mine\n"


def test_fresh_index_lock_of_a_running_git_is_refused(upstream, work):
    checkout(upstream.url, str(work))
    lock = work / ".git" / "index.lock"
    lock.write_text("")
    running = subprocess.Popen(
        ["git", "cat-file", "--batch"], cwd=work, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        with pytest.raises(CheckoutError, match="another git operation is running"):
            checkout(upstream.url, str(work))
        assert lock.exists()
    finally:
        running.kill()
        running.wait()
    # The git that held it is gone: the lock is left over and goes.
    assert checkout(upstream.url, str(work)).action == "up to date"
    assert not lock.exists()


def test_retry_after_missing_branch_is_created_upstream(upstream, work):
    with pytest.raises(CheckoutError):
        checkout(upstream.url, str(work), "later")
    upstream.commit("later", {"later.txt": "later\n"})
    git(upstream.path, "branch", "later")
    result = checkout(upstream.url, str(work), "later")
    assert (result.action, result.branch) == ("cloned", "later")
    assert (work / "later.txt").read_text() == "later\n"


def test_retry_with_a_fixed_url_after_an_unreachable_one(upstream, work):
    work.mkdir()
    with pytest.raises(CheckoutError):
        checkout("http://127.0.0.1:1/x.git", str(work))
    assert list(work.iterdir()) == []
    assert checkout(upstream.url, str(work)).action == "cloned"


def test_file_set_aside_by_an_interrupted_run_is_put_back(upstream, work):
    checkout(upstream.url, str(work))
    write(work / "mine.txt.jhsnp-aside", "mine\n")
    (work / ".git" / "jhsnp-aside.json").write_text('[["mine.txt", "mine.txt.jhsnp-aside"]]')
    upstream.commit("readme", {"README.md": "# Three\n"})
    checkout(upstream.url, str(work))
    assert (work / "mine.txt").read_text() == "mine\n"
    assert not (work / "mine.txt.jhsnp-aside").exists()


# --- progress


def test_progress_reports_steps_and_git_percentages(upstream, work):
    lines: list[str] = []
    checkout(upstream.url, str(work), progress=lines.append)
    assert any(line.startswith("Cloning ") for line in lines)
    assert any("Receiving objects:" in line and "%" in line for line in lines)
    write(work / "notes.txt", "mine\n")
    upstream.commit("readme", {"README.md": "# Three\n"})
    lines.clear()
    checkout(upstream.url, str(work), progress=lines.append)
    assert any(line.startswith("Merging upstream changes") for line in lines)
    assert any(line.startswith("Saving your local changes") for line in lines)
