"""Check out the app's git repository before the app starts (--repo, --repobranch, --repofolder).

The folder is the user's: they may have edited, added, deleted and committed files in it since the
last launch, and an update from upstream must never lose any of that. The rules:

- A missing or empty folder gets a fresh (by default shallow) clone of the branch, or of the
  remote's default branch as the remote itself names it (`git ls-remote --symref URL HEAD`).
- A clone of the same repository is updated: the user's changes to tracked files are committed
  first (author `jhsingle-native-proxy <jhsnp@localhost>`), then upstream is merged with
  `-X ours`, so upstream changes come in where they do not overlap the user's, and the user's
  lines win where they do. Conflicts `-X ours` cannot settle (modify/delete, both ways) are
  settled for the user too: a file they deleted stays deleted, a file they changed stays.
- An untracked (or ignored) file at a path where upstream now adds one is moved aside during the
  merge and put back, and upstream's copy goes beside it as `NAME.upstream` (see `_put_back` for
  why this name). The path is then an ordinary modified tracked file, which later merges keep.
- A different branch than the checked-out one: the work on the old branch is committed there,
  then the new branch is checked out (created from upstream the first time); untracked files
  stay. Switching back later brings the saved work back.
- A folder that is not empty and not a clone of this repository is never touched.

Nothing here runs `git reset --hard`, `git clean`, a forced checkout or `git stash drop`. The one
reset-like command is `git merge --abort`, and only after everything of the user's is committed
(or set aside), so it can only take back what the merge itself wrote.

Credentials (in an http(s) URL, or given apart as `credentials`) never reach git's command line
nor any file: the URL is split first (see `git_credentials`), git clones and fetches the clean
URL, so `origin` is clean from the first moment, and gets the user name and token from a
credential helper of ours through its environment. Every message, log line, progress line and
exception text still goes through `redact` (and through a scrubber that also knows the token),
because GitPython's errors carry the whole command line and git's stderr. Every git command runs
with a deadline (GitPython's `kill_after_timeout`, sharing the `timeout` of the whole checkout),
with prompts switched off, so a password prompt fails at once instead of hanging the server's
start. The proxy runs checkouts through `checkout_runner`, in a session of their own without a
terminal (so not even ssh can ask for a passphrase), which it can end, git included, at shutdown.

Configuration is passed in by the caller; this module does not read `os.environ` (git itself
inherits the environment, so the user's credential helpers and proxies still apply, except when
credentials are given: then only ours is asked, and nothing is stored in the user's).
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import git
from git.cmd import handle_process_output

from .git_credentials import (
    Credentials,
    git_config_args,
    git_environment,
    split_url,
    takes_credentials,
)

log = logging.getLogger("jhsingle_native_proxy")


class _RedactFilter(logging.Filter):
    """GitPython logs command lines at debug level, and removes only `user:password@` from
    them; a token given as the user name (`https://TOKEN@host`) would still be written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact(message), None
        return True


logging.getLogger("git.cmd").addFilter(_RedactFilter())

IDENTITY_NAME = "jhsingle-native-proxy"
IDENTITY_EMAIL = "jhsnp@localhost"
# Marks the commits and merges this module makes, so an interrupted merge can be told apart
# from one the user left half-done.
MARK = "(jhsingle-native-proxy)"
# An index.lock this old is left over from a crash, whatever processes run.
STALE_LOCK_SECONDS = 600
UPSTREAM_SUFFIX = ".upstream"
ASIDE_SUFFIX = ".jhsnp-aside"
# Records what was moved aside, so a crash in the middle of a merge cannot strand a user's file
# under its temporary name: the next checkout puts it back first.
ASIDE_JOURNAL = "jhsnp-aside.json"
MAX_FILE_NOTES = 20
PROGRESS_INTERVAL = 0.25

# Applied to every git command. Hooks off (a user's pre-commit hook must not block saving their
# work, nor a repository's hooks run unasked), no signing (a passphrase prompt would hang), no
# automatic gc detaching into the background and holding locks.
_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "credential.interactive=false",
)
_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "SSH_ASKPASS": "true",
    "SSH_ASKPASS_REQUIRE": "never",
    "GIT_EDITOR": "true",
    "GIT_MERGE_AUTOEDIT": "no",
    "GIT_AUTHOR_NAME": IDENTITY_NAME,
    "GIT_AUTHOR_EMAIL": IDENTITY_EMAIL,
    "GIT_COMMITTER_NAME": IDENTITY_NAME,
    "GIT_COMMITTER_EMAIL": IDENTITY_EMAIL,
}


class CheckoutError(Exception):
    """A checkout failed; str(e) is a one-paragraph, credential-free message for users."""


