"""Issue 24, identity, against a real JupyterHub: two users (alice, the owner; carol, in the
group `friends` that may use alice's servers), an admin. One hub for the module.

- `ident`: the echo app with --forward-user-headers --forward-user-jwt. Each viewer arrives as
  themselves (name, groups, admin), whatever they forge; the token passes the app authors'
  helper for this server only; a direct call to the app's port carries nothing it accepts.
- `streamlit`, `dash`, `panel`: examples/identity's apps greet each viewer by name in Chromium.
"""

from __future__ import annotations

import base64
import re
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conftest import request as raw_request
from hub import PASSWORD, start_hub, stop_hub
from jhsingle_native_proxy import http_hygiene as h

IDENTITY_EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "identity"
sys.path.insert(0, str(IDENTITY_EXAMPLES))
from jhsnp_viewer import viewer_from_headers  # noqa: E402 (the app authors' helper, as copied)

IDENT = "/user/alice/ident/"
EXAMPLE_SERVERS = ("streamlit", "dash", "panel")

# The example servers run their framework's preset on examples/identity's file, with the token
# on; the harness's own hook (the echo app) runs the others.
EXAMPLE_SPAWNS = f"""
import os
_harness_hook = c.Spawner.pre_spawn_hook
EXAMPLES = {str(IDENTITY_EXAMPLES)!r}

def _identity_examples(spawner):
    _harness_hook(spawner)
    if spawner.name in {EXAMPLE_SERVERS!r}:
        spawner.cmd = [sys.executable, "-m", "jhsingle_native_proxy", "--forward-user-jwt",
                       "--ready-timeout", "90", "--app", spawner.name,
                       "--presentation-path", f"{{EXAMPLES}}/{{spawner.name}}_hello.py"]
        # The frameworks' programs (streamlit, panel) are beside this Python.
        path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        spawner.environment = {{**spawner.environment, "PATH": path}}

c.Spawner.pre_spawn_hook = _identity_examples
"""

