"""Issue 24, identity: who is viewing, told to the app (`--forward-user-headers`,
`--forward-user-jwt`), and the app authors' helper (examples/identity/jhsnp_viewer.py).

Pure parts here, then one real proxy (`--authtype none`, the echo app) for what crosses the wire
without a hub: a client's identity headers never reach the app, over HTTP or a websocket's
handshake, and with no viewer nothing is sent. tests/test_identity_hub.py has the real hub's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jhsingle_native_proxy import http_hygiene as h
from jhsingle_native_proxy.cli import parse_args
from jhsingle_native_proxy.identity_options import IdentitySettings
from jhsingle_native_proxy.repository_manifest import REFUSED_KEYS
from jhsingle_native_proxy.server import viewer_identity
from jhsingle_native_proxy.viewer_identity import (
    LIFETIME,
    REUSE,
    ViewerIdentity,
    groups_value,
    plain_value,
    viewer_key,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "identity"))
from jhsnp_viewer import viewer_from_headers  # noqa: E402 (the app authors' helper, as copied)

AUDIENCE = "/user/alice/"
CAROL = {"kind": "user", "name": "carol", "admin": False, "groups": ["friends", "staff,admins"]}


def signer(headers: bool = True, jwt_on: bool = True) -> ViewerIdentity:
    return ViewerIdentity(IdentitySettings(headers=headers, jwt=jwt_on), AUDIENCE)


def token_of(identity: ViewerIdentity, viewer=CAROL, now: float | None = None) -> str:
    return dict(identity.viewer_headers(viewer, now))[h.FORWARDED_JWT]


def check(token: str, identity: ViewerIdentity, audience: str = AUDIENCE) -> dict | None:
    return viewer_from_headers(
        {h.FORWARDED_JWT: token}, public_key=identity.public_pem, audience=audience
    )


# -- the headers -------------------------------------------------------------------------------


def test_a_viewer_is_described_in_oauth2_proxys_headers_and_a_token():
    identity = signer()
    headers = identity.viewer_headers({**CAROL, "email": "carol@example.org"})
    names = [n for n, _ in headers]
    assert names == [
        "X-Forwarded-User",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Access-Jwt",
    ]
    values = dict(headers)
    assert values["X-Forwarded-User"] == values["X-Forwarded-Preferred-Username"] == "carol"
    # A group whose name holds a comma would read as two ("admins"): left out of the header.
    assert values["X-Forwarded-Groups"] == "friends"
    claims = check(values["X-Forwarded-Access-Jwt"], identity)
    assert claims is not None
    assert (claims["sub"], claims["name"], claims["admin"]) == ("carol", "carol", False)
    assert claims["groups"] == ["friends", "staff,admins"]  # every group, exactly
    assert claims["email"] == "carol@example.org"
    assert claims["aud"] == AUDIENCE and claims["exp"] - claims["iat"] == LIFETIME
    # No email in the hub's model: no header, no claim.
    assert "X-Forwarded-Email" not in dict(identity.viewer_headers(CAROL))


def test_each_option_alone_sends_only_its_own():
    assert [n for n, _ in signer(jwt_on=False).viewer_headers(CAROL)] == [
        "X-Forwarded-User",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Groups",
    ]
    assert [n for n, _ in signer(headers=False).viewer_headers(CAROL)] == [h.FORWARDED_JWT]
    assert signer(jwt_on=False).app_environment() == {}
    assert signer(jwt_on=False).jwks() == {"keys": []}


@pytest.mark.parametrize(
    "value, ok",
    [
        ("alice", True),
        ("ülrike", True),
        ("a\r\nX-Forwarded-User: admin", False),
        ("a\nb", False),
        ("a\0", False),
        ("a\tb", False),
        (" admin", False),
        ("", False),
        (None, False),
    ],
)
def test_a_name_with_a_control_character_or_outer_space_is_never_a_header(value, ok):
    assert (plain_value(value) is not None) is ok


def test_groups_that_would_split_or_break_a_line_are_left_out_of_the_header():
    assert groups_value(["a", "b,admins", "c\r\nX-Forwarded-User: x", " admins", "d"]) == "a,d"
    identity = signer()
    odd = {"kind": "user", "name": "bad\nname", "groups": ["friends"]}
    # A name a header cannot carry: no plain headers at all, the token still exact.
    headers = dict(identity.viewer_headers(odd))
    assert set(headers) == {h.FORWARDED_JWT}
    claims = check(headers[h.FORWARDED_JWT], identity)
    assert claims is not None and claims["name"] == "bad\nname"
    for name, value in identity.viewer_headers(CAROL):
        assert h.header_problem(name, value) is None


def test_a_hub_service_is_not_described_as_a_user():
    assert viewer_key({"kind": "service", "name": "alice"}) is None
    assert signer().viewer_headers({"kind": "service", "name": "alice"}) == []


def test_a_viewers_headers_are_reused_for_a_while_then_signed_again():
    identity = signer()
    now = time.time()
    first = token_of(identity, now=now)
    assert token_of(identity, now=now + REUSE - 1) == first
    later = token_of(identity, now=now + REUSE)
    assert later != first
    assert jwt.decode(later, options={"verify_signature": False})["iat"] == int(now + REUSE)
    # Another viewer, or the same one in other groups, never gets carol's.
    assert token_of(identity, {**CAROL, "groups": []}, now=now) != first
    # A clock that went back signs again rather than reuse a token from the future.
    earlier = token_of(identity, now=now - 100)
    assert jwt.decode(earlier, options={"verify_signature": False})["iat"] == int(now - 100)


def test_the_cache_stays_bounded(monkeypatch):
    import jhsingle_native_proxy.viewer_identity as vi

    monkeypatch.setattr(vi, "CACHE_LIMIT", 8)
    identity = signer(jwt_on=False)
    for i in range(50):
        identity.viewer_headers({"name": f"user{i}"})
    assert len(identity._cache) <= 8


def test_the_request_headers_give_way_to_ours():
    identity = signer(jwt_on=False)
    given = [("X-Forwarded-User", "owner-set"), ("x_forwarded_groups", "x"), ("X-Other", "1")]
    out = identity.with_viewer(given, CAROL, replace=True)
    assert [v for n, v in out if n.lower() == "x-forwarded-user"] == ["carol"]
    assert not any(n == "x_forwarded_groups" for n, _ in out)
    assert ("X-Other", "1") in out


# -- the helper: what it refuses ---------------------------------------------------------------


def _forge(alg: str, key, claims: dict | None = None, headers: dict | None = None) -> str:
    now = int(time.time())
    body = {"aud": AUDIENCE, "sub": "admin", "name": "admin", "admin": True, "groups": []}
    body.update(iat=now, exp=now + 60, **(claims or {}))
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def _part(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(claims: dict) -> str:
    return _part({"alg": "none", "typ": "JWT"}) + "." + _part(claims) + "."


def _hmac_signed(secret: bytes) -> str:
    """HS256 keyed with `secret`, made by hand (PyJWT refuses a PEM as an HMAC key)."""
    now = int(time.time())
    claims = {"aud": AUDIENCE, "sub": "admin", "admin": True, "iat": now, "exp": now + 60}
    signing_input = _part({"alg": "HS256", "typ": "JWT"}) + "." + _part(claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _part(signature)


def test_the_helper_accepts_only_this_proxys_token_for_this_server():
    identity = signer()
    good = token_of(identity)
    assert check(good, identity)["sub"] == "carol"
    # Another audience (another server of the hub): refused.
    assert check(good, identity, audience="/user/bob/") is None
    # Signed with another key, with our kid copied in: refused (the kid chooses nothing).
    other = Ed25519PrivateKey.generate()
    forged = _forge("EdDSA", other, headers={"kid": identity.jwk["kid"]})
    assert check(forged, identity) is None
    # HMAC keyed with the public key itself (algorithm confusion): refused.
    pem = identity.public_pem.encode()
    confused = _hmac_signed(pem)
    assert check(confused, identity) is None
    # No signature at all.
    now = int(time.time())
    assert (
        check(_unsigned({"aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60}), identity)
        is None
    )
    # Expired (past the helper's 5 s leeway), and one without an expiry.
    assert check(token_of(identity, now=time.time() - LIFETIME - 10), identity) is None
    private = identity._private_key
    no_exp = jwt.encode({"aud": AUDIENCE, "sub": "x", "iat": now}, private, algorithm="EdDSA")
    assert check(no_exp, identity) is None
    # Garbage, an empty header, none at all, no key in the environment.
    for headers in ({h.FORWARDED_JWT: "not.a.token"}, {h.FORWARDED_JWT: ""}, {}):
        assert (
            viewer_from_headers(headers, public_key=identity.public_pem, audience=AUDIENCE) is None
        )
    assert viewer_from_headers({h.FORWARDED_JWT: good}, public_key="", audience="") is None


def test_the_helper_reads_the_environment_and_any_spelling_of_the_header(monkeypatch):
    identity = signer()
    for name, value in identity.app_environment().items():
        monkeypatch.setenv(name, value)
    good = token_of(identity)
    for spelling in ("X-Forwarded-Access-Jwt", "x-forwarded-access-jwt", "X_FORWARDED_ACCESS_JWT"):
        assert viewer_from_headers({spelling: good})["name"] == "carol"


def test_the_jwks_is_the_key_the_app_has():
    identity = signer()
    (key,) = identity.jwks()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
    public = serialization.load_pem_public_key(identity.public_pem.encode())
    assert raw == public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert jwt.get_unverified_header(token_of(identity))["kid"] == key["kid"]


# -- the wiring --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "X-Forwarded-User",
        "x-forwarded-user",
        "X_Forwarded_User",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Access-Jwt",
        "X-Forwarded-Access-Token",
        "X-Auth-Request-User",
        "X-Auth-Request-Groups",
        "X-CDSDASHBOARDS-JH-USER",
        "Remote-User",
        "X-Remote-User",
        "X-WEBAUTH-USER",
    ],
)
def test_a_clients_identity_headers_are_always_dropped(name):
    out = h.request_headers_for_app(
        [(name, "mallory"), ("X-Keep", "1")],
        [],
        client_ip="127.0.0.1",
        protocol="http",
        host="h",
        prefix=AUDIENCE,
    )
    assert ("X-Keep", "1") in out
    assert not any(v == "mallory" for _, v in out), out


def test_the_options_reach_settings_and_the_repository_cannot_set_them():
    settings = parse_args(["--authtype", "none", "--forward-user-jwt", "--", "app"], {})
    assert settings.identity == IdentitySettings(headers=False, jwt=True)
    settings = parse_args(["--authtype", "none", "--", "app"], {})
    assert settings.identity == IdentitySettings() and not settings.identity.enabled
    assert "forward_user_headers" in REFUSED_KEYS and "forward_user_jwt" in REFUSED_KEYS


def test_the_app_gets_our_public_key_and_never_an_inherited_one():
    inherited = {"JHSNP_JWT_PUBLIC_KEY": "someone else's", "JHSNP_JWT_AUDIENCE": "/", "A": "1"}
    off = parse_args(["--authtype", "none", "--", "app"], {})
    environ, identity = viewer_identity(off, inherited)
    assert identity is None and environ == {"A": "1"}
    on = parse_args(["--authtype", "none", "--forward-user-jwt", "--", "app"], {})
    environ, identity = viewer_identity(on, inherited)
    assert environ["JHSNP_JWT_PUBLIC_KEY"] == identity.public_pem
    assert environ["JHSNP_JWT_AUDIENCE"] == "/"  # the prefix
    assert environ["A"] == "1"


# -- a real proxy, no hub ----------------------------------------------------------------------

FORGED = {
    "X-Forwarded-User": "mallory",
    "X_Forwarded_Groups": "admins",
    "X-Forwarded-Email": "mallory@example.org",
    "X-Auth-Request-User": "mallory",
    "X-Forwarded-Access-Jwt": "forged.token.here",
    "Remote-User": "mallory",
    "Remote-Groups": "admins",
    "X-Remote-User": "mallory",
    "X-Webauth-User": "mallory",
}


def _forged_names(pairs) -> list[str]:
    names = {h.canonical_name(n) for n in FORGED}
    return [f"{n}: {v}" for n, v in pairs if h.canonical_name(n) in names]


async def _websocket_headers(url: str) -> list:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=FORGED) as ws:
        await ws.send_str("headers")
        return json.loads((await ws.receive(timeout=10)).data)


def test_without_a_viewer_nothing_is_sent_and_forged_copies_never_arrive(start_proxy):
    """--authtype none: both options on, no viewer; a client's identity headers are dropped
    over HTTP and in a websocket's handshake, and the JWKS is served."""
    import asyncio

    proxy = start_proxy(["--forward-user-headers", "--forward-user-jwt"])
    proxy.wait_ready()
    assert "there is no viewer, so nothing is sent" in proxy.log()
    echoed = proxy.get("echo", headers=FORGED).json()
    assert _forged_names(echoed["headers"]) == []
    ws_url = f"ws://127.0.0.1:{proxy.port}{proxy.prefix}ws"
    handshake = asyncio.run(_websocket_headers(ws_url))
    assert any(n.lower() == "host" for n, _ in handshake)  # the app's real handshake
    assert _forged_names(handshake) == []
    jwks = proxy.get("_jhsnp/jwks.json")
    assert jwks.status == 200
    assert jwks.json()["keys"][0]["crv"] == "Ed25519"


def test_forged_copies_are_dropped_with_the_options_off(start_proxy):
    proxy = start_proxy([])
    proxy.wait_ready()
    echoed = proxy.get("echo", headers=FORGED).json()
    assert _forged_names(echoed["headers"]) == []
    # Off, the JWKS path is the app's like any other.
    assert proxy.get("_jhsnp/jwks.json").json()["uri"] == "/_jhsnp/jwks.json"
