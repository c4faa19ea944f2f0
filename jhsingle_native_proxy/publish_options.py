"""Publish mode's options (`--follow`, `--follow-interval`, `--drain-timeout`) and their settings.

Kept apart from cli.py and settings.py: a click decorator adds the options, `publish_settings`
takes their values out of the parsed options into one frozen `PublishSettings`, which
`Settings.publish` carries, and `check_publish` refuses combinations that cannot work, once
the whole `Settings` is known (the repository may come from JHSNP_REPO).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import TypeVar

import click

from .option_types import Seconds

F = TypeVar("F", bound=Callable)

DEFAULT_INTERVAL = 60.0
DEFAULT_DRAIN = 300.0
# The option names, as click passes their values.
OPTION_KEYS = ("follow", "follow_interval", "drain_timeout")


@dataclass(frozen=True)
class PublishSettings:
    """Publish mode: the app runs what is on the branch, switched without downtime."""

    follow: bool = False
    # Seconds between two `git ls-remote` of the branch; 0: only when asked (webhook, console).
    interval: float = DEFAULT_INTERVAL
    # Seconds an old revision's open websockets may stay after a switch.
    drain_timeout: float = DEFAULT_DRAIN


def publish_options(f: F) -> F:
    """The click options of publish mode."""
    options = [
        click.option(
            "--follow/--no-follow",
            default=False,
            help="Publish mode: run what is on the branch of --repo (--repobranch), each commit "
            "checked out clean on its own; a push goes live with no downtime once its app is "
            "ready, and a broken push never does.",
        ),
        click.option(
            "--follow-interval",
            type=Seconds(min=0),
            default=DEFAULT_INTERVAL,
            show_default=True,
            metavar="SECONDS",
            help="With --follow: how often the branch is checked for a push (git ls-remote); "
            "0: only when the webhook or the console asks.",
        ),
        click.option(
            "--drain-timeout",
            type=Seconds(min=0),
            default=DEFAULT_DRAIN,
            show_default=True,
            metavar="SECONDS",
            help="With --follow: how long the old revision's open websockets may stay after a "
            "switch before they are closed with 1012 (Service Restart).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def publish_settings(options: MutableMapping[str, object]) -> PublishSettings:
    """Take publish mode's values out of click's options (the rest become `Settings` fields)."""
    follow = bool(options.pop("follow", False))
    interval = options.pop("follow_interval", None)
    drain = options.pop("drain_timeout", None)
    return PublishSettings(
        follow=follow,
        interval=DEFAULT_INTERVAL if interval is None else float(interval),  # type: ignore[arg-type]
        drain_timeout=DEFAULT_DRAIN if drain is None else float(drain),  # type: ignore[arg-type]
    )


def publish_problem(settings) -> str | None:
    """Why these settings cannot run in publish mode (a usage error), or None."""
    if not settings.publish.follow:
        return None
    if not settings.repo:
        return (
            "--follow publishes a git branch: give the repository with --repo URL "
            "(or JHSNP_REPO), and its branch with --repobranch"
        )
    if settings.destport:
        return (
            "--follow runs two revisions side by side during a switch, each on a free port: "
            "leave --destport out"
        )
    if settings.unix_socket:
        return "--follow runs two revisions side by side: it does not work with --unix-socket"
    if settings.raw_socket_proxy:
        return "--follow does not work with --raw-socket-proxy"
    return None