FORGED_HEADERS = {
    "X-Forwarded-User": "mallory",
    "X_Forwarded_Preferred_Username": "mallory",
    "X-Forwarded-Email": "mallory@example.org",
    "X-Forwarded-Groups": "admins",
    "X-Auth-Request-User": "mallory",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    extra = {"ident": {"proxy": ["--forward-user-headers", "--forward-user-jwt"]}}
    hub = start_hub(tmp_path_factory.mktemp("hub"), extra=extra, more=EXAMPLE_SPAWNS)
    try:
        hub.ensure_users("alice", "carol", "admin", "dave")
        hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
        hub.start_server("alice")
        hub.start_server("alice", "ident")
        yield hub
    finally:
        stop_hub(hub)


def public_pem_of(jwks: dict) -> str:
    (key,) = jwks["keys"]
    raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
    public = Ed25519PublicKey.from_public_bytes(raw)
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def forged_token(audience: str) -> str:
    """What a local user could make: a well-formed token for this server, under their own key."""
    now = int(time.time())
    claims = {"aud": audience, "sub": "admin", "name": "admin", "admin": True, "groups": []}
    claims.update(iat=now, exp=now + 60)
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA")


def values(pairs: list, name: str) -> list[str]:
    return [v for n, v in pairs if h.canonical_name(n) == h.canonical_name(name)]


def app_port(hub, server: str) -> int:
    """The port the echo app of alice's `server` listens on, from /proc (the proxy's children)."""
    from loadgen import listening_addresses, process_tree

    ports = {p for _, p in listening_addresses(process_tree(hub.server_pid("alice", server)))}
    assert len(ports) == 1, ports
    return ports.pop()


def test_each_viewer_reaches_the_app_as_themselves_and_only_through_the_proxy(hub):
    alice = hub.login("alice")
    jwks = hub.get_as(alice, f"{hub.url}{IDENT}_jhsnp/jwks.json")
    assert jwks.status_code == 200, jwks.text[:300]
    pem = public_pem_of(jwks.json())
    forged = {**FORGED_HEADERS, h.FORWARDED_JWT: forged_token(IDENT)}

    seen = {}
    for user, groups, admin in (
        ("alice", "", False),
        ("carol", "friends", False),
        ("admin", "", True),
    ):
        session = alice if user == "alice" else hub.login(user)
        answer = hub.get_as(session, f"{hub.url}{IDENT}echo", headers=forged)
        assert answer.status_code == 200, (user, answer.text[:300])
        got = answer.json()["headers"]
        assert values(got, "X-Forwarded-User") == [user]
        assert values(got, "X-Forwarded-Preferred-Username") == [user]
        assert values(got, "X-Forwarded-Groups") == [groups]
        assert values(got, "X-Forwarded-Email") == []  # the hub's user model has none
        assert values(got, "X-Auth-Request-User") == []
        (token,) = values(got, h.FORWARDED_JWT)
        claims = viewer_from_headers({h.FORWARDED_JWT: token}, public_key=pem, audience=IDENT)
        assert claims is not None, user
        assert (claims["sub"], claims["admin"]) == (user, admin)
        assert claims["groups"] == ([groups] if groups else [])
        # The same token is no good for another of the hub's servers (alice's default one).
        assert (
            viewer_from_headers({h.FORWARDED_JWT: token}, public_key=pem, audience="/user/alice/")
            is None
        )
        seen[user] = token
    # The key is served to whoever may view the app, and to nobody else.
    assert hub.get_as(hub.login("carol"), f"{hub.url}{IDENT}_jhsnp/jwks.json").json() == jwks.json()
    assert hub.get_as(hub.login("dave"), f"{hub.url}{IDENT}_jhsnp/jwks.json").status_code == 403
    anonymous = requests.get(
        f"{hub.url}{IDENT}_jhsnp/jwks.json", headers={"Accept": "application/json"}, timeout=30
    )
    assert anonymous.status_code == 401

    # A server without the options: a client's copies are dropped all the same, none of ours.
    plain = hub.get_as(alice, f"{hub.url}/user/alice/echo", headers=forged).json()["headers"]
    for name in (*FORGED_HEADERS, h.FORWARDED_JWT):
        assert values(plain, name) == [], name

    # Around the proxy, on the app's own port: whatever arrives, the helper accepts none of it,
    # neither a token of a local user's own making nor a real one meant for another server.
    port = app_port(hub, "ident")
    for token in (forged[h.FORWARDED_JWT], ""):
        direct = raw_request(port, "GET", "/echo", headers={**forged, h.FORWARDED_JWT: token})
        got = direct.json()["headers"]
        assert values(got, "X-Forwarded-User") == ["mallory"]  # plain headers: anyone's
        assert viewer_from_headers(dict(got), public_key=pem, audience=IDENT) is None


@pytest.mark.examples
def test_each_example_greets_each_viewer_in_chromium(hub):
    from example_support import require

    for module in ("streamlit", "dash", "panel"):
        require(module)
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    for server in EXAMPLE_SERVERS:
        hub.start_server("alice", server, wait=False)
    for server in EXAMPLE_SERVERS:
        hub.start_server("alice", server, timeout=120)
    for user in ("alice", "carol"):
        with chromium_page() as page:
            page.goto(f"{hub.url}/hub/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", PASSWORD)
            page.click("input[type=submit], button[type=submit]")
            page.wait_for_url(re.compile(r".*/(hub|user)/.*"), timeout=30000)
            for server in EXAMPLE_SERVERS:
                page.goto(f"{hub.url}/user/alice/{server}/")
                if "/oauth2/authorize" in page.url:  # another user's server: the hub asks first
                    page.click("form button[type=submit]")
                expect(page.get_by_text(f"Hello, {user}")).to_be_visible(timeout=60000)
                screenshot(page, f"identity-{server}-{user}")