class _Fail(Exception):
    """A short reason, turned into a CheckoutError (with URL and folder) at the top."""


@dataclass
class CheckoutResult:
    """What `checkout` did."""

    folder: str
    branch: str
    commit: str  # hexsha of HEAD after
    action: str  # "cloned" | "updated" | "up to date" | "switched"
    notes: list[str] = field(default_factory=list)  # what was kept, for the user


# scheme:// then the user info, up to the last @ before the host (a password may hold an @).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s'\"<>]*)@")


def redact(text: str) -> str:
    """Remove credentials from any URL in text: https://user:token@host -> https://***@host."""
    return _USERINFO.sub(r"\1***@", text)


def _without_credentials(url: str) -> str:
    """The URL as it may be stored and shown: no user name, no password."""
    return _USERINFO.sub(r"\1", url)


def _secrets(url: str) -> list[str]:
    """The parts of the URL's user info that must never be shown, raw and percent-decoded.

    The password if there is one; otherwise the user name, which is the token in
    `https://TOKEN@host/...`. Very short values are left alone (`git@`), as replacing them
    everywhere would garble messages without protecting anything.
    """
    match = _USERINFO.search(url)
    if not match:
        return []
    userinfo = match.group(2)
    user, _, password = userinfo.partition(":")
    secret = password or user
    found = {secret, unquote(secret)}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def _repo_name(url: str) -> str:
    text = _without_credentials(url.strip())
    host = ""
    if "://" in text:
        text = re.split(r"[?#]", text, maxsplit=1)[0]
        host, _, text = text.split("://", 1)[1].partition("/")
    name = re.split(r"[/:\\]", text.rstrip("/"))[-1]
    if name.lower().endswith(".git"):
        name = name[:-4]
    if name in ("", ".", ".."):
        name = host.rpartition(":")[0] if re.search(r":\d+$", host) else host
    return name or "repo"


def default_folder(url: str, base: str) -> str:
    """Where to check out when --repofolder is not given: base/<repo name without .git>."""
    return os.path.join(base, _repo_name(url))


def _normalise(url: str) -> str:
    """A URL reduced to what tells repositories apart: no credentials, no trailing / or .git."""
    text = _without_credentials(url.strip())
    if "://" in text:
        scheme, _, rest = re.split(r"[?#]", text, maxsplit=1)[0].partition("://")
        host, _, path = rest.partition("/")
        if scheme.lower() == "file":
            text = "/" + path
        else:
            text = f"{scheme.lower()}://{host.lower()}/{path}"
    elif re.match(r"^[^/]*@[^/:]+:", text):  # scp-like user@host:path
        text = text.split("@", 1)[1]
    text = text.rstrip("/")
    if text.endswith(".git"):
        text = text[:-4].rstrip("/")
    return text


@dataclass
class _Result:
    status: int
    out: str
    err: str


class _Progress(git.RemoteProgress):
    """Turns git's stderr into progress lines; keeps the non-progress lines for error messages."""

    def __init__(self, session: _Session):
        super().__init__()
        self.session = session
        self.lines: list[str] = []
        self._last_sent: dict[int, float] = {}

    def update(
        self,
        op_code: int,
        cur_count: str | float,
        max_count: str | float | None = None,
        message: str = "",
    ) -> None:
        op = op_code & self.OP_MASK
        now = time.monotonic()
        boundary = op_code & (self.BEGIN | self.END)
        if not boundary and now - self._last_sent.get(op, 0.0) < PROGRESS_INTERVAL:
            return
        self._last_sent[op] = now
        self.session.report(" ".join((self._cur_line or "").split()), debug=True)

    def line_dropped(self, line: str) -> None:
        line = " ".join(line.split())
        if line:
            self.lines.append(line)
            self.session.report(line, debug=True)


