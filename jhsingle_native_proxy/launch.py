"""What one start of the app is: its argv, its environment and the headers its requests carry.

Pure: settings, the port (or unix socket) and the host of the first request in, a `Launch`
out. The placeholders (`{port}`, `{base_url}`, ...) are filled here, and values that come from a
config file or plugin are called (if callable) and type-checked here, at each start, so a bad
one fails that start with a message naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .command import substitute, substitute_all
from .http_hygiene import header_problem
from .identity_options import JWT_VARIABLES
from .serverproxy import CALLABLE_ARGUMENTS, ConfigError, call_with_arguments
from .settings import Settings

# Turns the command's first word into a path in the app's environment (conda), or leaves it.
CommandResolver = Callable[[list[str], dict[str, str]], list[str]]


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    # Headers every request to the app carries (--request-header, request_headers_override).
    request_headers: list[tuple[str, str]]


def substitutions(
    settings: Settings, port: int, unix_socket: str, origin_host: str
) -> dict[str, object]:
    """The values of the command's placeholders for one start."""
    presentation = settings.presentation_abspath
    return {
        "port": port,
        "base_url": settings.base_url,
        "unix_socket": unix_socket,
        "presentation_path": presentation,
        "presentation_basename": os.path.basename(presentation),
        "presentation_dirname": os.path.dirname(presentation) if presentation else "",
        "presentation_stem": os.path.splitext(os.path.basename(presentation))[0],
        "origin_host": origin_host,
        "repofolder": settings.repofolder,
    }


def build_launch(
    settings: Settings,
    port: int,
    *,
    unix_socket: str = "",
    origin_host: str = "",
    environ: Mapping[str, str] | None = None,
    resolve_command: CommandResolver | None = None,
    env_files: Mapping[str, str] | None = None,
) -> Launch:
    """The command, environment and request headers for one start, placeholders filled in.

    `environ` is the app's prepared environment (checkout done, conda activated); `env_files`
    the variables of the --env-file files, set as written (no placeholders: a secret's braces
    are its own) over every other source but --env. The token's variables (JHSNP_JWT_*) are
    `environ`'s whatever the layers say. Raises ConfigError for a config value of
    the wrong type and TemplateError for a bad placeholder.
    """
    s = settings
    values = substitutions(s, port, unix_socket, origin_host)
    arguments = {k: values[k] for k in CALLABLE_ARGUMENTS}

    def resolved(value, what: str):
        if callable(value):
            value = call_with_arguments(value, arguments, what)
        return value

    command = (
        resolved(s.command_factory, "the server's command") if s.command_factory else s.command
    )
    if not isinstance(command, (list, tuple)) or not all(isinstance(a, str) for a in command):
        raise ConfigError(f"the server's command must give a list of strings, not {command!r}")
    argv = substitute_all(list(command), values)
    prepared = environ or {}
    env = dict(prepared)
    extra = {
        **_mapping(resolved(s.server_env, "the server's environment"), "environment"),
        **s.env,
    }
    env.update({k: substitute(str(v), values) for k, v in extra.items()})
    if env_files:  # under --env (given_app.env), over the preset's, repository's and config's
        env.update(env_files)
        env.update({k: substitute(str(v), values) for k, v in s.given_app.env.items()})
    # The token's key and audience are the proxy's (server.viewer_identity), or none: no layer
    # above (a repository's [env] above all) may make the app trust a key of its own choosing.
    for name in JWT_VARIABLES:
        if name in prepared:
            env[name] = prepared[name]
        else:
            env.pop(name, None)
    headers = {
        **_mapping(
            resolved(s.server_request_header, "the server's request_headers_override"),
            "request_headers_override",
        ),
        **s.request_header,
    }
    header_list = [(k, substitute(str(v), values)) for k, v in headers.items()]
    for name, value in header_list:
        if problem := header_problem(name, value):
            raise ConfigError(f"the server's request_headers_override: {problem}")
    if resolve_command is not None:
        argv = resolve_command(argv, env)
    if s.env_python:  # the repository's packages are in an environment of their own
        from .app_packages import command_in_env

        argv = command_in_env(argv, env, s.env_python)
    return Launch(argv, env, header_list)


def _mapping(value, key: str) -> Mapping:
    """A config value that must be a dict (or None): anything else is the config's error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"the server's {key} must be a dict, not {type(value).__name__}")
    return value
