"""Who is viewing, told to the app: oauth2-proxy's headers and a token signed by the proxy.

`--forward-user-headers` gives the app the headers most auth proxies send (`X-Forwarded-User`,
`-Preferred-Username`, `-Email`, `-Groups`), so code and docs written for oauth2-proxy apply.
They are only as good as the path they travel: any local user who can reach the app's port
can send them too. `--forward-user-jwt` adds a token that nobody else can make: an EdDSA
(Ed25519) signature with a key pair made at each start of the proxy and kept in its memory. The
app verifies it with the public key, which it gets in its environment (`JHSNP_JWT_PUBLIC_KEY`,
PEM, and the audience in `JHSNP_JWT_AUDIENCE`) and at `{prefix}_jhsnp/jwks.json`.

The token lives 60 s and names this server's prefix as its audience, so a token seen by one
app is refused by another's (a viewer's token for Bob's app does not open Alice's). Signing
costs ~40 µs; a viewer's headers are kept 30 s and reused, so the hot path is a dict lookup.

Only hub *users* are forwarded; a hub service calling with its own token is not described (its
name could be a user's). With `--authtype none` there is no viewer and nothing is sent. A
client's own copies of these headers are dropped earlier, option on or off
(`http_hygiene.IDENTITY_HEADERS`).

Imported only when one of the options is on: it pulls in PyJWT and cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import http_hygiene as h
from .identity_options import AUDIENCE_VARIABLE, PUBLIC_KEY_VARIABLE, IdentitySettings

log = logging.getLogger("jhsingle_native_proxy")

ALGORITHM = "EdDSA"
LIFETIME = 60.0  # seconds a token is valid
REUSE = 30.0  # seconds a viewer's headers (and token) are reused: at least 30 s of life left
ISSUER = "jhsingle-native-proxy"
# Viewers whose headers are kept at once; past it, the stale ones go (all, if none is stale).
CACHE_LIMIT = 1024

# Nothing a header value cannot carry as it is: control characters (line breaks, NUL, tab).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")

ViewerKey = tuple[str, bool, tuple[str, ...], str]


def plain_value(value: object) -> str | None:
    """A name as a header may carry it, or None: a string with no control character and no
    space around it (which a reader that strips would take for another name)."""
    if not isinstance(value, str) or not value or _UNSAFE.search(value):
        return None
    return value if value == value.strip() else None


def groups_value(groups: Iterable[str]) -> str:
    """X-Forwarded-Groups: the names joined by `,`. A name that holds a comma (it would read as
    two groups, `staff,admins` as `admins`) or that `plain_value` refuses is left out; the
    token carries every group exactly."""
    kept = [g for g in groups if plain_value(g) is not None and "," not in g]
    return ",".join(kept)


def viewer_key(viewer: Mapping) -> ViewerKey | None:
    """What the headers depend on (name, admin, groups, email), or None for no hub user."""
    if viewer.get("kind", "user") != "user":
        return None
    name = viewer.get("name")
    if not isinstance(name, str) or not name:
        return None
    groups = tuple(str(g) for g in viewer.get("groups") or ())
    email = viewer.get("email")
    return (name, bool(viewer.get("admin", False)), groups, email if isinstance(email, str) else "")


def claims(key: ViewerKey, audience: str, now: float) -> dict[str, object]:
    """The token's claims for one viewer (OIDC's names where there is one)."""
    name, admin, groups, email = key
    body: dict[str, object] = {
        "iss": ISSUER,
        "aud": audience,
        "sub": name,
        "name": name,
        "preferred_username": name,
        "groups": list(groups),
        "admin": admin,
        "iat": int(now),
        "exp": int(now + LIFETIME),
    }
    if email:
        body["email"] = email
    return body


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class ViewerIdentity:
    """The headers that describe a viewer to the app, and the key pair that signs its token."""

    def __init__(self, settings: IdentitySettings, audience: str):
        self.settings = settings
        self.audience = audience
        self._cache: dict[ViewerKey, tuple[float, list[tuple[str, str]]]] = {}
        self._private_key = Ed25519PrivateKey.generate() if settings.jwt else None
        self.public_pem = ""
        self.jwk: dict[str, str] = {}
        if self._private_key is not None:
            public = self._private_key.public_key()
            self.public_pem = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode("ascii")
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            x = _b64url(raw)
            # RFC 7638's thumbprint: the required members, sorted, no spaces.
            thumbprint = json.dumps(
                {"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True
            )
            kid = _b64url(hashlib.sha256(thumbprint.encode()).digest())
            self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}
            self.jwk.update(alg=ALGORITHM, use="sig")

    def app_environment(self) -> dict[str, str]:
        """What the app needs to verify tokens: the public key (no secret) and the audience."""
        if not self.public_pem:
            return {}
        return {PUBLIC_KEY_VARIABLE: self.public_pem, AUDIENCE_VARIABLE: self.audience}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set served at `{prefix}_jhsnp/jwks.json`."""
        return {"keys": [self.jwk] if self.jwk else []}

    def sign(self, key: ViewerKey, now: float) -> str:
        """A fresh token for the viewer."""
        headers = {"kid": self.jwk["kid"]}
        payload = claims(key, self.audience, now)
        return jwt.encode(payload, self._private_key, algorithm=ALGORITHM, headers=headers)

    def viewer_headers(self, viewer: Mapping, now: float | None = None) -> list[tuple[str, str]]:
        """The headers for this viewer (none for no hub user), reused for REUSE seconds."""
        key = viewer_key(viewer)
        if key is None:
            return []
        now = time.time() if now is None else now
        cached = self._cache.get(key)
        if cached is not None and cached[0] <= now < cached[0] + REUSE:
            return cached[1]
        headers = self._headers(key, now)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache = {k: v for k, v in self._cache.items() if v[0] + REUSE > now}
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
        self._cache[key] = (now, headers)
        return headers

    def _headers(self, key: ViewerKey, now: float) -> list[tuple[str, str]]:
        name, _admin, groups, email = key
        out: list[tuple[str, str]] = []
        if self.settings.headers and plain_value(name) is not None:
            out += [(h.FORWARDED_USER, name), (h.FORWARDED_PREFERRED_USERNAME, name)]
            if plain_value(email) is not None:
                out.append((h.FORWARDED_EMAIL, email))
            out.append((h.FORWARDED_GROUPS, groups_value(groups)))
        if self._private_key is not None:
            out.append((h.FORWARDED_JWT, self.sign(key, now)))
        return out

    def with_viewer(
        self, headers: list[tuple[str, str]], viewer: Mapping, *, replace: bool = False
    ) -> list[tuple[str, str]]:
        """`headers` with the viewer's added. With `replace` (the owner set request headers of
        their own), a header of the same name gives way to ours; the client's copies are gone
        already (`http_hygiene.IDENTITY_HEADERS`), so without it nothing is looked through."""
        ours = self.viewer_headers(viewer)
        if not ours:
            return headers
        if replace:
            names = {h.canonical_name(n) for n, _ in ours}
            headers = [(n, v) for n, v in headers if h.canonical_name(n) not in names]
        return headers + ours


def make_viewer_identity(settings) -> ViewerIdentity:
    """The server's `ViewerIdentity`. With --authtype none there is no viewer: one log line
    says nothing is sent."""
    if settings.authtype == "none":
        log.warning(
            "--forward-user-headers/--forward-user-jwt with --authtype none: there is no "
            "viewer, so nothing is sent to the app"
        )
    return ViewerIdentity(settings.identity, settings.prefix)
