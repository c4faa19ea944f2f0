"""Publish mode's git: where the branch is, and one clean folder per commit.

Layout, under --repofolder (ours alone in publish mode): `repo.git`, a bare repository that
holds what was fetched, and `revisions/<commit>/`, one `git worktree add --detach` per commit.
A worktree is exactly the commit: nothing of a user's edits (the rules of --repo without
--follow) and nothing uncommitted can reach a published app.

Every git command runs as a child of the event loop (asyncio's subprocess API) with a deadline,
in its own session so that a deadline ends git and its helpers, and with the rules of
`git_session.Session`: no prompts, hooks off, and the credentials through git's environment
only, never argv nor a config file (the bare repository has no remote: the clean URL is given
to each fetch). Messages are scrubbed and explained by the same Session.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
from dataclasses import dataclass

from .git_credentials import Credentials, read_token_file, split_url
from .git_session import Session
from .prepare import checkout_environment
from .process import DIE_WITH_PARENT, signal_group
from .settings import Settings

log = logging.getLogger("jhsingle_native_proxy")

# Deadlines: asking where the branch is, and fetching plus making a folder.
LS_REMOTE_TIMEOUT = 30.0
FETCH_TIMEOUT = 300.0
# What is kept of a git command's output: its stdout is small (a commit, a line of `log`, the
# refs ending in refs/heads/BRANCH); more is a host sending refs without end, and fails. Of its
# stderr (a host may send "remote:" lines without end) the last part, where git's error is.
STDOUT_LIMIT = 1 << 20
STDERR_KEPT = 64 << 10
# The ref that holds the branch's last fetched commit in the bare repository.
FETCHED_REF = "refs/jhsnp/followed"


class OutputTooLong(Exception):
    """A git command's stdout passed STDOUT_LIMIT."""


