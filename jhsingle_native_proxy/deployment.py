"""Publish mode (--follow): a deployment of revisions, each with its own AppSupervisor, switched
without downtime.

The life of a switch. A push is noticed (`git ls-remote` every --follow-interval, or
`request_update` from the webhook or the console); updates run one at a time, and requests that
come in meanwhile make one more update, not one each. The new commit is checked out clean in
a folder of its own (`revision_git`), its app started on its own port by a supervisor of its
own while the live one serves. Only once it is ready does `services.supervisor` point at it,
so new requests and new websockets go there; requests under way hold the old port and finish
there. The old revision drains: its open connections (which the proxy's handlers note in its
supervisor's `connections`) may stay until they end or --drain-timeout passes; websockets still
open then are closed with 1012 (Service Restart), so that browsers reconnect, to the new one;
then the old process group is ended. A revision whose app does not start or never gets ready
never goes live: it is stopped, and its failure (commit, reason, output) is kept for the
console. At most two apps run at once: a switch that begins while the previous one drains
ends that drain first.

Rolling back is the same switch to a previous revision still on disk; the deployment then stays
pinned to it until a new push arrives (the branch's tip moves on from where it was at the
rollback) or the owner presses "Follow the branch".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .env_build import INSTALL_TIMEOUT
from .prepare import ProgressLog, app_environment
from .revision_git import CommitInfo, RevisionGitError, RevisionSource
from .settings import Settings
from .supervisor import AppState, AppSupervisor, Failure, FailureKind

log = logging.getLogger("jhsingle_native_proxy")

# Revisions whose folder is kept (the live one included): the ones a rollback can go to.
FOLDERS_KEPT = 4
# Revisions the console lists.
REVISIONS_LISTED = 10
# How often a drain looks whether the old revision's connections have ended.
DRAIN_POLL = 0.1


@dataclass
class Revision:
    """One commit of the branch, as deployed (or tried)."""

    info: CommitInfo
    state: str = "starting"  # starting | live | previous | failed
    reason: str = ""
    output: list[str] = field(default_factory=list)
    # When it went live or failed (wall clock).
    since: float = field(default_factory=time.time)
    on_disk: bool = True

    @property
    def commit(self) -> str:
        return self.info.commit

    def view(self, with_output: bool) -> dict[str, object]:
        view: dict[str, object] = {
            "commit": self.commit,
            "short": self.commit[:10],
            "subject": self.info.subject,
            "author": self.info.author,
            "time": self.info.time,
            "state": self.state,
            "since": self.since,
            "can_roll_back": self.state == "previous" and self.on_disk,
        }
        if self.reason:
            view["reason"] = self.reason
        if with_output:
            view["output"] = self.output
        return view


def folders_to_remove(revisions: list[Revision]) -> list[Revision]:
    """Of revisions (newest first), those whose folder goes: all but the newest FOLDERS_KEPT
    that ran (live or previous: what a roll back may go to) and one starting."""
    kept, gone = 0, []
    for revision in revisions:
        if not revision.on_disk or revision.state == "starting":
            continue
        if revision.state in ("live", "previous") and kept < FOLDERS_KEPT:
            kept += 1
            continue
        gone.append(revision)
    return gone


def revisions_remembered(revisions: list[Revision]) -> list[Revision]:
    """Of revisions (newest first), those the deployment keeps: the newest REVISIONS_LISTED * 2,
    and older ones still live, starting or on disk, however many failed pushes came since (else
    the console would lose the live revision, and a folder would never be removed)."""
    limit = REVISIONS_LISTED * 2
    return [
        r for n, r in enumerate(revisions)
        if n < limit or r.on_disk or r.state in ("live", "starting")
    ]  # fmt: skip


class RevisionSupervisor(AppSupervisor):
    """One revision's app: the supervisor's life, prepared from the revision's own folder.

    Only its preparation differs: the folder is a clean checkout of one commit, so there is no
    checkout of --repo to run; the very first revision is fetched here, which is what the
    loading page shows at the first start.
    """

    def __init__(self, deployment: Deployment, revision: Revision | None, **kwargs: Any):
        settings = deployment.settings
        if revision is not None:
            settings = deployment.settings_for(revision.commit)
        super().__init__(settings, **kwargs)
        self.deployment = deployment
        self.revision = revision

    async def _run_once(self) -> tuple[Failure, float]:
        # Prepared first: the first revision's folder is known only then, and the supervisor
        # reads its settings once, at the start of a run.
        if self.app_environ is None:
            failure = await self._prepare()
            if failure is not None:
                return failure, 0.0
        return await super()._run_once()

    async def _prepare(self) -> Failure | None:
        if self.revision is None:
            self.progress.clear()
            self.phase = "Getting the app's repository"
            self.launched.set()
            try:
                self.revision = await self.deployment.first_revision(self.progress)
            except RevisionGitError as e:
                self.phase = "The checkout failed"
                self.progress.add(str(e))
                return Failure(FailureKind.NOT_PREPARED, str(e), list(self.progress.lines))
            self.settings = self.deployment.settings_for(self.revision.commit)
            self.given_settings = self.settings
        hide = self.settings.hide_hub_token
        return await self._prepare_app(app_environment(self.base_environ, hide_hub_token=hide))


class Deployment:
    """The revisions of the followed branch, the live one, and the switches between them."""

    def __init__(self, settings: Settings, **supervisor_options: Any):
        self.settings = settings
        self.publish = settings.publish
        self.source = RevisionSource(settings)
        self._supervisor_options = supervisor_options
        self.revisions: list[Revision] = []  # newest first
        self.live: AppSupervisor = RevisionSupervisor(self, None, **supervisor_options)
        # The last error of noticing or fetching a push (the live revision keeps serving).
        self.error = ""
        self.checked_at: float | None = None
        self.remote_head = ""
        # After a rollback: the branch's tip then; a different tip is a new push.
        self.pinned_over: str | None = None
        self.services: Any = None
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._retry_failed = False
        self._follower: asyncio.Task | None = None
        self._drain: asyncio.Task | None = None
        self._cut_drain = asyncio.Event()
        self._stopping = False
        # Apps of the deployment that are not the live one: starting, or draining.
        self._others: set[AppSupervisor] = set()

    def settings_for(self, commit: str) -> Settings:
        """The settings of one revision's app: `{repofolder}` (and its folder) is the commit's."""
        return dataclasses.replace(self.settings, repofolder=self.source.folder(commit))

    # -- what the server, the console and the webhook call ----------------------------------

    def attach(self, services: Any) -> None:
        """Start following, once the server's services exist (they point at the live app)."""
        self.services = services
        services.supervisor = self.live
        self._follower = asyncio.create_task(self._follow())

    def request_update(self, reason: str, retry_failed: bool = False) -> None:
        """Look at the branch soon (non-blocking); calls that come together make one update."""
        log.info("An update of the published app was asked for (%s)", reason)
        self._retry_failed = self._retry_failed or retry_failed
        self._wanted.set()

    def follow_branch(self) -> None:
        """Stop being pinned to a rolled-back revision, and go to the branch's tip."""
        self.pinned_over = None
        self.request_update("follow the branch", retry_failed=True)

    async def roll_back(self, commit: str) -> bool:
        """Switch to a previous revision (the same switch as for a push); False if there is
        none such on disk. The deployment stays pinned to it until a new push."""
        async with self._lock:
            revision = next((r for r in self.revisions if r.commit == commit), None)
            if revision is None or revision.state != "previous" or not revision.on_disk:
                return False
            log.info("Rolling back to %s", commit[:10])
            if await self._switch_to(revision):
                self.pinned_over = self.remote_head or commit
            return True

    async def stop(self) -> None:
        """End every app of the deployment, and the following."""
        self._stopping = True
        self._cut_drain.set()
        for task in (self._follower, self._drain):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for supervisor in (*self._others, self.live):
            await supervisor.stop()

    def view(self, with_output: bool) -> dict[str, object]:
        """What the console and revisions.json show."""
        live = next((r for r in self.revisions if r.state == "live"), None)
        return {
            "live": live.view(with_output) if live else None,
            "revisions": [r.view(with_output) for r in self.revisions[:REVISIONS_LISTED]],
            "branch": self.source.branch,
            "remote_head": self.remote_head,
            "pinned": self.pinned_over is not None,
            "error": self.error,
            "checked_at": self.checked_at,
            "interval": self.publish.interval,
        }

    # -- the first revision ------------------------------------------------------------------

    async def first_revision(self, progress: ProgressLog) -> Revision:
        """The branch's tip, checked out for the first start (the loading page shows this)."""
        async with self._lock:
            head = await self._checked_head()
            progress.add(f"Checking out {self.source.branch} at {head[:12]}")
            commit = await self.source.check_out(head)
            await self.source.remove_others(commit)
            revision = Revision(await self.source.describe(commit), state="live")
            self._add(revision)
            progress.add(f"{commit[:12]}: {revision.info.subject}")
            return revision

    # -- following ---------------------------------------------------------------------------

    async def _follow(self) -> None:
        interval = self.publish.interval or None
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), interval)
            self._wanted.clear()
            retry, self._retry_failed = self._retry_failed, False
            if self.live.state is AppState.STARTING and not self.revisions:
                continue  # the first start is still fetching; it takes the tip itself
            try:
                async with self._lock:
                    await self._update(retry)
            except Exception:  # a bug of ours must not end the following
                log.exception("The update of the published app failed")

    async def _checked_head(self) -> str:
        self.checked_at = time.time()
        try:
            head = await self.source.remote_head()
        except RevisionGitError as e:
            self.error = f"Could not look at the branch: {e}"
            raise
        self.error = ""
        self.remote_head = head
        return head

    async def _update(self, retry_failed: bool) -> None:
        try:
            head = await self._checked_head()
        except RevisionGitError as e:
            log.warning("Keeping the live revision: %s", e)
            return
        if self.pinned_over is not None:
            if head == self.pinned_over:
                return  # pinned by a rollback, and nothing new was pushed
            self.pinned_over = None
        known = next((r for r in self.revisions if r.commit == head), None)
        if known is not None and known.state == "live":
            return
        if known is not None and known.state == "failed" and not retry_failed:
            return  # it failed once; "Update now" tries it again
        if not self.revisions:  # the first revision could not be fetched: its supervisor retries
            return
        try:
            commit = await self.source.check_out(head)
            info = await self.source.describe(commit)
        except RevisionGitError as e:
            self.error = f"Could not check out {head[:10]}: {e}"
            log.warning("Keeping the live revision: %s", self.error)
            return
        self.revisions = [r for r in self.revisions if r.commit != commit]
        revision = Revision(info)
        self._add(revision)
        await self._switch_to(revision)

    # -- switching ---------------------------------------------------------------------------

    async def _switch_to(self, revision: Revision) -> bool:
        """Start the revision's app beside the live one; make it live once ready. True if so."""
        await self._end_drain()  # two apps at most: the previous old one goes first
        old_supervisor, old = self.live, self._live_revision()
        candidate = RevisionSupervisor(self, revision, **self._supervisor_options)
        candidate.origin_host = old_supervisor.origin_host
        revision.state, revision.reason, revision.output = "starting", "", []
        began = time.monotonic()
        self._others.add(candidate)
        candidate.start()
        candidate.request_arrived()  # a command that waits for {origin_host} has it now
        # The candidate's own deadlines end this wait (its install's, then --ready-timeout);
        # this bound is only a backstop, long enough for an install of its packages.
        ready = await candidate.wait_ready(INSTALL_TIMEOUT + self.settings.ready_timeout + 60)
        outcome = "stopped" if self._stopping else "ok" if ready else "failed"
        metrics.step_done("switch", outcome, time.monotonic() - began)
        if not ready or self._stopping:
            status = candidate.status()
            failure = status.failure
            revision.state = "failed"
            revision.since = time.time()
            revision.reason = failure.sentence if failure else "The app did not become ready"
            revision.output = list(failure.output if failure and failure.output else status.lines)
            await candidate.stop()
            self._others.discard(candidate)
            revision.on_disk = False
            await self.source.remove(revision.commit)
            log.error(
                "Revision %s did not go live (%s); %s keeps serving",
                revision.commit[:10],
                revision.reason,
                old.commit[:10] if old else "the live revision",
            )
            return False
        self.live = candidate
        self._others.discard(candidate)
        self._others.add(old_supervisor)
        if self.services is not None:
            self.services.supervisor = candidate
        revision.state, revision.since = "live", time.time()
        if old is not None:
            old.state = "previous"
        log.info(
            "Switched the published app from %s to %s (ready in %.1f s)",
            old.commit[:10] if old else "nothing",
            revision.commit[:10],
            time.monotonic() - began,
        )
        self._cut_drain.clear()  # here, not in the task: an update may cut it before it runs
        self._drain = asyncio.create_task(self._drain_old(old_supervisor))
        await self._forget_old_folders()
        return True

    def _live_revision(self) -> Revision | None:
        return next((r for r in self.revisions if r.state == "live"), None)

    def _add(self, revision: Revision) -> None:
        self.revisions.insert(0, revision)
        self.revisions = revisions_remembered(self.revisions)

    async def _drain_old(self, old: AppSupervisor) -> None:
        """Let the old app's connections end (bounded by --drain-timeout), then end the app."""
        deadline = time.monotonic() + self.publish.drain_timeout
        while old.connections and time.monotonic() < deadline and not self._cut_drain.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._cut_drain.wait(), DRAIN_POLL)
        if old.connections:
            log.info(
                "Closing %d connection(s) to the previous revision (1012 to websockets)",
                len(old.connections),
            )
        closing = [getattr(c, "end_for_restart", lambda: None)() for c in list(old.connections)]
        closing = [c for c in closing if c is not None]
        if closing:  # the 1012s go out before the app ends
            await asyncio.wait(closing, timeout=2)
        await old.stop()
        self._others.discard(old)

    async def _end_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._cut_drain.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        self._drain = None

    async def _forget_old_folders(self) -> None:
        for revision in folders_to_remove(self.revisions):
            revision.on_disk = False
            await self.source.remove(revision.commit)
