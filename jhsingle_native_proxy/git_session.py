"""How a checkout runs git: one `Session` per checkout, with its deadline, credentials and scrubber.

This is the one module of the checkout that talks to GitPython. Every git command goes through
`Session.git` or `Session.git_progress`, which apply the rules that make a checkout safe to run
unattended before the app starts: the deadline of the whole checkout (GitPython's
`kill_after_timeout`), no prompts of any kind, hooks and signing off, our own identity for the
commits that save the user's work, the credentials through git's environment only
(`git_credentials`), and every line shown or logged scrubbed of them. Failures are `Fail`, a
short reason for users, which `checkout.checkout` turns into a `CheckoutError`.

`checkout` decides what to do (clone, update, switch) and `checkout_merge` how the user's work is
kept; neither runs git any other way.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import git
from git.cmd import handle_process_output

from .git_credentials import Credentials, git_config_args, git_environment
from .repo_url import redact, redact_all, url_secrets, without_credentials

log = logging.getLogger("jhsingle_native_proxy")


class _RedactFilter(logging.Filter):
    """GitPython logs command lines at debug level, and removes only `user:password@` from
    them; a token given as the user name (`https://TOKEN@host`) would still be written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact(message), None
        return True


def redact_git_logs() -> None:
    """Scrub URL credentials from GitPython's own log (the `git.cmd` logger); idempotent.

    Called where a checkout runs, not on import: importing this package must not change another
    library's logging.
    """
    logger = logging.getLogger("git.cmd")
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())


IDENTITY_NAME = "jhsingle-native-proxy"
IDENTITY_EMAIL = "jhsnp@localhost"
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


class Fail(Exception):
    """A short reason, turned into a CheckoutError (with URL and folder) at the top."""


@dataclass
class Result:
    """A finished git command: its exit status, stdout and stderr."""

    status: int
    out: str
    err: str


class _Progress(git.RemoteProgress):
    """Turns git's stderr into progress lines; keeps the non-progress lines for error messages."""

    def __init__(self, session: Session):
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


class Session:
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
        self.shown_url = redact(without_credentials(url))
        found = set(url_secrets(given_url or url))
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
        return redact_all(text, self.secrets)

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
            raise Fail(f"timed out after {self.timeout:g} seconds")
        return left

    def _command(self, args: tuple[str, ...]) -> list[str]:
        return [git.Git.GIT_PYTHON_GIT_EXECUTABLE, *_CONFIG, *self._git_config, *args]

    def command_line(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """argv and the variables to add to the environment, for a caller that runs git itself
        (publish mode, from the event loop): the same rules, credentials in the variables only."""
        return self._command(args), dict(self._env)

    def git(self, cwd: str | None, *args: str, check: bool = True) -> Result:
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
        result = Result(status, out.decode("utf-8", "surrogateescape"), err or "")
        if status != 0 and time.monotonic() - started >= limit - 0.05:
            raise Fail(f"timed out after {self.timeout:g} seconds (git {args[0]})")
        if check and status != 0:
            raise Fail(self.explain(args, result.err))
        return result

    def rev(self, folder: str, ref: str) -> str | None:
        """The commit `ref` names, or None if there is none."""
        result = self.git(
            folder, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
        )
        return result.out.strip() if result.status == 0 else None

    def is_ancestor(self, folder: str, older: str, newer: str) -> bool:
        """Whether `older` is `newer` or one of its ancestors."""
        result = self.git(folder, "merge-base", "--is-ancestor", older, newer, check=False)
        return result.status == 0

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
                raise Fail(f"timed out after {self.timeout:g} seconds (git {args[0]})")
            raise Fail(self.explain(args, "\n".join(progress.error_lines + progress.lines)))

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
