"""Git credentials over HTTP: given in the URL, an environment variable or a file, they
authenticate, and never show on any process's command line, in `.git/config` or in the user's
credential store.

The remote is a real `git http-backend` behind a small threaded HTTP server on 127.0.0.1 that
asks for HTTP Basic authentication. Each authenticated request runs a check inside the server
*before* it is answered: the git processes that sent it (git, git-remote-http) are alive and
waiting at that moment, so the check sees every command line of the machine, and the clone's
`.git/config`, as they are in the middle of the clone or fetch.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import ECHO_APP, cli_error, run_cli, wait_for
from jhsingle_native_proxy.checkout import CheckoutError, checkout
from jhsingle_native_proxy.cli import parse_args
from jhsingle_native_proxy.git_credentials import (
    DEFAULT_USERNAME,
    Credentials,
    git_config_args,
    git_environment,
    read_token_file,
    split_url,
    with_token,
)

HTML = {"Accept": "text/html"}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Upstream",
    "GIT_AUTHOR_EMAIL": "upstream@example.org",
    "GIT_COMMITTER_NAME": "Upstream",
    "GIT_COMMITTER_EMAIL": "upstream@example.org",
}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENTITY, **(env or {})},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    if done.returncode:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory, monkeypatch) -> Path:
    """No global or system git configuration, for the tests' git and for the proxy's."""
    config = tmp_path_factory.mktemp("gitconfig") / "config"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "JHSNP_REPO", "JHSNP_REPO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("JHSNP_REPO_TOKEN_FILE", "JHSNP_REPO_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    return config


@pytest.fixture
def token() -> str:
    return "tok" + secrets.token_hex(16)


# --- the server


class GitServer:
    """`git http-backend` serving the bare repositories in `root`, behind HTTP Basic auth.

    `password` is required; `username` too unless None (then any non-empty name will do, as on
    GitHub and GitLab). `while_waiting`, if set, runs inside each authenticated request before
    it is answered, while the client waits.
    """

    def __init__(self, root: Path, password: str | None, username: str | None = None):
        self.root = root
        self.password = password
        self.username = username
        self.while_waiting: Callable[[], None] | None = None
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, user or None
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _GitHandler)
        self._httpd.daemon_threads = False  # server_close() waits for every request
        self._httpd.git_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, name: str = "repo.git") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(30)

    def user_for(self, authorization: str | None) -> str | None:
        """The user name if the Authorization header holds the right credentials, else None."""
        if self.password is None:
            return "anonymous"
        if not authorization or not authorization.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(authorization[6:]).decode()
        except ValueError:
            return None
        user, _, password = decoded.partition(":")
        if password != self.password or not user:
            return None
        if self.username is not None and user != self.username:
            return None
        return user

    def record(self, method: str, path: str, user: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, user))

    def authenticated(self) -> list[tuple[str, str, str | None]]:
        with self._lock:
            return [r for r in self.requests if r[2] is not None]


class _GitHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        server: GitServer = self.server.git_server  # type: ignore[attr-defined]
        body = self._body()
        path, _, query = self.path.partition("?")
        user = server.user_for(self.headers.get("Authorization"))
        server.record(self.command, path, user)
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if server.while_waiting is not None:
            try:
                server.while_waiting()
            except Exception:
                server.errors.append(traceback.format_exc())
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(server.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
        )
        separator = b"\r\n\r\n" if b"\r\n\r\n" in done.stdout else b"\n\n"
        head, _, content = done.stdout.partition(separator)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


class Upstream:
    """A bare repository served as repo.git, fed from a working copy the tests commit to."""

    def __init__(self, root: Path):
        self.work = root / "upstream-work"
        self.bare = root / "served" / "repo.git"
        self.work.mkdir(parents=True)
        git(self.work, "init", "--quiet", "--initial-branch=trunk")
        self.commit("first", {"README.md": "hello\n", "app.py": "print('app')\n"})
        self.bare.parent.mkdir(parents=True)
        git(root, "clone", "--quiet", "--bare", str(self.work), str(self.bare))

    def commit(self, message: str, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.work / name).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", message)
        if self.bare.exists():
            git(self.work, "push", "--quiet", str(self.bare), "trunk")


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    return Upstream(tmp_path)


@pytest.fixture
def git_server(upstream) -> Iterator[Callable[..., GitServer]]:
    """`git_server(password, username=None)`: started, and stopped after the test."""
    started: list[GitServer] = []

    def start(password: str | None, username: str | None = None) -> GitServer:
        server = GitServer(upstream.bare.parent, password, username).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# --- watching the processes while git waits for the server


def command_lines() -> dict[int, bytes]:
    """Every process's command line, as anybody on the machine can read it."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
    return found


