"""The options of watching the proxy (`--log-requests`, `--metrics-public`) and their settings.

Kept apart from cli.py and settings.py, as the package and publish options are. The click
decorator adds the options *and* takes their values out of the parsed options into one frozen
`MonitoringSettings` under the key `monitoring` (the `Settings` field), so cli.py only applies it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class MonitoringSettings:
    """The access log's level and who may read the metrics."""

    # Every access line at INFO; else a request answered below 400 is logged at DEBUG.
    log_requests: bool = False
    # `{prefix}_jhsnp/metrics` without any authentication (for a private network only).
    metrics_public: bool = False


def monitoring_options(f: F) -> F:
    """The click options of the access log and the metrics; their values reach the command
    as one `monitoring=MonitoringSettings(...)`."""

    @functools.wraps(f)
    def command(*args, **options):
        options["monitoring"] = MonitoringSettings(
            log_requests=bool(options.pop("log_requests", False)),
            metrics_public=bool(options.pop("metrics_public", False)),
        )
        return f(*args, **options)

    options = [
        click.option(
            "--log-requests",
            is_flag=True,
            default=False,
            help="Log every request at INFO. [default: only those answered with an error; "
            "the others at DEBUG, shown with --debug]",
        ),
        click.option(
            "--metrics-public",
            is_flag=True,
            default=False,
            help="Serve the Prometheus metrics at _jhsnp/metrics to anyone who reaches the "
            "proxy, without a login or token: only on a private network. [default: the "
            "owner and hub admins, by login or hub token]",
        ),
    ]
    wrapped: Callable = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]
