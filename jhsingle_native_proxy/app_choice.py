"""The command line's choice of app: `--app`, a `--config`/`--server` description, the words
after `--`, laid into the options in that order (the command line wins every key it gives).

With `--repo`, the repository may describe its app itself (repository_app.py), so the choice is
also kept apart in `Settings.given_app`: after each checkout the repository's description is laid
under it again. The command line leaves the app to the repository when it gives no command and
no `--app`, and when its `--app auto` (or a preset without its file) can only look at files that
the checkout has not made yet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from .given_app import GivenApp
from .presets import apply_preset
from .serverproxy import ServerProcess, find_server, merge_server
from .settings import SettingsError

# The options a repository's jhsnp.toml may set too (repository_app.py): the command line's
# own values for these are kept in GivenApp.explicit, and win.
REPOSITORY_OPTIONS = frozenset(
    {
        "presentation_path",
        "ready_check_path",
        "ready_timeout",
        "absolute_url",
        "rewrite_urls",
        "mappath",
        "env",
    }
)
COMMAND_LINE = "command line"


def choose_server(
    server_name: str,
    config_servers: Mapping[str, ServerProcess],
    config_file: str,
    command: list[str],
) -> ServerProcess | None:
    """The server description to run: --server NAME, else the config file's only one when no
    command is given (several: the user must choose)."""
    if server_name:
        return find_server(server_name, config_servers)
    if config_servers and not command:
        if len(config_servers) > 1:
            raise SettingsError(
                f"{config_file} has several servers "
                f"({', '.join(sorted(config_servers))}): choose one with --server NAME"
            )
        return next(iter(config_servers.values()))
    return None


def choose_app(
    app: str,
    server: ServerProcess | None,
    options: dict[str, Any],
    command: list[str],
    explicit: Collection[str],
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """The options and command the command line asks for, with `given_app` (and the app's name
    and source) among the options. `options["env"]` is already a dict."""
    if server is not None and server.app and not app:
        app = server.app
        if server.presentation_path and "presentation_path" not in explicit:
            options["presentation_path"] = server.presentation_path
    given_env = options["env"]
    has_repo = bool(options.get("repo") or environ.get("JHSNP_REPO"))
    deferred = (
        has_repo
        and server is None
        and (
            (not app and not command)
            or app == "auto"
            or (bool(app) and not options.get("presentation_path"))
        )
    )
    options["given_app"] = GivenApp(
        app=app,
        words=tuple(command),
        explicit=frozenset(explicit) & REPOSITORY_OPTIONS,
        env=MappingProxyType(dict(given_env)),
        deferred=deferred,
    )
    options["app_source"] = COMMAND_LINE
    if deferred:
        # Chosen after the checkout (repository_app.resolve); nothing to run until then.
        options["app_source"] = ""
        return options, []
    if app:
        # The preset first, then the server's own settings over it; the command line wins both.
        options, command = apply_preset(app, options, command, explicit, environ)
    if server is not None:
        options, command = merge_server(server, options, command, explicit)
        if app and isinstance(server.environment, dict):
            # (A callable environment is laid under the preset's instead.)
            options["env"] = {**options["env"], **server.environment, **given_env}
    return options, command
