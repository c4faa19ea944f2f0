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
from .http_hygiene import header_problem
from .identity_options import identity_options
from .monitoring_options import monitoring_options
from .option_types import Seconds
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


def _options(f):
    opts = [
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=None,
            help="Port to listen on [default: from JUPYTERHUB_SERVICE_URL, else 8888].",
        ),
        click.option(
            "--ip",
            default=None,
            help="Address to listen on [default: from JUPYTERHUB_SERVICE_URL, else "
            "127.0.0.1]; 0.0.0.0 to listen on every interface.",
        ),
        click.option(
            "--destport",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="Port the app listens on, given to it as {port}; 0 picks a free port "
            "before each start.",
        ),
        click.option(
            "--presentation-path",
            "--presentation_path",
            "presentation_path",
            default="",
            help="A path made absolute and offered as {presentation_path}, "
            "{presentation_basename} and {presentation_dirname}.",
        ),
        click.option(
            "--app",
            "app",
            default="",
            metavar="TYPE",
            help="Run the --presentation-path file with a known framework's command and "
            "settings: streamlit, voila, panel, bokeh, dash, gradio, shiny, static, or auto "
            "(from the file). Words after -- are added to its command. See --list-apps.",
        ),
        click.option(
            "--list-apps",
            is_flag=True,
            default=False,
            help="List the --app types with the command each runs, and exit.",
        ),
        click.option("--debug/--no-debug", default=False, help="Log at DEBUG level."),
        click.option(
            "--logs/--no-logs",
            default=True,
            show_default=True,
            help="Log the app's stdout and stderr.",
        ),
        click.option(
            "--authtype",
            type=click.Choice(["oauth", "none"]),
            default="oauth",
            show_default=True,
            help="oauth: only users JupyterHub allows; none: anyone who can reach the port.",
        ),
        click.option(
            "--request-timeout",
            type=Seconds(min=0, min_open=True),
            default=300,
            show_default=True,
            help="Seconds to wait for the app to start answering a request (not a "
            "limit on how long a stream may last).",
        ),
        click.option(
            "--last-activity-interval",
            type=Seconds(min=0),
            default=300,
            show_default=True,
            help="Seconds between activity reports to the hub; 0 never reports.",
        ),
        click.option(
            "--force-alive/--no-force-alive",
            "--force-keep-alive/--no-force-keep-alive",
            "force_alive",
            default=False,
            show_default=True,
            help="Report activity even when there was no traffic (0.8.3's default), "
            "which keeps the idle culler from ever stopping this server.",
        ),
        click.option(
            "--ready-check-path",
            default="/",
            show_default=True,
            help="Path on the app polled until it answers HTTP, to know it is ready.",
        ),
        click.option(
            "--ready-timeout",
            "--timeout",
            "ready_timeout",
            type=Seconds(min=0, min_open=True),
            default=10,
            show_default=True,
            help="Seconds the app has to become ready after a start.",
        ),
        click.option(
            "--env",
            "env",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set a variable in the app's environment ({port}, {base_url}, {unix_socket} "
            "filled in); repeatable.",
        ),
        click.option(
            "--absolute-url/--no-absolute-url",
            default=False,
            help="The app sees the full path, prefix included (apps told their base URL), and "
            "its redirects and cookie paths are left alone.",
        ),
        click.option(
            "--rewrite-urls/--no-rewrite-urls",
            default=False,
            help="Put root-absolute URLs (/static/app.js) in the app's HTML and CSS, and those its "
            "scripts build, under the prefix: for apps that cannot be told their base URL.",
        ),
        click.option(
            "--mappath",
            multiple=True,
            metavar="FROM=TO",
            help="Send requests for the path FROM (after the prefix) to TO on the app; repeatable.",
        ),
        click.option(
            "--request-header",
            multiple=True,
            metavar="NAME=VALUE",
            help="Set this header on every request to the app (templates filled in); repeatable.",
        ),
        click.option(
            "--update-last-activity/--no-update-last-activity",
            default=True,
            show_default=True,
            help="Report traffic through the proxy to the hub as activity.",
        ),
        click.option(
            "--activity-exclude",
            multiple=True,
            metavar="PATH",
            help="Requests under PATH (after the prefix, e.g. /healthz) are not activity; "
            "repeatable.",
        ),
        click.option(
            "--config",
            "config_file",
            default="",
            metavar="FILE",
            help="A Jupyter-style config file with c.ServerProxy.servers (jupyter-server-proxy's "
            "format).",
        ),
        click.option(
            "--server",
            "server_name",
            default="",
            metavar="NAME",
            help="Run the server NAME from --config, or from an installed "
            "jupyter_serverproxy_servers plugin.",
        ),
        click.option(
            "--list-servers",
            is_flag=True,
            default=False,
            help="List the servers from --config and installed plugins, and exit.",
        ),
        click.option(
            "--repo",
            default="",
            help="Git repository to check out before starting [default: JHSNP_REPO]. Put no "
            "token in it (the process list shows it): see --repo-token-file.",
        ),
        click.option(
            "--repo-token-file",
            default="",
            metavar="FILE",
            help="A file holding the token (password) for an http(s) --repo, such as a mounted "
            "Kubernetes secret [default: JHSNP_REPO_TOKEN_FILE]; or the token itself in "
            "JHSNP_REPO_TOKEN. User name: the URL's, else JHSNP_REPO_USERNAME, else "
            "x-access-token.",
        ),
        click.option(
            "--repobranch",
            default="",
            help="Branch of --repo [default: the remote's default branch].",
        ),
        click.option("--repofolder", default="", help="Folder for the checkout of --repo."),
        click.option(
            "--conda-env", default="", help="Conda environment (name or path) to run the app in."
        ),
        click.option(
            "--allow-root/--no-allow-root",
            is_flag=True,
            default=False,
            help="Accepted for jupyterhub-singleuser compatibility; no effect.",
        ),
        click.option(
            "--NotebookApp.allow_origin/--no-NotebookApp.allow_origin",
            "allow_origin",
            is_flag=True,
            default=False,
            help="Obsolete (0.8.3's flag); accepted and ignored: origins are checked against "
            "the request's own host.",
        ),
        click.option(
            "--allow-host",
            "allow_hosts",
            multiple=True,
            metavar="NAME",
            help="With --authtype none on a loopback address, also answer requests that name "
            "NAME as their host (besides localhost and loopback addresses); '*' for any. "
            "Repeatable. The first NAME is also {origin_host} when the hub gives no public URL.",
        ),
        click.option(
            "--frame-ancestors",
            default="'self'",
            show_default=True,
            metavar="SOURCES",
            help="Sites that may show the app and our pages in a frame: CSP sources, such as "
            "'self' https://lms.example.org (quoted as one word). Apps that send their own "
            "frame-ancestors or X-Frame-Options keep them.",
        ),
        click.option(
            "--hide-hub-token",
            is_flag=True,
            default=False,
            help="Keep JUPYTERHUB_API_TOKEN (and JPY_API_TOKEN) out of the app's environment; "
            "without it the app may call the hub's API as its owner, as notebook kernels may.",
        ),
        click.option(
            "--forward-user-info/--no-forward-user-info",
            is_flag=True,
            default=False,
            help="Send the viewer's JupyterHub identity to the app in the "
            "X-CDSDASHBOARDS-JH-USER header (JSON).",
        ),
        click.option(
            "--query-user-info/--no-query-user-info",
            is_flag=True,
            default=False,
            help="Send the viewer's identity as the CDSDASHBOARDS_JH_USER query argument.",
        ),
        click.option(
            "--progressive/--no-progressive",
            is_flag=True,
            default=False,
            help="Obsolete: responses are always streamed as the app produces them.",
        ),
        click.option(
            "--websocket-max-message-size",
            type=click.IntRange(min=0),
            default=None,
            help="Largest websocket message in bytes, either direction; 0 = no limit.",
        ),
        click.option(
            "--websocket-ping-interval",
            type=Seconds(min=0),
            default=30,
            show_default=True,
            help="Seconds between pings on idle websockets, both to the browser and to the app, "
            "so load balancers do not drop them; 0 = no pings.",
        ),
        click.option(
            "--unix-socket",
            is_flag=False,
            flag_value="auto",
            default="",
            metavar="[PATH]",
            help="The app listens on a unix socket ({unix_socket}; {port} is 0) instead of a port. "
            "Without PATH (write --unix-socket=PATH to give one), a socket in a private directory "
            "that only this user can enter, removed on exit.",
        ),
        click.option(
            "--raw-socket-proxy",
            is_flag=True,
            default=False,
            help="The app speaks plain TCP (or a unix socket), not HTTP: websocket messages become "
            "stream bytes and back, like websockify; other HTTP requests get 405.",
        ),
        click.option(
            "--aiohttp-no-ssl-connector",
            is_flag=True,
            default=False,
            help="Do not verify TLS certificates when calling the hub.",
        ),
        click.option(
            "--aiohttp-request-timeout",
            type=Seconds(min=0),
            default=None,
            help="Seconds allowed for each call to the hub's API [default: 20]; 0 (no limit in "
            "0.8.3) also means the default, since every wait here has a bound.",
        ),
        click.option(
            "--notebook-dir",
            "working_dir",
            default="",
            help="jupyterhub-singleuser's flag: the app's working directory.",
        ),
        click.option("--disable-user-config", is_flag=True, default=False, hidden=True),
        click.option(
            "--hub-probe-timeout",
            type=Seconds(min=0),
            default=25,
            show_default=True,
            help="Seconds after a start during which JupyterHub's readiness probe hears 'not "
            "yet' (503) while the app starts; keep it below the hub's Spawner.http_timeout.",
        ),
        click.option(
            "--shutdown-grace",
            type=Seconds(min=0),
            default=5,
            show_default=True,
            help="Seconds the app has to exit after SIGTERM before it is killed.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command(
    name=PROG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="The app's command goes after `--`, or among the options with {--} and {-} "
    "standing for its dashes. Placeholders: {port} {base_url} {unix_socket} "
    "{presentation_path} {presentation_basename} {presentation_dirname} {presentation_stem} "
    "{origin_host} {repofolder}; {{ and }} for literal braces; <port> is {port}, and so on.",
)
@_options
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
