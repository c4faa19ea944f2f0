"""jupyter-server-proxy's "server process" options: from a config file, from plugins, and merged
with the command line into one description of the app.

Users of jupyter-server-proxy describe a server as a dict (`command`, `environment`, `timeout`,
`absolute_url`, `port`, `unix_socket`, `mappath`, `request_headers_override`,
`update_last_activity`, `raw_socket_proxy`, ...; and ours: `app`, a preset of presets.py, with
`presentation_path`), in `c.ServerProxy.servers` of a Jupyter config
file or returned by a plugin's `jupyter_serverproxy_servers` entry point. Values may be callables
that ask, by their parameter names, for `port`, `base_url` and `unix_socket`. This module reads
those descriptions and checks them, key by key, so a mistake is one message naming the key, and
`merge_server` lays the command line over the chosen one.
"""

from __future__ import annotations

import inspect
import logging
import runpy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib import metadata

log = logging.getLogger("jhsingle_native_proxy")

ENTRY_POINT_GROUP = "jupyter_serverproxy_servers"
CALLABLE_ARGUMENTS = ("port", "base_url", "unix_socket")
# Keys with a meaning in jupyter-server-proxy's notebook UI (or its response rewriting), none here.
IGNORED_KEYS = ("launcher_entry", "new_browser_tab", "rewrite_response", "progressive")


class ConfigError(ValueError):
    """A server description is wrong; the message names the server and the key."""


@dataclass(frozen=True)
class ServerProcess:
    """One server's options, each None where the description does not set it."""

    name: str = ""
    source: str = ""
    command: list[str] | Callable | None = None
    environment: dict[str, str] | Callable | None = None
    timeout: float | None = None
    absolute_url: bool | None = None
    port: int | None = None
    unix_socket: bool | str | None = None
    mappath: dict[str, str] | Callable | None = None
    request_headers_override: dict[str, str] | Callable | None = None
    update_last_activity: bool | None = None
    raw_socket_proxy: bool | None = None
    # This package's own keys: an --app preset, and the file it runs (see presets.py).
    app: str | None = None
    presentation_path: str | None = None
    ignored: tuple[str, ...] = field(default=())