class _Session:
    """One checkout: the clean URL, its credentials, the deadline, and the way to run git and to
    report. `url` is what git sees: never with the credentials, which go by git's environment."""

    def __init__(
        self,
        url: str,
        timeout: float,
        progress: Callable[[str], None] | None,
        credentials: Credentials | None = None,
        given_url: str = "",
    ):
        self.url = url
        self.credentials = credentials
        self.shown_url = redact(_without_credentials(url))
        found = set(_secrets(given_url or url))
        for secret in credentials.secrets() if credentials else ():
            found.update((secret, unquote(secret)))
        self.secrets = sorted((s for s in found if len(s) >= 4), key=len, reverse=True)
        self._git_config = git_config_args(url, credentials)
        self._env = {**_ENV, **git_environment(credentials)}
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._progress = progress
        self._lock = threading.Lock()
        self._last_line = ""

    def scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def report(self, line: str, debug: bool = False) -> None:
        """Send a line to the logs and to the progress callback (from any thread, one at a time)."""
        line = self.scrub(line)
        with self._lock:
            if line == self._last_line:
                return
            self._last_line = line
            if debug:
                log.debug("git: %s", line)
            else:
                log.info("%s", line)
            if self._progress is not None:
                try:
                    self._progress(line)
                except Exception as e:  # a broken callback must not break the checkout
                    log.warning("The progress callback failed: %s", self.scrub(repr(e)))

    def step(self, line: str) -> None:
        self.report(line)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Fail(f"timed out after {self.timeout:g} seconds")
        return left

    def _command(self, args: tuple[str, ...]) -> list[str]:
        return [git.Git.GIT_PYTHON_GIT_EXECUTABLE, *_CONFIG, *self._git_config, *args]

    def git(self, cwd: str | None, *args: str, check: bool = True) -> _Result:
        """Run one git command to completion within the deadline."""
        limit = self.remaining()
        log.debug("Running git %s", self.scrub(" ".join(args)))
        started = time.monotonic()
        status, out, err = git.Git(cwd).execute(
            self._command(args),
            with_extended_output=True,
            with_exceptions=False,
            stdout_as_string=False,
            kill_after_timeout=limit,
            env=self._env,
        )
        result = _Result(status, out.decode("utf-8", "surrogateescape"), err or "")
        if status != 0 and time.monotonic() - started >= limit - 0.05:
            raise _Fail(f"timed out after {self.timeout:g} seconds (git {args[0]})")
        if check and status != 0:
            raise _Fail(self.explain(args, result.err))
        return result

    def git_progress(self, cwd: str | None, *args: str) -> None:
        """Run a network command (clone, fetch), passing its progress on as it comes."""
        limit = self.remaining()
        log.debug("Running git %s", self.scrub(" ".join(args)))
        started = time.monotonic()
        process = git.Git(cwd).execute(
            self._command(args),
            as_process=True,
            universal_newlines=True,  # git ends progress lines with \r: this splits them too
            env=self._env,
        )
        progress = _Progress(self)
        handle_process_output(
            process,
            None,
            progress.new_message_handler(),
            None,
            decode_streams=False,
            kill_after_timeout=limit,
        )
        popen = process.proc
        if popen is None:  # killed by handle_process_output at the deadline
            status = process.status if process.status is not None else -9
        else:
            try:
                status = popen.wait(timeout=max(self.deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
                status = -9
        if status != 0:
            if time.monotonic() - started >= limit - 0.05:
                raise _Fail(f"timed out after {self.timeout:g} seconds (git {args[0]})")
            raise _Fail(self.explain(args, "\n".join(progress.error_lines + progress.lines)))

    def explain(self, args: tuple[str, ...], stderr: str) -> str:
        """A short reason, for users, from a failed command's stderr."""
        text = stderr.lower()
        where = self.shown_url
        if "://" in self.shown_url:
            where = self.shown_url.split("://", 1)[1].partition("/")[0] or where
        if "could not resolve host" in text or "name or service not known" in text:
            return f"the host {where} could not be found"
        if any(
            s in text
            for s in (
                "failed to connect",
                "connection refused",
                "couldn't connect",
                "could not connect",
                "connection timed out",
                "network is unreachable",
                "no route to host",
            )
        ):
            return f"could not connect to {where}"
        if any(
            s in text
            for s in (
                "authentication failed",
                "could not read username",
                "could not read password",
                "terminal prompts disabled",
                "permission denied",
                "access denied",
                "invalid username or password",
                "the requested url returned error: 401",
                "the requested url returned error: 403",
            )
        ):
            return f"authentication failed for {self.shown_url} (check the credentials)"
        if (
            "repository not found" in text
            or "does not appear to be a git repository" in text
            or "returned error: 404" in text
            or ("not found" in text and args[0] in ("clone", "fetch", "ls-remote"))
        ):
            return f"no repository at {self.shown_url} (or no access to it)"
        if "ssl" in text and "certificate" in text:
            return f"the TLS certificate of {where} was not accepted"
        if "dubious ownership" in text:
            return "git refuses to use the folder because it belongs to another user"
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines
        detail = errors[0] if errors else "no message"
        return f"git {args[0]} failed: {detail}"


def checkout(
    url: str,
    folder: str,
    branch: str = "",
    *,
    depth: int | None = 1,
    timeout: float = 300,
    progress: Callable[[str], None] | None = None,
    credentials: Credentials | None = None,
) -> CheckoutResult:
    """Clone `url` into `folder`, or bring an existing clone up to date without losing local work.

    `branch` empty means the remote's default branch. `depth` limits the history of a fresh clone
    (and of a branch fetched for the first time); None (or 0) fetches everything. `timeout` is for
    the whole checkout, in seconds. `progress`, if given, receives human-readable lines: steps and
    git's own percentages; it may be called from a helper thread, never from two at once.
    Synchronous: call it from a worker thread in async code. Raises CheckoutError.

    `credentials` (an http(s) URL's user name and token) replace any in the URL itself; either
    way git is given the URL without them, and them through its environment only.
    """
    folder = os.path.abspath(folder)
    try:
        clean_url, in_url = split_url(url)
    except ValueError as e:  # a line break in the URL's credentials; the message shows none
        shown = redact(_without_credentials(url.strip()))
        raise CheckoutError(f"Could not check out {shown} into {folder}: {e}") from None
    session = _Session(clean_url, timeout, progress, credentials or in_url, given_url=url)
    try:
        result = _checkout(session, folder, branch.strip(), depth if depth and depth > 0 else None)
    except _Fail as e:
        reason = str(e)
    except Exception as e:  # anything else still becomes a CheckoutError without credentials
        reason = f"{type(e).__name__}: {e}"
        log.debug("Checkout failed unexpectedly:\n%s", session.scrub(traceback.format_exc()))
    else:
        log.info(
            "Checked out %s (%s) into %s: %s at %s",
            session.shown_url,
            result.branch,
            folder,
            result.action,
            result.commit[:10],
        )
        for note in result.notes:
            log.info("%s", session.scrub(note))
        return result
    message = session.scrub(
        " ".join(f"Could not check out {session.shown_url} into {folder}: {reason}".split())
    )
    log.error("%s", message)
    # Raised outside the except blocks: no chained exception can carry the URL along.
    raise CheckoutError(message)


def _checkout(s: _Session, folder: str, branch: str, depth: int | None) -> CheckoutResult:
    if not s.url.strip():
        raise _Fail("no repository URL was given")
    # `ext::` and other remote helpers can run commands; an option-like URL is an injection.
    if s.url.lstrip().startswith("-") or git.Git.re_unsafe_protocol.match(s.url):
        raise _Fail("the URL is not one git may fetch from")
    if s.credentials is not None and not takes_credentials(s.url):
        raise _Fail("a token or password can only be used with an http:// or https:// URL")
    if branch:
        _check_branch_name(s, branch)
    state, gitdir = _inspect_folder(s, folder)
    s.step(f"Asking {s.shown_url} for branch {branch or '(default)'} …")
    branch = _remote_branch(s, branch)
    if state == "interrupted":
        log.warning("Removing the remains of an interrupted clone in %s", folder)
        shutil.rmtree(os.path.join(folder, ".git"))
        state = "empty"
    if state in ("missing", "empty"):
        return _clone(s, folder, branch, depth, existed=state == "empty")
    return _update(s, folder, gitdir, branch, depth)


def _check_branch_name(s: _Session, branch: str) -> None:
    result = s.git(None, "check-ref-format", "--branch", branch, check=False)
    if branch.startswith("-") or result.status != 0:
        raise _Fail(f"{branch!r} is not a valid branch name")


def _inspect_folder(s: _Session, folder: str) -> tuple[str, str]:
    """("missing" | "empty" | "interrupted" | "clone", git dir); refuses anything else."""
    if not os.path.lexists(folder):
        return "missing", ""
    if not os.path.isdir(folder):
        raise _Fail("it exists and is not a folder; nothing was changed")
    entries = os.listdir(folder)
    if not entries:
        return "empty", ""
    foreign = (
        f"the folder is not empty and is not a git clone of {s.shown_url}; nothing in it was "
        "changed (use another folder, or move this one away)"
    )
    if ".git" not in entries:
        raise _Fail(foreign)
    result = s.git(folder, "rev-parse", "--show-toplevel", "--absolute-git-dir", check=False)
    if result.status != 0:
        if "dubious ownership" in result.err:
            raise _Fail(
                "git refuses to use the folder because it belongs to another user (see git's "
                "safe.directory setting); nothing was changed"
            )
        raise _Fail(foreign)
    top, _, gitdir = result.out.strip().partition("\n")
    if os.path.realpath(top) != os.path.realpath(folder):
        raise _Fail(foreign)
    origin = s.git(folder, "config", "--get", "remote.origin.url", check=False).out.strip()
    if not origin or _normalise(origin) != _normalise(s.url):
        other = f" (it is a clone of {redact(_without_credentials(origin))})" if origin else ""
        raise _Fail(foreign + other)
    clean_origin, stored = split_url(origin)
    if stored is not None:
        # Left by an older version that cloned the URL with its credentials and crashed before
        # storing it without them: the token must not stay in .git/config.
        log.warning("Removing the credentials stored in the origin URL of %s", folder)
        s.git(folder, "remote", "set-url", "origin", clean_origin)
    has_commit = s.git(folder, "rev-parse", "--verify", "--quiet", "HEAD", check=False).status == 0
    if not has_commit:
        if entries == [".git"]:
            return "interrupted", gitdir
        raise _Fail("the clone in the folder has no commit yet; nothing was changed")
    return "clone", gitdir


def _remote_branch(s: _Session, branch: str) -> str:
    """The branch to check out: `branch` if the remote has it, else the remote's default."""
    patterns = ["HEAD"] + ([f"refs/heads/{branch}"] if branch else [])
    out = s.git(None, "ls-remote", "--symref", "--", s.url, *patterns).out
    default = ""
    heads: dict[str, str] = {}
    head_sha = ""
    for line in out.splitlines():
        left, _, ref = line.partition("\t")
        if left.startswith("ref: ") and ref == "HEAD":
            default = left[5:].removeprefix("refs/heads/")
        elif ref == "HEAD":
            head_sha = left
        elif ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = left
    if branch:
        if branch not in heads:
            raise _Fail(f"the branch {branch!r} does not exist in {s.shown_url}")
        return branch
    if default:
        return default
    if not head_sha:
        raise _Fail(f"{s.shown_url} is empty (it has no branch to check out)")
    # A server that does not say which branch HEAD is: find the branch HEAD points at.
    all_heads = s.git(None, "ls-remote", "--heads", "--", s.url).out
    matching = [
        ref.removeprefix("refs/heads/")
        for sha, _, ref in (line.partition("\t") for line in all_heads.splitlines())
        if sha == head_sha
    ]
    for name in ("main", "master", *matching):
        if name in matching:
            return name
    raise _Fail(f"could not tell the default branch of {s.shown_url}; name the branch")


def _clone(
    s: _Session, folder: str, branch: str, depth: int | None, existed: bool
) -> CheckoutResult:
    s.step(f"Cloning {s.shown_url} (branch {branch}) into {folder} …")
    args = ["clone", "--progress", "--branch", branch]
    if depth:
        args.append(f"--depth={depth}")
    try:
        s.git_progress(None, *args, "--", s.url, folder)
    except _Fail:
        # The folder was missing or empty before: whatever is in it now is the failed clone's.
        if existed:
            for entry in os.listdir(folder):
                path = os.path.join(folder, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.remove(path)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    commit = s.git(folder, "rev-parse", "HEAD").out.strip()
    return CheckoutResult(folder, branch, commit, "cloned", [])


def _update(
    s: _Session, folder: str, gitdir: str, branch: str, depth: int | None
) -> CheckoutResult:
    notes: list[str] = []
    _check_index_lock(folder, gitdir)
    _abort_own_interrupted_merge(s, folder, gitdir, notes)
    _put_back_from_journal(folder, gitdir, notes)
    for name, what in (
        ("MERGE_HEAD", "a merge"),
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase (or git am)"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ("REVERT_HEAD", "a revert"),
    ):
        if os.path.lexists(os.path.join(gitdir, name)):
            raise _Fail(f"{what} is in progress in the folder; finish or abort it first")

    current = s.git(folder, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    current_branch = current.out.strip() if current.status == 0 else None
    tracking = f"refs/remotes/origin/{branch}"
    had_tracking = _rev(s, folder, tracking) is not None
    shallow = s.git(folder, "rev-parse", "--is-shallow-repository").out.strip() == "true"
    fetch = ["fetch", "--progress"]
    if shallow and depth and not had_tracking:
        fetch.append(f"--depth={depth}")
    s.step(f"Fetching branch {branch} from {s.shown_url} …")
    s.git_progress(folder, *fetch, "--", s.url, f"+refs/heads/{branch}:{tracking}")

    if current_branch == branch:
        action = _integrate(s, folder, gitdir, branch, notes)
    else:
        _switch(s, folder, gitdir, current_branch, branch, notes)
        action = "switched"
    commit = s.git(folder, "rev-parse", "HEAD").out.strip()
    return CheckoutResult(folder, branch, commit, action, notes)


def _rev(s: _Session, folder: str, ref: str) -> str | None:
    result = s.git(folder, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return result.out.strip() if result.status == 0 else None


def _is_ancestor(s: _Session, folder: str, older: str, newer: str) -> bool:
    return s.git(folder, "merge-base", "--is-ancestor", older, newer, check=False).status == 0


def _check_index_lock(folder: str, gitdir: str) -> None:
    """Remove an index.lock left by a crash; refuse one that a running git may hold."""
    lock = os.path.join(gitdir, "index.lock")
    try:
        age = time.time() - os.stat(lock).st_mtime
    except FileNotFoundError:
        return
    if age < STALE_LOCK_SECONDS and _git_running_in(folder, gitdir):
        raise _Fail(
            "another git operation is running in the folder (.git/index.lock exists); "
            "try again when it has finished"
        )
    log.warning("Removing a stale %s (%.0f seconds old, no git running there)", lock, age)
    with contextlib.suppress(FileNotFoundError):
        os.remove(lock)


def _git_running_in(folder: str, gitdir: str) -> bool:
    """Whether a git process works in the folder (Linux /proc; elsewhere, assume one does)."""
    if not os.path.isdir("/proc/self"):
        return True
    places = [os.path.realpath(folder), os.path.realpath(gitdir)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if not f.read().startswith("git"):
                    continue
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if any(cwd == p or cwd.startswith(p + os.sep) for p in places):
            return True
    return False


def _abort_own_interrupted_merge(s: _Session, folder: str, gitdir: str, notes: list[str]) -> None:
    """A merge of ours cut short (crash, kill) is taken back; the user's work is all in HEAD."""
    if not os.path.exists(os.path.join(gitdir, "MERGE_HEAD")):
        return
    try:
        with open(os.path.join(gitdir, "MERGE_MSG"), encoding="utf-8", errors="replace") as f:
            ours = MARK in f.readline()
    except OSError:
        ours = False
    if ours:
        log.warning("Aborting an interrupted merge of upstream changes in %s", folder)
        s.git(folder, "merge", "--abort")
        notes.append("An interrupted update from an earlier start was undone and done again.")


@contextlib.contextmanager
def _set_aside(folder: str, gitdir: str, paths: list[str], notes: list[str]) -> Iterator[None]:
    """Move untracked paths out of git's way for the duration of the block, then put them back."""
    if not paths:
        yield
        return
    moves = [(path, _free_name(folder, path + ASIDE_SUFFIX)) for path in paths]
    journal = os.path.join(gitdir, ASIDE_JOURNAL)
    with open(journal, "w", encoding="utf-8") as f:
        json.dump(moves, f)
        f.flush()
        os.fsync(f.fileno())
    for path, aside in moves:
        os.rename(os.path.join(folder, path), os.path.join(folder, aside))
    try:
        yield
    finally:
        _put_back(folder, moves, notes)
        os.remove(journal)


def _put_back_from_journal(folder: str, gitdir: str, notes: list[str]) -> None:
    journal = os.path.join(gitdir, ASIDE_JOURNAL)
    try:
        with open(journal, encoding="utf-8") as f:
            moves = [(str(a), str(b)) for a, b in json.load(f)]
    except FileNotFoundError:
        return
    except (OSError, ValueError, TypeError):
        log.warning("Ignoring an unreadable %s", journal)
        moves = []
    _put_back(folder, moves, notes)
    os.remove(journal)


def _put_back(folder: str, moves: list[tuple[str, str]], notes: list[str]) -> None:
    """Return the user's files to their paths; upstream's copy (if any) goes to `PATH.upstream`.

    The upstream copy gets a suffix after the whole name (`app.py.upstream`, not
    `app.upstream.py`), as dpkg's `.dpkg-dist` and rpm's `.rpmnew` do with a package's new
    version of a file the administrator changed: no program picks it up by its extension, so an
    extra `.py` cannot become a Streamlit or Dash page, a Voila notebook or an imported module,
    and the app keeps running exactly the user's files. The name still sorts right next to the
    user's file, and `diff app.py app.py.upstream` shows what upstream changed. An existing name
    is never overwritten: `.upstream.2`, `.upstream.3`, ... are used instead.
    """
    for path, aside in moves:
        original, kept = os.path.join(folder, path), os.path.join(folder, aside)
        if not os.path.lexists(kept):
            continue
        if os.path.lexists(original):
            same = (
                os.path.isfile(original)
                and not os.path.islink(original)
                and os.path.isfile(kept)
                and not os.path.islink(kept)
                and filecmp.cmp(original, kept, shallow=False)
            )
            if same:
                os.replace(kept, original)
                continue
            beside = _free_name(folder, path + UPSTREAM_SUFFIX)
            os.rename(original, os.path.join(folder, beside))
            notes.append(f"Kept your {path}; the upstream version is in {beside}")
        os.rename(kept, original)


def _free_name(folder: str, path: str) -> str:
    if not os.path.lexists(os.path.join(folder, path)):
        return path
    n = 2
    while os.path.lexists(os.path.join(folder, f"{path}.{n}")):
        n += 1
    return f"{path}.{n}"


def _collisions(s: _Session, folder: str, head: str, target: str) -> list[str]:
    """Untracked (or ignored) paths that would stand where `target` adds files.

    Git refuses to overwrite untracked files, but silently overwrites ignored ones; both are the
    user's, so both are set aside. A path counts when it exists itself, or when one of its parent
    folders is an untracked file or symlink where upstream needs a folder.
    """
    out = s.git(
        folder, "diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", head, target
    ).out
    found: set[str] = set()
    for path in filter(None, out.split("\0")):
        parts = path.split("/")
        blocked = False
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            full = os.path.join(folder, parent)
            if not os.path.lexists(full):
                break
            if os.path.islink(full) or not os.path.isdir(full):
                if s.git(folder, "cat-file", "-e", f"{head}:{parent}", check=False).status:
                    found.add(parent)
                blocked = True
                break
        if not blocked and os.path.lexists(os.path.join(folder, path)):
            found.add(path)
    return sorted(found)


def _save_local_changes(s: _Session, folder: str, message: str) -> str | None:
    """Commit every change to tracked files (and whatever the user staged); the new commit id."""
    s.git(folder, "add", "--update")
    if s.git(folder, "diff", "--cached", "--quiet", check=False).status == 0:
        return None
    s.step("Saving your local changes in a commit …")
    body = (
        "Committed automatically before updating from upstream, so that no local change could be "
        "overwritten. The files in the folder were not changed by this commit."
    )
    s.git(folder, "commit", "--quiet", "--no-verify", "-m", f"{message} {MARK}", "-m", body)
    return s.git(folder, "rev-parse", "HEAD").out.strip()


def _name_status(s: _Session, folder: str, old: str, new: str, renames: bool) -> dict[str, str]:
    """Path -> status letter (A, M, D, R, ...); a renamed path maps to "R<new path>"."""
    find = "--find-renames" if renames else "--no-renames"
    fields = s.git(folder, "diff", "--name-status", "-z", find, old, new).out.split("\0")
    changes: dict[str, str] = {}
    i = 0
    while i + 1 < len(fields):
        letter = fields[i][:1]
        if letter in ("R", "C"):
            changes[fields[i + 1]] = letter + fields[i + 2]
            i += 3
        else:
            changes[fields[i + 1]] = letter
            i += 2
    return changes


def _ensure_merge_base(s: _Session, folder: str, branch: str, head: str, upstream: str) -> str:
    """The merge base of HEAD and upstream, fetching more history of a shallow clone if needed."""
    refspec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}"
    for deeper in ("--deepen=100", "--unshallow"):
        base = s.git(folder, "merge-base", head, upstream, check=False)
        if base.status == 0:
            return base.out.strip()
        if s.git(folder, "rev-parse", "--is-shallow-repository").out.strip() != "true":
            break
        s.step("Fetching more history to find where your copy and upstream diverged …")
        s.git_progress(folder, "fetch", "--progress", deeper, "--", s.url, refspec)
    base = s.git(folder, "merge-base", head, upstream, check=False)
    if base.status == 0:
        return base.out.strip()
    raise _Fail(
        "upstream's history has no commit in common with the folder's (was it rewritten?); "
        "nothing was changed"
    )


def _integrate(s: _Session, folder: str, gitdir: str, branch: str, notes: list[str]) -> str:
    """Merge origin/<branch> into the checked-out branch, keeping every local change."""
    upstream = s.git(folder, "rev-parse", f"refs/remotes/origin/{branch}").out.strip()
    head = s.git(folder, "rev-parse", "HEAD").out.strip()
    if _is_ancestor(s, folder, upstream, head):
        return "up to date"
    base = _ensure_merge_base(s, folder, branch, head, upstream)
    saved = _save_local_changes(s, folder, f"Save local changes on {branch}")
    if saved:
        notes.append(f"Your changes to tracked files were committed on {branch} ({saved[:10]}).")
        head = saved
    _note_both_changed(s, folder, base, head, upstream, notes)
    collisions = _collisions(s, folder, head, upstream)
    s.step(f"Merging upstream changes of {branch} …")
    with _set_aside(folder, gitdir, collisions, notes):
        if _is_ancestor(s, folder, head, upstream):
            s.git(folder, "merge", "--ff-only", "--quiet", upstream)
        else:
            _merge_keeping_ours(s, folder, gitdir, branch, upstream)
    return "updated"


def _note_both_changed(
    s: _Session, folder: str, base: str, head: str, upstream: str, notes: list[str]
) -> None:
    ours = _name_status(s, folder, base, head, renames=False)
    theirs = _name_status(s, folder, base, upstream, renames=True)
    both = sorted(ours.keys() & theirs.keys())
    for path in both[:MAX_FILE_NOTES]:
        mine, upstreams = ours[path], theirs[path]
        if mine == "D" and upstreams == "D":
            continue
        if upstreams.startswith("R") and mine != "D":
            notes.append(
                f"{path}: renamed upstream to {upstreams[1:]}; your changes went along with it"
            )
        elif upstreams.startswith("R"):
            notes.append(f"{path}: renamed upstream, but you deleted it; it stays deleted")
        elif mine == "D":
            notes.append(f"{path}: changed upstream, but you deleted it; it stays deleted")
        elif upstreams == "D":
            notes.append(f"{path}: deleted upstream, but you changed it; your version is kept")
        else:
            notes.append(
                f"{path}: changed by you and upstream; upstream's changes were merged in, "
                "and your version was kept wherever both changed the same lines"
            )
    if len(both) > MAX_FILE_NOTES:
        notes.append(f"... and {len(both) - MAX_FILE_NOTES} more files changed on both sides")


def _merge_keeping_ours(s: _Session, folder: str, gitdir: str, branch: str, upstream: str) -> None:
    message = f"Merge upstream changes of {branch} {MARK}"
    result = s.git(folder, "merge", "--no-edit", "-X", "ours", "-m", message, upstream, check=False)
    if result.status == 0:
        return
    if not os.path.exists(os.path.join(gitdir, "MERGE_HEAD")):
        # Refused before it began (git says why); nothing in the folder changed.
        raise _Fail(s.explain(("merge",), result.err or result.out))
    try:
        unmerged: dict[str, set[str]] = {}
        out = s.git(folder, "ls-files", "--unmerged", "-z").out
        for entry in filter(None, out.split("\0")):
            info, _, path = entry.partition("\t")
            unmerged.setdefault(path, set()).add(info.split()[2])
        for path, stages in sorted(unmerged.items()):
            if "2" in stages:  # the user's side has the file: theirs changed or deleted it
                s.git(folder, "checkout", "--ours", "--", path)
                s.git(folder, "add", "--", path)
            else:  # the user deleted it: upstream's changed copy is not brought back
                s.git(folder, "rm", "--quiet", "--force", "--ignore-unmatch", "--", path)
        left = s.git(folder, "ls-files", "--unmerged").out.strip()
        if left:
            raise _Fail("the merge left conflicts that could not be settled")
        s.git(folder, "commit", "--quiet", "--no-verify", "--no-edit")
    except _Fail as e:
        # All of the user's work is committed or set aside: aborting only undoes the merge.
        s.git(folder, "merge", "--abort", check=False)
        raise _Fail(f"could not merge upstream changes ({e}); nothing was changed") from None


def _switch(
    s: _Session,
    folder: str,
    gitdir: str,
    current: str | None,
    branch: str,
    notes: list[str],
) -> None:
    """Leave `current` with its work committed, and check out `branch` (made from upstream)."""
    s.step(f"Switching from {current or 'a detached HEAD'} to branch {branch} …")
    old = current or "the detached HEAD"
    saved = _save_local_changes(s, folder, f"Save local changes on {old} before switching")
    head = s.git(folder, "rev-parse", "HEAD").out.strip()
    if current is None:
        reachable = s.git(
            folder, "for-each-ref", "--contains", head, "--count=1", "refs/heads", "refs/remotes"
        ).out.strip()
        if not reachable:
            keep = f"jhsnp-saved-{head[:10]}"
            s.git(folder, "branch", "--force", keep, head)
            notes.append(f"Your detached HEAD's commits are kept on the branch {keep}.")
    elif saved:
        notes.append(
            f"Your changes on {current} were committed there ({saved[:10]}); "
            f"they come back when you switch back to {current}."
        )
    local = _rev(s, folder, f"refs/heads/{branch}")
    target = local or s.git(folder, "rev-parse", f"refs/remotes/origin/{branch}").out.strip()
    collisions = _collisions(s, folder, head, target)
    with _set_aside(folder, gitdir, collisions, notes):
        if local:
            s.git(folder, "checkout", "--quiet", branch, "--")
        else:
            s.git(
                folder,
                "checkout",
                "--quiet",
                "--no-track",
                "-b",
                branch,
                f"refs/remotes/origin/{branch}",
                "--",
            )
            s.git(folder, "config", f"branch.{branch}.remote", "origin")
            s.git(folder, "config", f"branch.{branch}.merge", f"refs/heads/{branch}")
    if local:
        _integrate(s, folder, gitdir, branch, notes)
