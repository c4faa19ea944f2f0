"""The `jhsingle-native-proxy` command line.

Two spellings of a command line must work, as with 0.8.3:

    jhsingle-native-proxy --port 8000 -- streamlit hello --server.port {port}
    jhsingle-native-proxy --port 8000 streamlit hello {--}server.port {port} --ip 0.0.0.0

Everything after the first `--` belongs to the app. Before it, our options may appear anywhere
among the app's words (click's interspersed arguments), and `{--}`/`{-}` spell the app's dashes.

JupyterHub spawners may add jupyterhub-singleuser's flags (`--notebook-dir=DIR`,
`--SingleUserNotebookApp.default_url=/x`, `--disable-user-config`, any `--Class.trait=value`).
They must never stop the server from starting: the ones that mean something here are honoured,
the others are logged once as ignored.
"""

from __future__ import annotations

import os
import sys

import click

from ._version import __version__
from .app_choice import choose_app, choose_server
from .general_options import general_options
from .http_hygiene import header_problem
from .identity_options import identity_options
from .monitoring_options import monitoring_options
from .package_options import package_options, package_settings
from .presets import describe_presets
from .publish_options import publish_options, publish_problem, publish_settings
from .secret_options import secret_options
from .serverproxy import ConfigError, describe_servers, load_config_file
from .settings import SettingsError, build_settings
from .singleuser_flags import DIRECTORY_TRAITS, split_singleuser_traits
from .sleep_options import sleep_options
from .webhook_secret import webhook_option

PROG = "jhsingle-native-proxy"


@click.command(
    name=PROG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="The app's command goes after `--`, or among the options with {--} and {-} "
    "standing for its dashes. Placeholders: {port} {base_url} {unix_socket} "
    "{presentation_path} {presentation_basename} {presentation_dirname} {presentation_stem} "
    "{origin_host} {repofolder}; {{ and }} for literal braces; <port> is {port}, and so on.",
)
@general_options
@publish_options
@sleep_options
@package_options
@monitoring_options
@secret_options
@identity_options
@webhook_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.version_option(__version__, "--version", prog_name=PROG)
def _command(command: tuple[str, ...], disable_user_config: bool, **options) -> dict:
    """Run a web app as a JupyterHub single-user server: start it, supervise it, and proxy
    HTTP and websockets to it under JUPYTERHUB_SERVICE_PREFIX."""
    options["command"] = list(command)
    if disable_user_config:
        options["ignored_flags"] = ("--disable-user-config",)
    ctx = click.get_current_context()
    options["explicit"] = {
        name
        for name in options
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    return options


def parse_args(argv: list[str], environ: dict[str, str]):
    """Turn a command line into Settings. Raises click.ClickException or SettingsError."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut + 1 :]
    else:
        head, tail = argv, []
    head, traits = split_singleuser_traits(head)
    options = _command.main(head, prog_name=PROG, standalone_mode=False)
    if isinstance(options, int):  # --help or --version was handled
        raise SystemExit(options)
    ignored = list(options.pop("ignored_flags", ()))
    for name, value in traits.items():
        if name.split(".", 1)[1] in DIRECTORY_TRAITS and not options.get("working_dir"):
            options["working_dir"] = value
        else:
            ignored.append(f"--{name}")
    options["ignored_flags"] = tuple(ignored)
    command = options.pop("command") + tail
    # These steer the command line itself and stop here. Every other option is the field of
    # Settings with the same name: build_settings takes it as it is, and refuses other names.
    config_file = options.pop("config_file")
    server_name = options.pop("server_name")
    list_servers = options.pop("list_servers")
    explicit = options.pop("explicit")  # the names given on the command line itself
    app = options.pop("app")
    if options.pop("list_apps"):
        from .repository_app import describe_sources

        for line in describe_presets() + describe_sources(options["presentation_path"], environ):
            click.echo(line)
        raise SystemExit(0)
    config_servers = load_config_file(config_file) if config_file else {}
    if list_servers:
        for line in describe_servers(config_servers):
            click.echo(line)
        raise SystemExit(0)
    for option in ("env", "mappath", "request_header"):
        options[option] = pairs(options[option], "--" + option.replace("_", "-"))
    server = choose_server(server_name, config_servers, config_file, command)
    options, command = choose_app(app, server, options, command, explicit, environ)
    for name, value in options["request_header"].items():
        if problem := header_problem(name, value):
            raise SettingsError(f"--request-header: {problem}")
    options["publish"] = publish_settings(options)
    options["packages"] = package_settings(options, environ)
    settings = build_settings(options, command, environ)
    if problem := publish_problem(settings):
        raise SettingsError(problem)
    return settings


def pairs(values, option: str) -> dict[str, str]:
    """KEY=VALUE options as a dict."""
    given = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SettingsError(f"{option} {value!r}: write it as NAME=VALUE")
        given[key] = rest
    return given


def fail(message: str, code: int = 1) -> None:
    """`Error: ...` on stderr, on one line, and a non-zero exit: click's shape for an error,
    and what an admin reading a spawner log needs.

    Line breaks in the message (a value quoted from the command line, or text a start-up error
    quotes from the app or from git) are shown as `\\r` and `\\n`, so the message stays one line.
    """
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")
    click.echo(f"Error: {one_line}", err=True)
    raise SystemExit(code)


def usage_error(message: str) -> None:
    """A command line we cannot run, in click's shape: usage, where help is, the error; exit 2."""
    with click.Context(_command, info_name=PROG) as ctx:
        usage = ctx.get_usage()
    click.echo(f"{usage}\nTry '{PROG} --help' for help.\n", err=True)
    fail(message, 2)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = parse_args(argv, dict(os.environ))
    except click.exceptions.NoSuchOption as e:
        usage_error(
            f"{e.format_message()} (the app's own options go after --, or write their "
            "dashes as {--} and {-})"
        )
    except click.ClickException as e:
        usage_error(e.format_message())
    except click.exceptions.Abort:
        raise SystemExit(130) from None
    except (SettingsError, ConfigError) as e:
        usage_error(str(e))
    except SystemExit:
        raise
    except Exception as e:  # a bug of ours: one line, not a traceback
        fail(f"internal error: {type(e).__name__}: {e}", 1)

    from .server import StartupError, run

    try:
        run(settings)
    except StartupError as e:
        fail(str(e), code=1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as e:  # a bug of ours: the log has the traceback, the admin one line
        import logging

        logging.getLogger("jhsingle_native_proxy").debug("Internal error", exc_info=True)
        fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", 1)
