"""The OAuth `state` of a login in progress, kept in the state itself instead of in memory.

JupyterHub's HubOAuth remembers each pending login in a dictionary for ten minutes: where to go
after the login, which cookie holds the state, and the PKCE code verifier. Every anonymous visit
that is sent to the login adds an entry. Unbounded, a stream of anonymous requests grows the
proxy; bounded, the same stream evicts a real user's login while they type their password. So
nothing is stored: the state string carries what the callback needs, and the callback trusts it
only because it must equal the signed state cookie we set in the same browser.

- `state = NONCE "." BASE64URL(JSON {"n": next_url, "c": cookie_name, "v": verifier_nonce})`.
- The PKCE code verifier is `VNONCE + HMAC(secret, VNONCE)`: the state may show its nonce (the
  state travels in URLs), but only this server can compute the verifier from it.
- The address to return to is checked when it is read, not only when it is written: it must be
  a path under this server's prefix that a browser cannot read as another host. A callback URL
  made up by someone else (JupyterHub follows the state's address without the cookie check for a
  viewer who is already logged in) can then send nobody off our origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets

from jupyterhub.services.auth import HubOAuth

from .http_hygiene import leaves_origin

# The longest address a login returns to (a longer one is replaced by the server's home page):
# the state, with it, must fit in a signed cookie of at most 4 KiB.
MAX_NEXT_URL = 1024


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# A path segment a browser reads as `.` or `..` (WHATWG URL: `%2e` in any case counts as a dot).
_DOT = frozenset({".", "%2e"})
_DOT_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
# What a browser drops from a URL before it parses it: tab, CR and LF anywhere.
_DROPPED = re.compile(r"[\t\r\n]")


def without_dot_segments(url: str) -> str:
    """A path-and-query URL with its path's `.` and `..` segments resolved as a browser
    resolves them (RFC 3986 section 5.2.4, percent-encoded dots and `\\` for `/` included), so
    that what is checked is where the browser will go. The query and fragment are kept."""
    url = _DROPPED.sub("", url)
    end = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    path, rest = url[:end].replace("\\", "/"), url[end:]
    if not path.startswith("/"):
        return url
    kept: list[str] = []
    segments = path[1:].split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        name = segment.lower()
        if name in _DOT_DOT:
            if kept:
                kept.pop()
        elif name not in _DOT:
            kept.append(segment)
            continue
        if last:
            kept.append("")  # `/a/b/..` is the folder `/a/`
    return "/" + "/".join(kept) + rest


class StatelessHubOAuth(HubOAuth):
    """HubOAuth whose pending logins cost no memory: see the module's docstring."""

    # Set by make_hub_auth: the secret the PKCE verifiers are derived with.
    verifier_secret: bytes = b""

    def _verifier(self, nonce: str) -> str:
        digest = hmac.new(self.verifier_secret, nonce.encode("ascii"), hashlib.sha256).hexdigest()
        return nonce + digest

    def generate_pkce_code_challenge(self, method="S256"):
        if method != "S256":
            raise ValueError(f"Only method='S256' is supported, not {method!r}")
        verifier = self._verifier(secrets.token_hex(16))
        challenge = _b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
        return verifier, challenge, method

    def safe_next_url(self, next_url: str | None) -> str:
        """`next_url` if it is a short path under our prefix that stays on our origin, with its
        dot segments resolved first (`/user/a/../../hub/token` is `/hub/token`, not ours)."""
        base = self.base_url
        if not next_url or len(next_url) > MAX_NEXT_URL or leaves_origin(next_url):
            return base
        next_url = without_dot_segments(next_url)
        if leaves_origin(next_url) or not (
            next_url == base.rstrip("/") or next_url.startswith(base)
        ):
            return base
        return next_url

    def generate_state(self, next_url=None, **extra_state):
        payload: dict[str, str] = {"n": self.safe_next_url(next_url)}
        if extra_state.get("cookie_name"):
            payload["c"] = extra_state["cookie_name"]
        verifier = extra_state.get("code_verifier")
        if verifier:
            nonce = verifier[:32]
            if self._verifier(nonce) != verifier:
                raise ValueError("a PKCE verifier that this server did not make")
            payload["v"] = nonce
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return f"{secrets.token_urlsafe(16)}.{body}"

    def _state(self, state_id: str) -> dict:
        try:
            _, body = state_id.split(".", 1)
            payload = json.loads(_b64decode(body))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return {}
        return payload if isinstance(payload, dict) else {}

    def get_next_url(self, state_id="", /):
        return self.safe_next_url(str(self._state(state_id).get("n") or ""))

    def get_code_verifier(self, state_id="", /):
        nonce = self._state(state_id).get("v")
        return self._verifier(nonce) if isinstance(nonce, str) and nonce else None

    def get_state_cookie_name(self, state_id="", /):
        name = self._state(state_id).get("c")
        if isinstance(name, str) and name.startswith(self.state_cookie_name):
            return name
        return self.state_cookie_name

    def clear_oauth_state(self, state_id):
        """Nothing is kept, so nothing is cleared."""