async def _bounded_output(process: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """A git command's stdout (OutputTooLong past STDOUT_LIMIT) and the last STDERR_KEPT bytes
    of its stderr, once it has ended: never more than that in memory, whatever git is sent."""
    assert process.stdout is not None and process.stderr is not None

    async def stdout() -> bytes:
        kept = bytearray()
        while chunk := await process.stdout.read(65536):
            kept += chunk
            if len(kept) > STDOUT_LIMIT:
                raise OutputTooLong
        return bytes(kept)

    async def stderr() -> bytes:
        kept = bytearray()
        while chunk := await process.stderr.read(65536):
            kept += chunk
            del kept[:-STDERR_KEPT]
        return bytes(kept)

    readers = asyncio.gather(stdout(), stderr())
    try:
        out, err = await readers
    except BaseException:
        readers.cancel()
        with contextlib.suppress(BaseException):
            await readers
        raise
    await process.wait()
    return out, err


class RevisionGitError(Exception):
    """A git step failed; str(e) is a short reason, credential-free, for the console."""


@dataclass(frozen=True)
class CommitInfo:
    """What the console shows of a commit."""

    commit: str
    subject: str
    author: str
    time: float  # committer time, seconds since the epoch


class RevisionSource:
    """The followed branch of --repo, and the folders of the commits taken from it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.repofolder
        self.bare = os.path.join(self.root, "repo.git")
        self.trees = os.path.join(self.root, "revisions")
        # The branch followed: --repobranch, else the remote's default as it names it.
        self.branch = settings.repobranch.strip()
        # The folders `git worktree add` made whole in this process: the only ones reused.
        self._made: set[str] = set()
        # The lock held on the bare repository for the life of the process (see _hold).
        self._held: int | None = None

    def folder(self, commit: str) -> str:
        return os.path.join(self.trees, commit)

    def _session(self, timeout: float) -> Session:
        s = self.settings
        clean, in_url = split_url(s.repo)
        password = s.repo_password
        try:
            if s.repo_token_file:  # read again each time: a rotated secret is picked up
                password = read_token_file(s.repo_token_file)
            credentials = in_url
            if s.repo_username or password:
                credentials = Credentials(s.repo_username, password)
        except ValueError as e:
            raise RevisionGitError(str(e)) from None
        return Session(clean, timeout, None, credentials, given_url=s.repo)

    async def _git(self, session: Session, *args: str, cwd: str | None = None) -> str:
        """Run git within the session's deadline; its stdout, or RevisionGitError."""
        argv, variables = session.command_line(*args)
        env = {**checkout_environment(self.settings.environ), **variables}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                # A proxy killed outright takes git along (a hanging host would keep it forever).
                preexec_fn=DIE_WITH_PARENT,
            )
        except OSError as e:
            raise RevisionGitError(f"git could not be run: {e.strerror or e}") from None
        try:
            out, err = await asyncio.wait_for(_bounded_output(process), session.timeout)
        except OutputTooLong:
            signal_group(process.pid, 9)
            with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
            raise RevisionGitError(
                f"git {args[0]} wrote more than {STDOUT_LIMIT >> 20} MiB (the host's refs?)"
            ) from None
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            signal_group(process.pid, 9)
            with contextlib.suppress(ProcessLookupError, asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise RevisionGitError(
                f"timed out after {session.timeout:g} seconds (git {args[0]})"
            ) from None
        if process.returncode != 0:
            reason = session.explain(args, err.decode("utf-8", "replace"))
            raise RevisionGitError(session.scrub(reason))
        return out.decode("utf-8", "replace")

    async def remote_head(self) -> str:
        """The commit at the tip of the branch on the remote, asked with `git ls-remote`."""
        session = self._session(LS_REMOTE_TIMEOUT)
        if not self.branch:
            out = await self._git(session, "ls-remote", "--symref", session.url, "HEAD")
            for line in out.splitlines():
                if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                    self.branch = line[len("ref: refs/heads/") : -len("\tHEAD")]
            if not self.branch:
                raise RevisionGitError("the remote names no default branch: give --repobranch")
        ref = f"refs/heads/{self.branch}"
        out = await self._git(session, "ls-remote", session.url, ref)
        for line in out.splitlines():
            commit, _, name = line.partition("\t")
            if name.strip() == ref:
                return commit.strip()
        raise RevisionGitError(f"the branch {self.branch} is not on the remote (deleted?)")

    async def check_out(self, commit: str) -> str:
        """A folder holding exactly `commit` of the branch, fetched if needed; its path.

        A force-push is no different: the branch's tip is fetched whatever its history.
        Returns the commit actually checked out: the branch's tip at the fetch, which is
        `commit` unless another push came in between.
        """
        session = self._session(FETCH_TIMEOUT)
        if os.path.isdir(self.root) and os.listdir(self.root) and not os.path.isdir(self.bare):
            raise RevisionGitError(
                f"{self.root} is not empty and holds no publish mode's revisions: "
                "give --follow a --repofolder of its own"
            )
        if not os.path.isdir(self.bare):
            os.makedirs(self.root, exist_ok=True)
            await self._git(session, "init", "--quiet", "--bare", self.bare)
        self._hold()
        depth = self.settings.checkout_depth
        fetch = ["--git-dir", self.bare, "fetch", "--quiet", "--no-tags", "--force"]
        if depth:
            fetch.append(f"--depth={depth}")
        await self._git(session, *fetch, session.url, f"+refs/heads/{self.branch}:{FETCHED_REF}")
        fetched = await self._git(session, "--git-dir", self.bare, "rev-parse", FETCHED_REF)
        fetched = fetched.strip()
        if fetched != commit:
            log.info("The branch moved on to %s while it was fetched", fetched[:12])
        folder = self.folder(fetched)
        if os.path.lexists(folder) and folder not in self._made:
            # Not one this process checked out whole: a `worktree add` cut by its deadline or
            # a crash (half a tree), or a previous run's folder its app wrote in. Made again.
            log.info("Checking %s out again: its folder was not made whole here", fetched[:12])
            await self.remove(fetched)
        if not os.path.isdir(folder):
            os.makedirs(self.trees, exist_ok=True)
            await self._git(session, "--git-dir", self.bare, "worktree", "prune")
            await self._git(
                session, "--git-dir", self.bare, "worktree", "add", "--detach", folder, fetched
            )
            self._made.add(folder)
        return fetched

    def _hold(self) -> None:
        """Take the folder for this process alone, or raise RevisionGitError.

        Two proxies on one --repofolder (named servers of one user publishing the same
        repository get the same default folder) would fetch into one ref, each make the
        other's folders and remove them. The lock is the kernel's: it goes with the process,
        however it ends, and the app does not inherit it.
        """
        if self._held is not None:
            return
        fd = os.open(os.path.join(self.bare, "jhsnp.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RevisionGitError(
                f"another proxy publishes from {self.root}: give each its own --repofolder"
            ) from None
        self._held = fd

    async def remove_others(self, kept: str) -> None:
        """Remove every revision folder but `kept`'s: at the first start, a previous run's
        folders, which this run neither lists nor would ever remove (each restart would leave
        up to FOLDERS_KEPT more on the disk)."""
        with contextlib.suppress(FileNotFoundError):
            for name in await asyncio.to_thread(os.listdir, self.trees):
                if name != kept:
                    log.info("Removing the folder of %s, from a previous run", name[:12])
                    await self.remove(name)

    async def describe(self, commit: str) -> CommitInfo:
        """Subject, author and time of a fetched commit."""
        session = self._session(LS_REMOTE_TIMEOUT)
        out = await self._git(
            session, "--git-dir", self.bare, "log", "-1", "--format=%s%x00%an%x00%ct", commit
        )
        subject, _, rest = out.rstrip("\n").partition("\0")
        author, _, when = rest.partition("\0")
        return CommitInfo(commit, subject, author, float(when or 0))

    async def remove(self, commit: str) -> None:
        """Remove a revision's folder (an old one, or one whose app failed)."""
        folder = self.folder(commit)
        self._made.discard(folder)
        session = self._session(LS_REMOTE_TIMEOUT)
        try:
            await self._git(
                session, "--git-dir", self.bare, "worktree", "remove", "--force", folder
            )
        except RevisionGitError as e:
            log.debug("git worktree remove %s: %s", commit[:12], e)
            await asyncio.to_thread(shutil.rmtree, folder, True)
            with contextlib.suppress(RevisionGitError):
                await self._git(session, "--git-dir", self.bare, "worktree", "prune")
