"""The options of telling the app who is viewing (`--forward-user-headers`,
`--forward-user-jwt`) and their frozen `IdentitySettings`, which `Settings.identity` carries.

Kept apart from cli.py and settings.py, as the package options are. Unlike those, the decorator
also gathers the two values into `IdentitySettings` itself (the option `identity`), so cli.py
only applies it. The signing and the headers are viewer_identity.py's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable)

# What the app is given to verify the token: the public key (PEM) and the audience.
PUBLIC_KEY_VARIABLE = "JHSNP_JWT_PUBLIC_KEY"
AUDIENCE_VARIABLE = "JHSNP_JWT_AUDIENCE"
JWT_VARIABLES = frozenset({PUBLIC_KEY_VARIABLE, AUDIENCE_VARIABLE})


@dataclass(frozen=True)
class IdentitySettings:
    """What the app is told about the viewer, beyond 0.8.3's `--forward-user-info`."""

    # X-Forwarded-User, -Preferred-Username, -Email, -Groups (oauth2-proxy's names).
    headers: bool = False
    # X-Forwarded-Access-Jwt: a token signed with a key pair made at start.
    jwt: bool = False

    @property
    def enabled(self) -> bool:
        return self.headers or self.jwt


def identity_options(f: F) -> F:
    """The click options of forwarding the viewer's identity, gathered into `identity`."""

    @functools.wraps(f)
    def gathered(*args, **options):
        options["identity"] = IdentitySettings(
            headers=bool(options.pop("forward_user_headers", False)),
            jwt=bool(options.pop("forward_user_jwt", False)),
        )
        return f(*args, **options)

    options = [
        click.option(
            "--forward-user-headers/--no-forward-user-headers",
            default=False,
            help="Tell the app who is viewing in oauth2-proxy's headers: X-Forwarded-User, "
            "X-Forwarded-Preferred-Username, X-Forwarded-Email (when the hub has one), "
            "X-Forwarded-Groups (comma-separated). A client's own copies are always dropped.",
        ),
        click.option(
            "--forward-user-jwt/--no-forward-user-jwt",
            default=False,
            help="Send the app a signed token of the viewer (EdDSA, 60 s, audience the prefix) "
            "in X-Forwarded-Access-Jwt; its public key is in the app's JHSNP_JWT_PUBLIC_KEY "
            "and at _jhsnp/jwks.json.",
        ),
    ]
    for option in reversed(options):
        gathered = option(gathered)
    return gathered  # type: ignore[return-value]
