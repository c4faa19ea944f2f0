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
  merge and put back, and upstream's copy goes beside it as `NAME.upstream` (see
  `checkout_merge._put_back` for why this name). The path is then an ordinary modified tracked
  file, which later merges keep.
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

This module decides what to do (clone, update, switch branch); `checkout_merge` keeps the user's
work while it is done, `git_session` runs every git command, and `repo_url` holds the URL helpers
that need no GitPython.

Configuration is passed in by the caller; this module does not read `os.environ` (git itself
inherits the environment, so the user's credential helpers and proxies still apply, except when
credentials are given: then only ours is asked, and nothing is stored in the user's).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import git

from .checkout_merge import (
    find_collisions,
    integrate,
    recover_interrupted_run,
    save_local_changes,
    set_aside,
)
from .git_credentials import Credentials, split_url, takes_credentials
from .git_session import Fail, Session, redact_git_logs

# `redact` is also imported from here by older callers (supervisor.py); its home is repo_url.
from .repo_url import normalise, redact, without_credentials

log = logging.getLogger("jhsingle_native_proxy")


class CheckoutError(Exception):
    """A checkout failed; str(e) is a one-paragraph, credential-free message for users."""


@dataclass
class CheckoutResult:
    """What `checkout` did."""

    folder: str
    branch: str
    commit: str  # hexsha of HEAD after
    action: str  # "cloned" | "updated" | "up to date" | "switched"
    notes: list[str] = field(default_factory=list)  # what was kept, for the user


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
    (and of a branch fetched for the first time into a shallow clone); None (or 0) fetches
    everything. `timeout` is for the whole checkout, in seconds. `progress`, if given, receives
    human-readable lines: steps and git's own percentages; it may be called from a helper thread,
    never from two at once. Raises CheckoutError.

    Synchronous, and nothing can interrupt it but its deadline: the proxy runs it in a process of
    its own (`checkout_runner`), which it can end at shutdown; the next checkout repairs what
    that leaves (`checkout_merge.recover_interrupted_run`).

    `credentials` (an http(s) URL's user name and token) replace any in the URL itself; either
    way git is given the URL without them, and them through its environment only.
    """
    redact_git_logs()
    folder = os.path.abspath(folder)
    try:
        clean_url, in_url = split_url(url)
    except ValueError as e:  # a line break in the URL's credentials; the message shows none
        shown = redact(without_credentials(url.strip()))
        raise CheckoutError(f"Could not check out {shown} into {folder}: {e}") from None
    session = Session(clean_url, timeout, progress, credentials or in_url, given_url=url)
    try:
        result = _checkout(session, folder, branch.strip(), depth if depth and depth > 0 else None)
    except Fail as e:
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


def _checkout(s: Session, folder: str, branch: str, depth: int | None) -> CheckoutResult:
    if not s.url.strip():
        raise Fail("no repository URL was given")
    # `ext::` and other remote helpers can run commands; an option-like URL is an injection.
    if s.url.lstrip().startswith("-") or git.Git.re_unsafe_protocol.match(s.url):
        raise Fail("the URL is not one git may fetch from")
    if s.credentials is not None and not takes_credentials(s.url):
        raise Fail("a token or password can only be used with an http:// or https:// URL")
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


def _check_branch_name(s: Session, branch: str) -> None:
    result = s.git(None, "check-ref-format", "--branch", branch, check=False)
    if branch.startswith("-") or result.status != 0:
        raise Fail(f"{branch!r} is not a valid branch name")


def _inspect_folder(s: Session, folder: str) -> tuple[str, str]:
    """("missing" | "empty" | "interrupted" | "clone", git dir); refuses anything else."""
    if not os.path.lexists(folder):
        return "missing", ""
    if not os.path.isdir(folder):
        raise Fail("it exists and is not a folder; nothing was changed")
    entries = os.listdir(folder)
    if not entries:
        return "empty", ""
    foreign = (
        f"the folder is not empty and is not a git clone of {s.shown_url}; nothing in it was "
        "changed (use another folder, or move this one away)"
    )
    if ".git" not in entries:
        raise Fail(foreign)
    result = s.git(folder, "rev-parse", "--show-toplevel", "--absolute-git-dir", check=False)
    if result.status != 0:
        if "dubious ownership" in result.err:
            raise Fail(
                "git refuses to use the folder because it belongs to another user (see git's "
                "safe.directory setting); nothing was changed"
            )
        raise Fail(foreign)
    top, _, gitdir = result.out.strip().partition("\n")
    if os.path.realpath(top) != os.path.realpath(folder):
        raise Fail(foreign)
    origin = s.git(folder, "config", "--get", "remote.origin.url", check=False).out.strip()
    if not origin or normalise(origin) != normalise(s.url):
        other = f" (it is a clone of {redact(without_credentials(origin))})" if origin else ""
        raise Fail(foreign + other)
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
        raise Fail("the clone in the folder has no commit yet; nothing was changed")
    return "clone", gitdir


def _remote_branch(s: Session, branch: str) -> str:
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
            raise Fail(f"the branch {branch!r} does not exist in {s.shown_url}")
        return branch
    if default:
        return default
    if not head_sha:
        raise Fail(f"{s.shown_url} is empty (it has no branch to check out)")
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
    raise Fail(f"could not tell the default branch of {s.shown_url}; name the branch")


def _clone(
    s: Session, folder: str, branch: str, depth: int | None, existed: bool
) -> CheckoutResult:
    s.step(f"Cloning {s.shown_url} (branch {branch}) into {folder} …")
    args = ["clone", "--progress", "--branch", branch]
    if depth:
        args.append(f"--depth={depth}")
    try:
        s.git_progress(None, *args, "--", s.url, folder)
    except Fail:
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


def _update(s: Session, folder: str, gitdir: str, branch: str, depth: int | None) -> CheckoutResult:
    notes: list[str] = []
    recover_interrupted_run(s, folder, gitdir, notes)
    for name, what in (
        ("MERGE_HEAD", "a merge"),
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase (or git am)"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ("REVERT_HEAD", "a revert"),
    ):
        if os.path.lexists(os.path.join(gitdir, name)):
            raise Fail(f"{what} is in progress in the folder; finish or abort it first")

    current = s.git(folder, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    current_branch = current.out.strip() if current.status == 0 else None
    tracking = f"refs/remotes/origin/{branch}"
    had_tracking = s.rev(folder, tracking) is not None
    shallow = s.git(folder, "rev-parse", "--is-shallow-repository").out.strip() == "true"
    fetch = ["fetch", "--progress"]
    if shallow and depth and not had_tracking:
        fetch.append(f"--depth={depth}")
    s.step(f"Fetching branch {branch} from {s.shown_url} …")
    s.git_progress(folder, *fetch, "--", s.url, f"+refs/heads/{branch}:{tracking}")

    if current_branch == branch:
        action = integrate(s, folder, gitdir, branch, notes)
    else:
        _switch(s, folder, gitdir, current_branch, branch, notes)
        action = "switched"
    commit = s.git(folder, "rev-parse", "HEAD").out.strip()
    return CheckoutResult(folder, branch, commit, action, notes)


def _switch(
    s: Session,
    folder: str,
    gitdir: str,
    current: str | None,
    branch: str,
    notes: list[str],
) -> None:
    """Leave `current` with its work committed, and check out `branch` (made from upstream)."""
    s.step(f"Switching from {current or 'a detached HEAD'} to branch {branch} …")
    old = current or "the detached HEAD"
    saved = save_local_changes(s, folder, f"Save local changes on {old} before switching")
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
    local = s.rev(folder, f"refs/heads/{branch}")
    target = local or s.git(folder, "rev-parse", f"refs/remotes/origin/{branch}").out.strip()
    collisions = find_collisions(s, folder, head, target)
    with set_aside(folder, gitdir, collisions, notes):
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
        integrate(s, folder, gitdir, branch, notes)
