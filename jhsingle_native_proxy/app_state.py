"""What the app is doing, in values: its state, why it is not running, one snapshot for the
handlers. The supervisor (supervisor.py) makes them; pages, the console and the proxy read them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .process import describe_exit
from .settings import Settings


class AppState(enum.Enum):
    WAITING = "waiting"  # not started: the command needs {origin_host} from the owner's visit
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"
    # Ended for being idle (--idle-stop, idle_watch.py); the next request wakes it.
    SLEEPING = "sleeping"


class EndReason(enum.Enum):
    """Why an instance that did not fail was ended, in words (a run history's "ended" column)."""

    IDLE = "stopped: idle"  # --idle-stop: nobody used it for that long


class FailureKind(enum.Enum):
    NOT_PREPARED = "could not be prepared"  # the checkout failed
    NOT_STARTED = "could not be started"  # a bad command or config, or nothing to execute
    NOT_READY = "did not become ready"  # no answer within --ready-timeout: killed
    EXITED = "exited"  # it ran and ended: restarted by itself


@dataclass
class Failure:
    """Why the app is not running, for the pages and the logs."""

    kind: FailureKind
    detail: str
    output: list[str] = field(default_factory=list)
    # When the automatic restart is due (monotonic clock); None until one is scheduled.
    retry_at: float | None = None
    # The exit status of an instance that ran (negative: the signal that ended it), else None.
    code: int | None = None

    @classmethod
    def exit(cls, code: int) -> Failure:
        return cls(FailureKind.EXITED, describe_exit(code), code=code)

    @classmethod
    def not_ready(cls, settings: Settings) -> Failure:
        s = settings
        what = (
            "accept connections" if s.raw_socket_proxy else f"answer HTTP at {s.ready_check_path}"
        )
        return cls(FailureKind.NOT_READY, f"did not {what} within {s.ready_timeout:g} seconds")

    @property
    def exited(self) -> bool:
        """An app that ran and exited restarts by itself; other failures wait for a request."""
        return self.kind is FailureKind.EXITED

    @property
    def reason(self) -> str:
        """What happened, as the end of "The app ...": `exited with status 1`."""
        if self.kind in (FailureKind.EXITED, FailureKind.NOT_READY):
            return self.detail
        return f"{self.kind.value}: {self.detail}"

    @property
    def public_reason(self) -> str:
        """`reason` for viewers who may not see the app's output: a failed checkout's or
        start's detail (server paths, git's text, the repository's URL) is left out."""
        if self.kind in (FailureKind.EXITED, FailureKind.NOT_READY):
            return self.detail
        return f"{self.kind.value}; its owner can see why"

    @property
    def sentence(self) -> str:
        return f"The app {self.reason}"


@dataclass(frozen=True)
class AppStatus:
    """What the handlers may know of the app at one moment (the supervisor's own state is not
    theirs to read piecemeal)."""

    state: AppState
    phase: str
    # The latest progress and output lines: the owner's to see, and admins' (viewer_sees_output).
    lines: list[str]
    failure: Failure | None
    # Seconds until an automatic restart, when one is scheduled.
    retry_in: float | None
    # When the running instance became ready (wall clock, seconds since the epoch), if it is.
    ready_since: float | None = None
    # How many times the app was started again after its first start (by itself or when asked).
    restarts: int = 0
    pid: int | None = None
    # Since when it sleeps (wall clock), while it does.
    sleeping_since: float | None = None
    # The names the --env-file files set at the latest start (for the console; never values).
    env_file_names: tuple[str, ...] = ()
