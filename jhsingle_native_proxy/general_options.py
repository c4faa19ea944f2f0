"""The general options of `jhsingle-native-proxy`: where to listen, how to start and reach the app,
the hub, the repository, the logs. The options of one feature (publish mode, sleeping, packages,
monitoring, secrets, identity, the webhook) live in that feature's `*_options.py`; cli.py puts
them all on one command."""

from __future__ import annotations

import click

from .option_types import Seconds


def general_options(f):
    """The options of the proxy itself (listening, the app's command and start, the hub, the
    checkout): one decorator, so the command line's module stays the parsing."""
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