class Watch:
    """Runs in the server while git waits: records any command line holding the secret (except
    those of `allowed` PIDs; none at all with `command_lines=False`), and any `.git/config`
    holding it."""

    def __init__(self, secret: str, config: Path | None = None, command_lines: bool = True):
        self.secret = secret.encode()
        self.config = config
        self.command_lines = command_lines
        self.allowed: set[int] = set()
        self.leaks: list[str] = []
        self.git_processes_seen = 0
        self.configs_read = 0

    def __call__(self) -> None:
        for pid, cmdline in command_lines().items():
            if b"remote-http" in cmdline:
                self.git_processes_seen += 1
            if self.command_lines and self.secret in cmdline and pid not in self.allowed:
                words = cmdline.replace(b"\0", b" ").decode(errors="replace")
                self.leaks.append(f"pid {pid}: {words}")
        if self.config is not None:
            try:
                content = self.config.read_bytes()
            except FileNotFoundError:
                return
            self.configs_read += 1
            if self.secret in content:
                self.leaks.append(f"{self.config}: {content.decode()}")


def files_holding(root: Path, secret: str) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes()
    ]


# --- the pieces, on their own


@pytest.mark.parametrize(
    ("url", "clean", "username", "password"),
    [
        ("https://alice:s3cr3t@host/r.git", "https://host/r.git", "alice", "s3cr3t"),
        ("https://TOKEN1234@host/r.git", "https://host/r.git", "TOKEN1234", ""),
        ("HTTP://u:p%40ss%3Aw@host:8080/r", "HTTP://host:8080/r", "u", "p@ss:w"),
        ("https://user:p@ss@host/r", "https://host/r", "user", "p@ss"),
        ("  https://a:b@h/r  ", "https://h/r", "a", "b"),
    ],
)
def test_split_url_takes_the_credentials_out(url, clean, username, password):
    assert split_url(url) == (clean, Credentials(username, password))


@pytest.mark.parametrize(
    "url",
    [
        "https://host/r.git",
        "ssh://git@host/r.git",
        "git@github.com:o/r.git",
        "file:///srv/r.git",
        "/srv/r",
    ],
)
def test_split_url_leaves_other_urls_alone(url):
    assert split_url(url) == (url, None)


def test_credentials_never_show_in_repr():
    credentials = Credentials("TOKEN-AS-USER", "s3cr3t-password")
    for text in (repr(credentials), str(credentials), repr([credentials])):
        assert "s3cr3t" not in text and "TOKEN" not in text


def test_a_token_apart_takes_the_urls_user_name_else_the_given_else_the_default():
    assert with_token(Credentials("alice", "old"), "new") == Credentials("alice", "new")
    assert with_token(None, "tok", "bob") == Credentials("bob", "tok")
    assert with_token(None, "tok") == Credentials(DEFAULT_USERNAME, "tok")


def test_token_file_is_read_without_its_final_newline(tmp_path):
    path = tmp_path / "token"
    path.write_text("  abc123\n")
    assert read_token_file(str(path)) == "abc123"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_token_file(str(path))
    path.write_text("abc\ndef\n")
    with pytest.raises(ValueError, match="more than one line"):
        read_token_file(str(path))
    with pytest.raises(ValueError, match="line break"):
        Credentials("alice", "a\nprotocol=https")


