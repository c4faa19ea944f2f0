"""All configuration in one frozen object, built once from the command line and the environment.

Nothing else in the package reads `os.environ`: the `Settings` object is handed to whatever needs
it, which keeps tests honest (a test builds Settings, not an environment) and keeps the rules for
defaults (for example "JUPYTERHUB_SERVICE_URL gives the listen address unless --ip/--port say
otherwise") in one place.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from urllib.parse import urlsplit

from . import command as command_templates
from .framing import DEFAULT_SOURCES, sources_problem
from .git_credentials import read_token_file, split_url, takes_credentials, with_token
from .given_app import GivenApp
from .http_hygiene import is_ip_address, is_loopback_name, split_host
from .hub_environment import HubEnvironmentError, HubSettings, hub_settings
from .identity_options import IdentitySettings
from .monitoring_options import MonitoringSettings
from .package_options import PackageSettings
from .publish_options import PublishSettings
from .repo_url import default_folder, redact
from .secret_options import SecretSettings
from .sleep_options import SleepSettings
from .webhook_secret import read_webhook_secret

DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 8888
# Seconds a call to the hub's API may take unless --aiohttp-request-timeout says otherwise.
HUB_CALL_TIMEOUT = 20.0


class SettingsError(ValueError):
    """The options and environment do not make a usable configuration."""


class UnknownSettingError(TypeError):
    """`build_settings` was given an option that is no field of `Settings`: a bug of ours (a
    misspelt or forgotten name between the command line and here), never the user's mistake.
    Refused, so that a misspelt name cannot quietly leave a setting at its default."""


@dataclass(frozen=True)
class Settings:
    """What the proxy was asked to do. Times are in seconds."""

    command: tuple[str, ...]
    ip: str = DEFAULT_IP
    port: int = DEFAULT_PORT
    destport: int = 0
    prefix: str = "/"
    presentation_path: str = ""
    debug: bool = False
    logs: bool = True
    authtype: str = "oauth"
    request_timeout: float = 300.0
    last_activity_interval: float = 300.0
    force_alive: bool = False
    ready_check_path: str = "/"
    ready_timeout: float = 10.0
    # --repo, else JHSNP_REPO, always without credentials: those are kept apart, and are given
    # to git through its environment only (git_credentials).
    repo: str = ""
    repobranch: str = ""
    repofolder: str = ""
    # The URL's user name (the token itself in https://TOKEN@host/...) and its password, or
    # JHSNP_REPO_TOKEN; not in repr. A token file is read again before each checkout instead,
    # so a rotated secret is picked up by "Try again".
    repo_username: str = field(default="", repr=False)
    repo_password: str = field(default="", repr=False)
    repo_token_file: str = ""
    # --repo itself held credentials, which anyone on the machine sees in the process list.
    repo_credentials_on_command_line: bool = False
    # --webhook-secret-file (absolute), else JHSNP_WEBHOOK_SECRET: the webhook's secret (not in
    # repr), read once at start; "" = no webhook (webhook_secret.py).
    webhook_secret_file: str = ""
    webhook_secret: str = field(default="", repr=False)
    # Commits to fetch when cloning; 0 = the whole history (NBGITPULLER_DEPTH, as nbgitpuller).
    checkout_depth: int = 1
    conda_env: str = ""
    allow_root: bool = False
    allow_origin: bool = False  # 0.8.3's flag; ignored
    # --allow-host: more Host names accepted with --authtype none ("*": any); on a non-loopback
    # address, listing names makes them the only ones (see host_allowed).
    allow_hosts: tuple[str, ...] = ()
    forward_user_info: bool = False
    query_user_info: bool = False
    # --forward-user-headers, --forward-user-jwt (identity_options.py, viewer_identity.py).
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    progressive: bool = False
    websocket_max_message_size: int | None = None
    websocket_ping_interval: float = 30.0
    # "" = TCP; "auto" = a socket in a private directory made at start; else the socket's path.
    unix_socket: str = ""
    raw_socket_proxy: bool = False
    aiohttp_no_ssl_connector: bool = False
    aiohttp_request_timeout: float | None = None  # None or 0: HUB_CALL_TIMEOUT
    working_dir: str = ""
    shutdown_grace: float = 5.0
    hub_probe_timeout: float = 25.0
    # --hide-hub-token: the app's environment has no JUPYTERHUB_API_TOKEN (nor JPY_API_TOKEN).
    hide_hub_token: bool = False
    # --frame-ancestors: the CSP sources that may frame the app's pages and ours (framing.py).
    frame_ancestors: str = DEFAULT_SOURCES
    # jupyter-server-proxy's server-process options. From the command line, dicts; from a
    # config file or plugin (server_*), dicts or callables. Command-line keys win.
    command_factory: Callable | None = None
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    mappath: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    request_header: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    server_env: Mapping[str, str] | Callable | None = None
    server_mappath: Mapping[str, str] | Callable | None = None
    server_request_header: Mapping[str, str] | Callable | None = None
    absolute_url: bool = False
    # --rewrite-urls: root-absolute URLs in the app's HTML and CSS put under the prefix.
    rewrite_urls: bool = False
    update_last_activity: bool = True
    activity_exclude: tuple[str, ...] = ()
    server_label: str = ""
    server_ignored: tuple[str, ...] = ()
    # What the command line said about the app (app_choice.py), kept to lay the repository's
    # own description under it after each checkout (repository_app.py); the preset that runs
    # ("" for a command) and the source that decided, for --list-apps and the console.
    given_app: GivenApp = field(default_factory=GivenApp)
    app_name: str = ""
    app_source: str = "command line"
    hub: HubSettings = field(default_factory=HubSettings)
    # Names of jupyterhub-singleuser flags we were given but have no use for (warned about once).
    ignored_flags: tuple[str, ...] = ()
    # The environment the proxy was started with; the app inherits it.
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # --follow and its options (publish_options.py).
    publish: PublishSettings = field(default_factory=PublishSettings)
    # --idle-stop, --idle-shutdown (sleep_options.py; idle_watch.py acts on them).
    sleep: SleepSettings = field(default_factory=SleepSettings)
    # --install-requirements/--no-install, --env-cache (package_options.py).
    packages: PackageSettings = field(default_factory=PackageSettings)
    # --log-requests, --metrics-public (monitoring_options.py).
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    # --env-file, and the variables the repository says its app needs (secret_options.py).
    secrets: SecretSettings = field(default_factory=SecretSettings)
    # The repository's own list of requirements (its manifest's), read before requirements.txt;
    # a framework pin (a Space's sdk_version: "streamlit==1.40.0") added to whatever is found.
    app_requirements: tuple[str, ...] = ()
    framework_pin: str = ""
    # The Python of the environment the repository's packages were installed into (set by the
    # preparation, app_packages.py): the command's Python words and Python scripts run with it.
    env_python: str = ""

    @property
    def base_url(self) -> str:
        """The prefix without its trailing slash: '' at the root, '/user/alice' under a hub."""
        return self.prefix.rstrip("/")

    def host_allowed(self, name: str) -> bool:
        """May a request naming `name` in its Host reach the app with --authtype none?

        DNS rebinding points another site's name at this machine, so the browser sends that
        name. Loopback names, the listen address and --allow-host names are always accepted, and
        so are IP addresses when we listen beyond loopback (a rebound request can only carry a
        name). On a loopback address nothing else is. On any other address (`0.0.0.0` in a
        container) every name is accepted until the admin lists the real ones with --allow-host:
        the proxy cannot know the names it is reached by.
        """
        allowed, listen, on_loopback = self._host_rules
        if "*" in allowed:
            return True
        name = name.lower()
        if is_loopback_name(name) or name == listen or name in allowed:
            return True
        if on_loopback:
            return False
        return not allowed or is_ip_address(name)

    @functools.cached_property
    def _host_rules(self) -> tuple[frozenset[str], str, bool]:
        """host_allowed's fixed part, worked out at its first request rather than at each."""
        listen = self.ip.lower().strip("[]")
        allowed = frozenset(n.lower().rstrip(".") for n in self.allow_hosts)
        return allowed, listen, is_loopback_name(listen)

    @property
    def placeholders(self) -> set[str]:
        return command_templates.placeholders(self.command)

    @functools.cached_property
    def trusted_origin_host(self) -> str:
        """`{origin_host}` from a source no viewer controls, or "" if there is none.

        The hub's public URL of this server (JUPYTERHUB_PUBLIC_URL, JupyterHub 5+), else the host
        of the OAuth callback URL or of JUPYTERHUB_HOST when they are absolute (subdomains), else
        the first --allow-host name. `host` or `host:port`, as a browser's Host header has it.
        """
        hub = self.hub
        for url in (hub.public_url, hub.oauth_callback_url, hub.host):
            host = _host_of_url(url)
            if host:
                return host
        for name in self.allow_hosts:
            parts = split_host(name)
            if name != "*" and parts is not None and parts[1] is None:
                return parts[0]
        return ""

    @property
    def starts_at_first_request(self) -> bool:
        """A command using {origin_host} waits for the owner's first request to tell the host,
        unless a trusted source (trusted_origin_host) already has."""
        return "origin_host" in self.placeholders and not self.trusted_origin_host

    @property
    def app_dir(self) -> str:
        """The app's working directory: the checkout, else --notebook-dir, else ours."""
        return self.repofolder or self.working_dir or os.getcwd()

    @property
    def presentation_abspath(self) -> str:
        """--presentation-path made absolute; a relative one is taken inside the checkout."""
        if not self.presentation_path:
            return ""
        return os.path.normpath(os.path.join(self.app_dir, self.presentation_path))