def call_with_arguments(function: Callable, available: Mapping[str, object], what: str) -> object:
    """Call `function` with just the arguments it names, from `available` (jupyter-server-proxy's
    small dependency injection: a callable asks for `port` by having a `port` parameter)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function()
    kwargs = {}
    for name, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in available:
            kwargs[name] = available[name]
        elif parameter.default is parameter.empty:
            raise ConfigError(
                f"{what} asks for an argument {name!r}; callables may ask for "
                + ", ".join(CALLABLE_ARGUMENTS)
            )
    try:
        return function(**kwargs)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{what} raised {type(e).__name__}: {e}") from None


def _string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    return list(value)


def _string_dict(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where} must be a dict of strings, not {value!r}")
    return dict(value)


def server_from_dict(name: str, spec: object, source: str) -> ServerProcess:
    """Check one server description and turn it into a ServerProcess."""
    where = f"server {name!r} ({source})"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a dict of options, not {type(spec).__name__}")
    known = set(ServerProcess.__dataclass_fields__) - {"name", "source", "ignored"}
    unknown = sorted(set(spec) - known - set(IGNORED_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {}
    for key in ("command", "environment", "mappath", "request_headers_override"):
        if key not in spec:
            continue
        value = spec[key]
        if callable(value):
            values[key] = value
        elif key == "command":
            values[key] = _string_list(value, f"{where}: 'command'")
        else:
            values[key] = _string_dict(value, f"{where}: {key!r}")
    for key in ("absolute_url", "update_last_activity", "raw_socket_proxy"):
        if key in spec:
            if not isinstance(spec[key], bool):
                raise ConfigError(f"{where}: {key!r} must be True or False, not {spec[key]!r}")
            values[key] = spec[key]
    for key in ("app", "presentation_path"):
        if key in spec:
            if not isinstance(spec[key], str) or not spec[key]:
                raise ConfigError(f"{where}: {key!r} must be a non-empty string")
            values[key] = spec[key]
    if "app" in values and "command" in values:
        raise ConfigError(f"{where}: give 'app' or 'command', not both")
    if "timeout" in spec:
        if (
            isinstance(spec["timeout"], bool)
            or not isinstance(spec["timeout"], (int, float))
            or spec["timeout"] <= 0
        ):
            raise ConfigError(f"{where}: 'timeout' must be a positive number of seconds")
        values["timeout"] = float(spec["timeout"])
    if "port" in spec:
        port = spec["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{where}: 'port' must be a port number, not {port!r}")
        values["port"] = port
    if "unix_socket" in spec:
        sock = spec["unix_socket"]
        if not isinstance(sock, (bool, str)):
            raise ConfigError(f"{where}: 'unix_socket' must be True, False or a path")
        values["unix_socket"] = sock
    ignored = tuple(k for k in IGNORED_KEYS if k in spec)
    return ServerProcess(name=name, source=source, ignored=ignored, **values)


def load_config_file(path: str) -> dict[str, ServerProcess]:
    """Servers of a Jupyter-style config file: `c.ServerProxy.servers = {"name": {...}}`."""
    from traitlets.config import Config

    config = Config()
    try:
        runpy.run_path(path, init_globals={"c": config, "get_config": lambda: config})
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except Exception as e:
        raise ConfigError(f"config file {path!r} failed: {type(e).__name__}: {e}") from None
    servers = config.ServerProxy.get("servers", {}) if "ServerProxy" in config else {}
    if not isinstance(servers, Mapping):
        raise ConfigError(f"{path}: c.ServerProxy.servers must be a dict of servers")
    return {name: server_from_dict(name, spec, path) for name, spec in servers.items()}


def merge_server(
    server: ServerProcess,
    options: Mapping[str, Any],
    command: list[str],
    explicit: Collection[str],
) -> tuple[dict[str, Any], list[str]]:
    """A server description under the command line's options (keyed as Settings' fields): the
    options named in `explicit`, given on the command line itself, win; the others take the
    server's value where it has one. The server's command is used when `command` is empty."""
    options = dict(options)

    def take(option: str, value: object) -> None:
        if value is not None and option not in explicit:
            options[option] = value

    take("ready_timeout", server.timeout)
    take("destport", server.port)
    take("absolute_url", server.absolute_url)
    take("raw_socket_proxy", server.raw_socket_proxy)
    take("update_last_activity", server.update_last_activity)
    if server.unix_socket is not None:
        take("unix_socket", "auto" if server.unix_socket is True else (server.unix_socket or ""))
    # Dicts or callables; the command line's own values are laid over them key by key.
    options["server_env"] = server.environment
    options["server_mappath"] = server.mappath
    options["server_request_header"] = server.request_headers_override
    options["server_ignored"] = server.ignored
    options["server_label"] = f"{server.name} ({server.source})"
    if not command and server.command is not None:
        if callable(server.command):
            options["command_factory"] = server.command
        else:
            command = list(server.command)
    return options, command


def plugin_entry_points() -> list[metadata.EntryPoint]:
    from importlib import metadata  # only when a plugin is asked for: 20 ms at every start

    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_plugin(entry_point: metadata.EntryPoint) -> ServerProcess:
    dist = entry_point.dist
    source = (
        f"plugin {dist.name} {dist.version}" if dist is not None else f"plugin {entry_point.value}"
    )
    try:
        setup = entry_point.load()
    except Exception as e:
        raise ConfigError(f"{source} cannot be loaded: {type(e).__name__}: {e}") from None
    spec = call_with_arguments(setup, {}, f"{source} ({entry_point.value})")
    return server_from_dict(entry_point.name, spec, source)


def find_server(name: str, config_servers: Mapping[str, ServerProcess]) -> ServerProcess:
    """The server called `name`: from the config file first, then from installed plugins."""
    if name in config_servers:
        return config_servers[name]
    for entry_point in plugin_entry_points():
        if entry_point.name == name:
            return load_plugin(entry_point)
    known = sorted(set(config_servers) | {ep.name for ep in plugin_entry_points()})
    raise ConfigError(
        f"no server named {name!r}" + (f" (known: {', '.join(known)})" if known else "")
    )


def describe_servers(config_servers: Mapping[str, ServerProcess]) -> list[str]:
    """Lines for --list-servers: each server, and where it comes from."""
    lines = [f"{name}\t{server.source}" for name, server in sorted(config_servers.items())]
    for entry_point in plugin_entry_points():
        if entry_point.name in config_servers:
            continue
        dist = entry_point.dist
        origin = f"plugin {dist.name} {dist.version}" if dist is not None else "plugin"
        lines.append(f"{entry_point.name}\t{origin} ({entry_point.value})")
    return lines


def map_path(mappath: dict[str, str] | Callable | None, path: str) -> str:
    """jupyter-server-proxy's mappath: a dict maps exact paths, a callable maps any path."""
    if mappath is None:
        return path
    if callable(mappath):
        mapped = call_with_arguments(mappath, {"path": path}, "mappath")
        return mapped if isinstance(mapped, str) else path
    return mappath.get(path, path)
