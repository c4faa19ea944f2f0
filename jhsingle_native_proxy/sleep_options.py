"""The options of sleeping apps (`--idle-stop`, `--idle-shutdown`) and their frozen
`SleepSettings`, which `Settings.sleep` carries.

Kept apart from cli.py and settings.py, as publish mode's options are. Here the click decorator
also gathers the two values into one `SleepSettings` before the command's callback sees them,
so cli.py needs nothing but the decorator line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from .option_types import Seconds

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class SleepSettings:
    """When the app, or the whole server, is stopped for want of use (idle_watch.py)."""

    # Seconds without use after which the app's process group is ended until the next
    # request wakes it; 0: never.
    idle_stop: float = 0.0
    # Seconds without use after which the whole server exits 0; 0: never.
    idle_shutdown: float = 0.0

    @property
    def watched(self) -> bool:
        """Whether anything is to be watched at all."""
        return bool(self.idle_stop or self.idle_shutdown)


def sleep_options(f: F) -> F:
    """The click options of sleeping apps; the callback gets them as `sleep=SleepSettings`."""

    @functools.wraps(f)
    def with_sleep_settings(*args, **options):
        options["sleep"] = SleepSettings(
            idle_stop=float(options.pop("idle_stop") or 0),
            idle_shutdown=float(options.pop("idle_shutdown") or 0),
        )
        return f(*args, **options)

    options = [
        click.option(
            "--idle-stop",
            type=Seconds(min=0),
            default=0,
            show_default=True,
            metavar="SECONDS",
            help="Stop the app (its whole process group; the proxy stays) after this long "
            "without a proxied request and with no websocket open; the next visit wakes it, "
            "behind the loading page. Our own pages, the hub's probes and --activity-exclude "
            "paths are no use. 0: never.",
        ),
        click.option(
            "--idle-shutdown",
            type=Seconds(min=0),
            default=0,
            show_default=True,
            metavar="SECONDS",
            help="Exit (status 0, the app ended as on SIGTERM) after this long without use, "
            "for hubs without an idle culler. 0: never.",
        ),
    ]
    wrapped: Callable = with_sleep_settings
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]