def _host_of_url(url: str) -> str:
    """`host[:port]` of an absolute http(s) URL as a browser's Host header has it, or "" (a
    path, another scheme, a bad host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    netloc = parts.netloc.rpartition("@")[2].lower()
    if split_host(netloc) is None:
        return ""
    # A browser leaves the scheme's own port out of Host; so do we.
    default = ":443" if parts.scheme == "https" else ":80"
    return netloc.removesuffix(default)


# Fields that build_settings works out itself, from the environment or from other options. Every
# other field is an option: the command line's option of the same name (click declares them all,
# with their defaults and help, in cli.py), or a server description's value (serverproxy).
DERIVED_FIELDS = frozenset(
    {
        "command",
        "prefix",
        "repo_username",
        "repo_password",
        "repo_credentials_on_command_line",
        "webhook_secret",
        "checkout_depth",
        "hub",
        "environ",
        "env_python",
        "app_requirements",
        "framework_pin",
    }
)
OPTION_NAMES = frozenset(f.name for f in fields(Settings)) - DERIVED_FIELDS


def _check_option_names(options: Mapping[str, object]) -> None:
    """Refuse a key that is no option: UnknownSettingError naming it (and what it may mean)."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if not unknown:
        return
    name = unknown[0]
    if name in DERIVED_FIELDS:
        why = "build_settings works it out itself (see DERIVED_FIELDS); it is no option"
    else:
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        why = "no field of Settings" + (f"; did you mean {close[0]!r}?" if close else "")
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise UnknownSettingError(f"build_settings: unknown option {name!r}{more}: {why}")


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip() or "/"
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix += "/"
    return prefix


