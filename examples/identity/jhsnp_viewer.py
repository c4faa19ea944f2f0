"""Who is viewing this app, as jhsingle-native-proxy vouches for it (`--forward-user-jwt`).

Copy this file next to your app: it needs only the standard library and PyJWT with its crypto
extra (`pip install 'PyJWT[crypto]'`), nothing of jhsingle-native-proxy.

    from jhsnp_viewer import viewer_from_headers
    viewer = viewer_from_headers(request_headers)   # None: nobody the proxy vouches for
    if viewer:
        print(viewer["name"], viewer["groups"], viewer["admin"])

The proxy signs a short-lived token (60 s) for each viewer with a key pair it makes at start,
and gives the app the public key (`JHSNP_JWT_PUBLIC_KEY`, PEM) and the audience (this server's
prefix, `JHSNP_JWT_AUDIENCE`) in its environment. A token is accepted only if its signature
holds under that key with the one algorithm the proxy uses (EdDSA: no `none`, no HMAC keyed
with the public key), it names this server as its audience, and it has not expired. The
plain `X-Forwarded-User` headers are not checked here: anyone who can reach the app's port can
send those; this token they cannot make.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jwt

HEADER = "X-Forwarded-Access-Jwt"
ALGORITHMS = ["EdDSA"]  # pinned: the token's own `alg` header never chooses
LEEWAY = 5  # seconds of clock difference tolerated (proxy and app share a machine)


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """The token header's value, whatever the case of its name (and `_` for `-`)."""
    wanted = HEADER.lower()
    for name, value in headers.items():
        if str(name).lower().replace("_", "-") == wanted:
            return str(value)
    return None


def viewer_from_headers(
    headers: Mapping[str, str],
    *,
    public_key: str | None = None,
    audience: str | None = None,
) -> dict | None:
    """The viewer's claims (`name`, `groups`, `admin`, `sub`, `email` when the hub has one), or
    None when the request carries no token that this server's proxy signed for this server.

    `public_key` and `audience` default to the environment the proxy gave the app.
    """
    token = token_from_headers(headers)
    key = public_key if public_key is not None else os.environ.get("JHSNP_JWT_PUBLIC_KEY")
    aud = audience if audience is not None else os.environ.get("JHSNP_JWT_AUDIENCE")
    if not token or not key or not aud:
        return None
    try:
        return jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=aud,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "aud", "sub"]},
        )
    except (jwt.InvalidTokenError, ValueError):
        return None