def test_settings_keep_the_credentials_apart_from_the_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token").write_text("file-token\n")
    environ = {"JHSNP_REPO": "https://alice:s3cr3t@git.example.org/r.git"}
    settings = parse_args(["--authtype", "none", "--", "x"], environ)
    assert settings.repo == "https://git.example.org/r.git"
    assert (settings.repo_username, settings.repo_password) == ("alice", "s3cr3t")
    assert not settings.repo_credentials_on_command_line
    assert settings.repofolder == str(tmp_path / "r")

    given = ["--authtype", "none", "--repo", "https://bob:pw12@other.example.org/o.git", "--"]
    settings = parse_args([*given, "x"], environ)
    assert settings.repo == "https://other.example.org/o.git"  # --repo wins over JHSNP_REPO
    assert settings.repo_credentials_on_command_line

    environ = {"JHSNP_REPO": "https://git.example.org/r.git", "JHSNP_REPO_USERNAME": "oauth2"}
    args = ["--authtype", "none", "--repo-token-file", "token", "--", "x"]
    settings = parse_args(args, environ)
    assert settings.repo_token_file == str(tmp_path / "token")
    assert (settings.repo_username, settings.repo_password) == ("oauth2", "")  # read later
    for field in ("repo_username", "repo_password"):
        assert f"{field}=" not in repr(settings)