def listen_address(ip: str | None, port: int | None, environ: Mapping[str, str]) -> tuple[str, int]:
    """Where to listen: explicit options first, then JUPYTERHUB_SERVICE_URL, then 127.0.0.1:8888.

    JupyterHub 2+ tells a single-user server where to listen only through JUPYTERHUB_SERVICE_URL
    (host and port), no longer with --ip/--port arguments.
    """
    url_host, url_port = None, None
    service_url = environ.get("JUPYTERHUB_SERVICE_URL", "")
    if service_url:
        try:
            parts = urlsplit(service_url)
            url_host, url_port = parts.hostname, parts.port
            if url_port is None:  # as jupyterhub-singleuser: the scheme's own port
                url_port = {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError as e:
            raise SettingsError(f"JUPYTERHUB_SERVICE_URL={service_url!r} is not a URL: {e}") from e
    return (
        ip if ip is not None else (url_host or DEFAULT_IP),
        port if port is not None else (url_port or DEFAULT_PORT),
    )


def _repo_credentials(options: Mapping[str, object], environ: Mapping[str, str]) -> dict:
    """The repository's clean URL and its credentials, from wherever they were given.

    The URL is --repo, else JHSNP_REPO (the environment keeps credentials out of the process
    list). The token (password) is the first of: --repo-token-file, JHSNP_REPO_TOKEN_FILE,
    JHSNP_REPO_TOKEN, the URL's password. With a token, the user name is the URL's, else
    JHSNP_REPO_USERNAME, else git_credentials.DEFAULT_USERNAME. A token file is read now, so a
    missing one stops the start with a clear message, and again before each checkout.
    """
    given = str(options.get("repo") or "")
    token_file_option = str(options.get("repo_token_file") or "").strip()
    try:
        url, credentials = split_url(given or environ.get("JHSNP_REPO", ""))
    except ValueError as e:  # a line break in the URL's credentials; the message shows none
        raise SettingsError(str(e)) from None
    found: dict[str, object] = {
        "repo": url,
        "repo_username": "",
        "repo_password": "",
        "repo_token_file": "",
        "repo_credentials_on_command_line": bool(given) and credentials is not None,
    }
    if not url:
        if token_file_option:
            raise SettingsError("--repo-token-file needs a repository (--repo or JHSNP_REPO)")
        return found
    token = environ.get("JHSNP_REPO_TOKEN", "").strip()
    token_file = token_file_option or environ.get("JHSNP_REPO_TOKEN_FILE", "").strip()
    if token and token_file:
        raise SettingsError(
            "JHSNP_REPO_TOKEN and a token file (--repo-token-file or JHSNP_REPO_TOKEN_FILE) "
            "are both set: give the repository's token once"
        )
    if (token or token_file) and not takes_credentials(url):
        raise SettingsError(  # redacted: an ssh URL may still hold a password
            f"a repository token works with http:// and https:// URLs only, not {redact(url)}"
        )
    if token_file:
        token_file = os.path.abspath(os.path.expanduser(token_file))
        try:
            token = read_token_file(token_file)
        except ValueError as e:
            raise SettingsError(str(e)) from None
        found["repo_token_file"] = token_file
    try:
        if token:
            username = environ.get("JHSNP_REPO_USERNAME", "").strip()
            credentials = with_token(credentials, token, username)
    except ValueError as e:  # a line break in the user name; the message shows no value
        raise SettingsError(str(e)) from None
    if credentials is not None:
        found["repo_username"] = credentials.username
        # A token file's content is not kept: the checkout reads the file itself.
        found["repo_password"] = "" if token_file else credentials.password
    return found


def build_settings(
    options: Mapping[str, object], command: list[str], environ: Mapping[str, str]
) -> Settings:
    """Validate the parsed options and the environment into one Settings object.

    `options` are keyed by field name (see OPTION_NAMES); an option that is None keeps the
    field's default. A key that is no option is UnknownSettingError.
    """
    _check_option_names(options)
    given_app = options.get("given_app")
    deferred = isinstance(given_app, GivenApp) and given_app.deferred
    if not command and not options.get("command_factory") and not deferred:
        raise SettingsError(
            "no command given: put the app's command after the options, e.g. "
            "jhsingle-native-proxy -- python3 -m http.server {port}"
        )
    try:
        command_templates.placeholders(command)
        for key in ("env", "request_header", "server_env", "server_request_header"):
            values = options.get(key)
            if isinstance(values, Mapping):
                command_templates.placeholders(values.values())
    except command_templates.TemplateError as e:
        raise SettingsError(str(e)) from e
    excluded = []
    for path in options.get("activity_exclude") or ():
        excluded.append(path if path.startswith("/") else "/" + path)
    options = {**options, "activity_exclude": tuple(excluded)}

    ip, port = listen_address(options.get("ip"), options.get("port"), environ)
    presentation_path = os.path.expanduser(str(options.get("presentation_path") or ""))
    # JupyterHub 2+ passes the spawner's notebook_dir in JUPYTERHUB_ROOT_DIR, not as a flag.
    working_dir = str(options.get("working_dir") or environ.get("JUPYTERHUB_ROOT_DIR") or "")
    if working_dir:
        working_dir = os.path.abspath(os.path.expanduser(working_dir))
        if not os.path.isdir(working_dir):
            given_as = "--notebook-dir" if options.get("working_dir") else "JUPYTERHUB_ROOT_DIR"
            raise SettingsError(f"{given_as} {working_dir!r} is not a directory")

    repo_credentials = _repo_credentials(options, environ)
    try:
        repo_credentials.update(read_webhook_secret(options.get("webhook_secret_file"), environ))
    except ValueError as e:  # the message holds no secret
        raise SettingsError(str(e)) from None
    repo = str(repo_credentials["repo"])
    repofolder = str(options.get("repofolder") or "")
    if repo and not repofolder:
        repofolder = default_folder(repo, working_dir or os.getcwd())
    if repofolder:
        repofolder = os.path.abspath(
            os.path.join(working_dir or os.getcwd(), os.path.expanduser(repofolder))
        )
    depth_text = environ.get("NBGITPULLER_DEPTH", "1").strip() or "1"
    try:
        checkout_depth = int(depth_text)
    except ValueError:
        raise SettingsError(f"NBGITPULLER_DEPTH={depth_text!r} is not a whole number") from None

    frame_ancestors = options.get("frame_ancestors")
    if frame_ancestors is not None:
        if problem := sources_problem(str(frame_ancestors)):
            raise SettingsError(f"--frame-ancestors {frame_ancestors!r}: {problem}")
        options = {**options, "frame_ancestors": " ".join(str(frame_ancestors).split())}

    ready_check_path = str(options.get("ready_check_path") or "/")
    if not ready_check_path.startswith("/"):
        ready_check_path = "/" + ready_check_path

    try:
        hub = hub_settings(environ)
    except HubEnvironmentError as e:
        raise SettingsError(str(e)) from e
    if options.get("authtype", "oauth") == "oauth" and hub.missing_for_oauth():
        raise SettingsError(
            "--authtype oauth needs the hub's settings, and these are not set: "
            + ", ".join(hub.missing_for_oauth())
            + " (start it from JupyterHub, or use --authtype none)"
        )

    values = {name: value for name, value in options.items() if value is not None}
    values.update(repo_credentials)
    values.update(
        command=tuple(command),
        ip=ip,
        port=port,
        prefix=_normalise_prefix(environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")),
        presentation_path=presentation_path,
        working_dir=working_dir,
        repofolder=repofolder,
        checkout_depth=max(checkout_depth, 0),
        ready_check_path=ready_check_path,
        environ=MappingProxyType(dict(environ)),
        hub=hub,
    )
    return Settings(**values)
