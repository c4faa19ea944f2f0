"""What JupyterHub tells a single-user server through the JUPYTERHUB_* variables of its spawner.

Read once, into a frozen `HubSettings`, by `settings.build_settings`; nothing else reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class HubEnvironmentError(ValueError):
    """A JUPYTERHUB_* variable holds something the hub never writes there."""


@dataclass(frozen=True)
class HubSettings:
    """What JupyterHub tells a single-user server through its JUPYTERHUB_* environment."""

    api_token: str = ""
    api_url: str = ""
    client_id: str = ""
    base_url: str = "/"
    host: str = ""
    oauth_callback_url: str = ""
    # This server's public URL (JupyterHub 5+, with public_url or subdomains), else "".
    public_url: str = ""
    # None: the hub did not say (JupyterHub < 2); an empty set would admit nobody by scope.
    access_scopes: frozenset[str] | None = None
    activity_url: str = ""
    server_name: str = ""
    user: str = ""
    groups: frozenset[str] = frozenset()
    anyone: bool = False
    ssl_keyfile: str = ""
    ssl_certfile: str = ""
    ssl_client_ca: str = ""
    cookie_host_prefix_enabled: bool = False
    cookie_options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def hub_prefix(self) -> str:
        return self.base_url.rstrip("/") + "/hub/"

    @property
    def own_origin(self) -> bool:
        """Whether this server has an origin of its own (JupyterHub's subdomains).

        The hub writes an absolute OAuth callback URL only then. `JUPYTERHUB_HOST` is no sign of
        it: JupyterHub 5+ sets it from `public_url` too, with every server on the hub's origin.
        """
        return "://" in self.oauth_callback_url

    @property
    def internal_ssl(self) -> bool:
        return bool(self.ssl_keyfile and self.ssl_certfile)

    def missing_for_oauth(self) -> list[str]:
        """The variables --authtype oauth cannot do without."""
        return [
            name
            for name, value in (
                ("JUPYTERHUB_API_TOKEN", self.api_token),
                ("JUPYTERHUB_CLIENT_ID", self.client_id),
                ("JUPYTERHUB_API_URL", self.api_url),
            )
            if not value
        ]


def truthy(value: str) -> bool:
    """A flag variable's value: `1`, `true`, `yes` or `on`, in any case."""
    return value.strip().lower() in ("1", "true", "yes", "on")


def hub_settings(environ: Mapping[str, str]) -> HubSettings:
    """Read the JUPYTERHUB_* variables the hub's spawner sets."""
    scopes_json = environ.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES")
    access_scopes = None
    if scopes_json:
        try:
            access_scopes = frozenset(json.loads(scopes_json))
        except (ValueError, TypeError) as e:
            message = f"JUPYTERHUB_OAUTH_ACCESS_SCOPES is not a JSON list: {e}"
            raise HubEnvironmentError(message) from e
    cookie_options: dict = {}
    if environ.get("JUPYTERHUB_COOKIE_OPTIONS"):
        try:
            cookie_options = dict(json.loads(environ["JUPYTERHUB_COOKIE_OPTIONS"]))
        except (ValueError, TypeError) as e:
            raise HubEnvironmentError(f"JUPYTERHUB_COOKIE_OPTIONS is not a JSON object: {e}") from e
    groups = environ.get("JUPYTERHUB_GROUP", "")
    return HubSettings(
        api_token=environ.get("JUPYTERHUB_API_TOKEN", ""),
        api_url=environ.get("JUPYTERHUB_API_URL", ""),
        client_id=environ.get("JUPYTERHUB_CLIENT_ID", ""),
        base_url=environ.get("JUPYTERHUB_BASE_URL", "/") or "/",
        host=environ.get("JUPYTERHUB_HOST", ""),
        oauth_callback_url=environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL", ""),
        public_url=environ.get("JUPYTERHUB_PUBLIC_URL", ""),
        access_scopes=access_scopes,
        activity_url=environ.get("JUPYTERHUB_ACTIVITY_URL", ""),
        server_name=environ.get("JUPYTERHUB_SERVER_NAME", ""),
        user=environ.get("JUPYTERHUB_USER", ""),
        groups=frozenset(g.strip() for g in groups.split(",") if g.strip()),
        anyone=truthy(environ.get("JUPYTERHUB_ANYONE", "")),
        ssl_keyfile=environ.get("JUPYTERHUB_SSL_KEYFILE", ""),
        ssl_certfile=environ.get("JUPYTERHUB_SSL_CERTFILE", ""),
        ssl_client_ca=environ.get("JUPYTERHUB_SSL_CLIENT_CA", ""),
        cookie_host_prefix_enabled=truthy(environ.get("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "")),
        cookie_options=MappingProxyType(cookie_options),
    )