def test_the_helper_answers_for_the_repository_host_only(tmp_path, token):
    """`git credential fill`, configured as a checkout configures git: the token for the
    repository's host, nothing for another host (or another port)."""
    url = "http://127.0.0.1:8123/repo.git"
    credentials = Credentials("alice", token)
    env = {
        **os.environ,
        **git_environment(credentials),
        "GIT_ASKPASS": "true",
        "GIT_TERMINAL_PROMPT": "0",
    }

    def fill(host: str) -> str:
        return subprocess.run(
            ["git", *git_config_args(url, credentials), "credential", "fill"],
            input=f"protocol=http\nhost={host}\n\n",
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    assert f"username=alice\npassword={token}\n" in fill("127.0.0.1:8123")
    assert token not in fill("127.0.0.1:8124")
    assert token not in fill("example.org")
    # https://TOKEN@host/...: the token is the user name, the password empty (GitHub takes it).
    credentials = Credentials(token, "")
    env.update(git_environment(credentials))
    assert f"username={token}\npassword=\n" in fill("127.0.0.1:8123")


# --- checkout() against the server


@pytest.mark.parametrize("given", ["in the url", "apart"])
def test_no_command_line_ever_holds_the_token_during_clone_and_fetch(
    git_server, upstream, tmp_path, token, given
):
    server = git_server(token, "alice")
    folder = tmp_path / "work"
    watch = Watch(token, folder / ".git" / "config")
    server.while_waiting = watch
    if given == "in the url":
        url, extra = server.url().replace("http://", f"http://alice:{token}@"), {}
    else:
        url, extra = server.url(), {"credentials": Credentials("alice", token)}

    assert checkout(url, str(folder), **extra).action == "cloned"
    after_clone = len(server.authenticated())
    upstream.commit("second", {"README.md": "hello again\n"})
    assert checkout(url, str(folder), **extra).action == "updated"
    assert (folder / "README.md").read_text() == "hello again\n"

    assert after_clone > 0 and len(server.authenticated()) > after_clone  # both authenticated
    assert not server.errors, server.errors
    assert watch.git_processes_seen > 0  # the check ran while git was there to be seen
    assert watch.leaks == []


def test_git_config_never_holds_the_token_during_or_after_the_clone(git_server, tmp_path, token):
    server = git_server(token, "alice")
    folder = tmp_path / "work"
    watch = Watch(token, folder / ".git" / "config", command_lines=False)
    server.while_waiting = watch
    checkout(server.url().replace("http://", f"http://alice:{token}@"), str(folder))
    assert watch.configs_read > 0  # .git/config existed while the clone was under way
    assert watch.leaks == []
    assert git(folder, "config", "remote.origin.url").strip() == server.url()
    assert files_holding(folder, token) == []


def test_the_users_credential_store_is_neither_asked_nor_written(
    git_server, tmp_path, token, isolated_git
):
    """With `credential.helper=store`, git would write the URL's token in plain text to the
    store after a successful clone; and a stale stored password must not be used instead."""
    server = git_server(token, "alice")
    store = tmp_path / "git-credentials"
    stale = f"http://alice:stale-password@127.0.0.1%3a{server.port}\n"
    store.write_text(stale)
    isolated_git.write_text(f"[credential]\n\thelper = store --file={store}\n")
    checkout(server.url().replace("http://", f"http://alice:{token}@"), str(tmp_path / "a"))
    assert store.read_text() == stale
    checkout(server.url(), str(tmp_path / "b"), credentials=Credentials("alice", token))
    assert store.read_text() == stale


def test_a_wrong_token_fails_clearly_without_showing_it(git_server, tmp_path, token, caplog):
    caplog.set_level(logging.DEBUG)
    server = git_server(token, "alice")
    wrong = "wrong" + secrets.token_hex(8)
    lines: list[str] = []
    folder = tmp_path / "work"
    with pytest.raises(CheckoutError, match="authentication failed") as caught:
        checkout(
            server.url(), str(folder), progress=lines.append, credentials=Credentials("a", wrong)
        )
    shown = [str(caught.value), "\n".join(lines), caplog.text]
    shown.append("".join(traceback.format_exception(caught.value)))
    for text in shown:
        assert wrong not in text and token not in text
    assert not folder.exists()


def test_without_credentials_git_never_prompts(git_server, tmp_path):
    server = git_server("the-password", "alice")
    started = time.monotonic()
    with pytest.raises(CheckoutError, match="authentication failed"):
        checkout(server.url(), str(tmp_path / "work"), timeout=120)
    assert time.monotonic() - started < 20
    assert server.requests and not server.authenticated()


def test_credentials_left_in_origin_by_an_older_version_are_removed(git_server, tmp_path, token):
    server = git_server(token, "alice")
    folder = tmp_path / "work"
    credentials = Credentials("alice", token)
    checkout(server.url(), str(folder), credentials=credentials)
    leftover = server.url().replace("http://", f"http://alice:{token}@")
    git(folder, "config", "remote.origin.url", leftover)
    assert checkout(server.url(), str(folder), credentials=credentials).action == "up to date"
    assert git(folder, "config", "remote.origin.url").strip() == server.url()
    assert files_holding(folder / ".git", token) == []


# --- through the real CLI


def proxy_shows_nothing_of(proxy, *secret_values: str) -> None:
    page = proxy.get("", headers=HTML).body.decode(errors="replace")
    status = proxy.get("_jhsnp/status").body.decode(errors="replace")
    for text in (page, status, proxy.log()):
        for secret in secret_values:
            assert secret not in text


def test_token_from_the_environment_authenticates_and_never_shows(
    start_proxy, git_server, tmp_path, token
):
    server = git_server(token)  # any user name, as GitHub's and GitLab's tokens
    watch = Watch(token, tmp_path / "work" / ".git" / "config")
    server.while_waiting = watch
    proxy = start_proxy(
        ["--repofolder", "work"],
        app=[sys.executable, ECHO_APP, "{port}", "--say-env", "JHSNP_REPO_TOKEN"],
        env={"JHSNP_REPO": server.url(), "JHSNP_REPO_TOKEN": token},
    )
    assert (tmp_path / "work" / "README.md").read_text() == "hello\n"
    assert {user for _, _, user in server.authenticated()} == {DEFAULT_USERNAME}
    assert watch.git_processes_seen > 0 and watch.configs_read > 0
    assert watch.leaks == []
    # The token was for the checkout: the app does not inherit it.
    assert re.search(r"echo app env JHSNP_REPO_TOKEN=$", proxy.log(), re.MULTILINE)
    proxy_shows_nothing_of(proxy, token)
    assert files_holding(tmp_path / "work", token) == []


@pytest.mark.parametrize("how", ["--repo-token-file", "JHSNP_REPO_TOKEN_FILE"])
def test_token_from_a_file_authenticates(start_proxy, git_server, tmp_path, token, how):
    server = git_server(token, "alice")
    watch = Watch(token, tmp_path / "work" / ".git" / "config")
    server.while_waiting = watch
    secret_file = tmp_path / "secret" / "token"
    secret_file.parent.mkdir()
    secret_file.write_text(token + "\n")
    args = ["--repo", server.url(), "--repofolder", "work"]
    env = {"JHSNP_REPO_USERNAME": "alice"}
    if how == "--repo-token-file":
        args += ["--repo-token-file", str(secret_file)]
    else:
        env["JHSNP_REPO_TOKEN_FILE"] = str(secret_file)
    proxy = start_proxy(args, env=env)
    assert proxy.get("echo").status == 200
    assert (tmp_path / "work" / "README.md").read_text() == "hello\n"
    assert watch.git_processes_seen > 0
    assert watch.leaks == []
    proxy_shows_nothing_of(proxy, token)


def test_a_wrong_token_file_fails_clearly_and_try_again_reads_it_again(
    start_proxy, git_server, tmp_path, token
):
    server = git_server(token, "alice")
    wrong = "wrong" + secrets.token_hex(8)
    secret_file = tmp_path / "token"
    secret_file.write_text(wrong + "\n")
    proxy = start_proxy(
        ["--repo", server.url(), "--repofolder", "work", "--repo-token-file", str(secret_file)],
        env={"JHSNP_REPO_USERNAME": "alice"},
        wait="listening",
    )
    wait_for(lambda: proxy.status().get("state") == "failed", 60, what="the failed checkout")
    page = proxy.get("", headers=HTML)
    assert page.status == 503
    assert b"authentication failed" in page.body
    proxy_shows_nothing_of(proxy, wrong, token)

    secret_file.write_text(token + "\n")  # the secret is rotated; the next visit tries again
    proxy.get("", headers=HTML)
    wait_for(lambda: proxy.status().get("state") == "ready", 60, what="the app after the retry")
    assert (tmp_path / "work" / "README.md").read_text() == "hello\n"
    proxy_shows_nothing_of(proxy, wrong, token)


def test_credentials_in_the_repo_option_still_work_but_reach_no_git_command_line(
    start_proxy, git_server, tmp_path, token
):
    server = git_server(token, "alice")
    watch = Watch(token, tmp_path / "work" / ".git" / "config")
    server.while_waiting = watch
    url = server.url().replace("http://", f"http://alice:{token}@")
    proxy = start_proxy(["--repo", url, "--repofolder", "work"], wait="listening")
    # Only the proxy's own command line holds it (which is why it is warned about).
    watch.allowed.add(proxy.pid)
    wait_for(lambda: proxy.status().get("state") == "ready", 60, what="the app")
    assert watch.git_processes_seen > 0
    assert watch.leaks == []
    log = proxy.log()
    assert log.count("--repo holds credentials") == 1
    assert "JHSNP_REPO_TOKEN" in log
    proxy_shows_nothing_of(proxy, token)
    assert files_holding(tmp_path / "work", token) == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--repo", "ssh://git@example.org/r.git"],
            {"JHSNP_REPO_TOKEN": "abcdef"},
            "http:// and https:// URLs only",
        ),
        (
            ["--repo", "https://example.org/r.git", "--repo-token-file", "/nonexistent/token"],
            {},
            "/nonexistent/token cannot be read",
        ),
        (
            ["--repo", "https://example.org/r.git"],
            {"JHSNP_REPO_TOKEN": "abcdef", "JHSNP_REPO_TOKEN_FILE": "/some/file"},
            "give the repository's token once",
        ),
        (["--repo-token-file", "/some/file"], {}, "needs a repository"),
    ],
)
def test_bad_token_settings_stop_the_start_with_one_line(tmp_path, args, env, message):
    result = run_cli(["--authtype", "none", *args, "--", "python", "-V"], env=env)
    assert result.returncode == 2
    assert message in cli_error(result.stderr, 2)
    assert "abcdef" not in result.stderr
