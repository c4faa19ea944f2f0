"""Security review of issue 24's surfaces (the viewer's identity, `--env-file` secrets): the
findings' regression tests, against the real CLI and real apps.

- The token's key is the proxy's at every layer: a repository's jhsnp.toml `[env]` (or any
  other layer: a preset's, a config's, `--env-file`, `--env`) cannot give the app another
  public key or audience, which would make the app trust tokens of someone else's making.

And, against a real JupyterHub, what held on review (no finding, kept as a guard): a websocket's
handshake tells the app who the viewer is as an HTTP request does, one copy of each header, and
whatever the client forged in any spelling never arrives.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from test_repository_app import COMMAND, Repository, start_repo

from conftest import ECHO_APP
from jhsingle_native_proxy import http_hygiene as h

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "identity"))
from jhsnp_viewer import viewer_from_headers  # noqa: E402 (the app authors' helper, as copied)

# A key pair of the attacker's making, and the public half in PEM as the app would read it.
ATTACKER_PEM = (
    Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def pem_of_jwks(jwks: dict) -> str:
    (key,) = jwks["keys"]
    raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
    return (
        Ed25519PublicKey.from_public_bytes(raw)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


def test_no_layer_gives_the_app_another_key_to_trust(start_proxy, tmp_path):
    """A repository's `[env]` names a key of its own, an `--env-file` an audience: the app gets
    the proxy's, the key jwks.json serves; without --forward-user-jwt it gets none at all (the
    helper then refuses every token)."""
    manifest = COMMAND + "[env]\n" + f"JHSNP_JWT_PUBLIC_KEY = {toml_string(ATTACKER_PEM)}\n"
    app = Path(ECHO_APP).read_text()
    repo = Repository(tmp_path / "repo", {"jhsnp.toml": manifest, "app.py": app})
    env_file = tmp_path / "app.env"
    env_file.write_text('JHSNP_JWT_AUDIENCE="/"\n')
    for jwt_option in ("--forward-user-jwt", "--no-forward-user-jwt"):
        folder = tmp_path / jwt_option
        folder.mkdir()
        proxy = start_repo(
            start_proxy, folder, repo, jwt_option, "--env-file", str(env_file), "--env", "OTHER=1"
        )
        key = proxy.get("env?name=JHSNP_JWT_PUBLIC_KEY")
        audience = proxy.get("env?name=JHSNP_JWT_AUDIENCE")
        if jwt_option == "--forward-user-jwt":
            assert key.status == 200 and key.body.decode() == pem_of_jwks(
                proxy.get("_jhsnp/jwks.json").json()
            )
            assert audience.body == proxy.prefix.encode()
        else:
            assert (key.status, audience.status) == (404, 404), (key.body, audience.body)
        assert proxy.get("env?name=OTHER").body == b"1"  # the layers themselves still apply
        proxy.cleanup()


def test_every_layer_of_the_apps_environment_gives_way_to_the_proxys_key():
    """The same rule without a process: a config's `environment`, the preset's or repository's
    `env`, the files and `--env` each try; the prepared environment's values (ours) stand, and
    with none there (the option off) the app gets none."""
    from types import MappingProxyType

    from jhsingle_native_proxy.given_app import GivenApp
    from jhsingle_native_proxy.launch import build_launch
    from jhsingle_native_proxy.settings import Settings

    theirs = {"JHSNP_JWT_PUBLIC_KEY": ATTACKER_PEM, "JHSNP_JWT_AUDIENCE": "/"}
    ours = {"JHSNP_JWT_PUBLIC_KEY": "our key", "JHSNP_JWT_AUDIENCE": "/user/alice/"}
    layers = [
        Settings(command=("app",), server_env=MappingProxyType(theirs)),
        Settings(command=("app",), env=MappingProxyType(theirs)),
        Settings(command=("app",), given_app=GivenApp(env=MappingProxyType(theirs))),
    ]
    for settings in layers:
        for files in ({}, theirs):
            launch = build_launch(settings, 8000, environ={**ours, "A": "1"}, env_files=files)
            assert {k: launch.env[k] for k in ours} == ours
            assert launch.env["A"] == "1"
            launch = build_launch(settings, 8000, environ={"A": "1"}, env_files=files)
            assert launch.env == {"A": "1"}


# -- a real hub: the viewer in a websocket's handshake ------------------------------------------

IDENT = "/user/alice/ident/"
FORGED = {
    "X-Forwarded-User": "mallory",
    "X_Forwarded_User": "mallory",
    "x-forwarded-groups": "admins",
    "X-Forwarded-Access-Jwt": "forged.token.here",
    "X-Auth-Request-User": "mallory",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub import start_hub, stop_hub

    extra = {"ident": {"proxy": ["--forward-user-headers", "--forward-user-jwt"]}}
    hub = start_hub(tmp_path_factory.mktemp("hub"), extra=extra)
    try:
        hub.ensure_users("alice", "carol")
        hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
        hub.start_server("alice", "ident")
        yield hub
    finally:
        stop_hub(hub)


async def _handshake_headers(url: str, headers: dict) -> list:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        await ws.send_str("headers")
        return json.loads((await ws.receive(timeout=20)).data)


def test_a_websocket_handshake_carries_the_viewer_and_nothing_forged(hub):
    carol = hub.login("carol")
    jwks = hub.get_as(carol, f"{hub.url}{IDENT}_jhsnp/jwks.json")
    assert jwks.status_code == 200, jwks.text[:300]
    cookie = "; ".join(f"{c.name}={c.value}" for c in carol.cookies)
    ws_url = hub.url.replace("http://", "ws://") + IDENT + "ws"
    got = asyncio.run(_handshake_headers(ws_url, {**FORGED, "Cookie": cookie, "Origin": hub.url}))

    def values(name: str) -> list[str]:
        return [v for n, v in got if h.canonical_name(n) == h.canonical_name(name)]

    assert values("Upgrade") == ["websocket"]  # the app's real handshake
    assert values("X-Forwarded-User") == ["carol"]
    assert values("X-Forwarded-Preferred-Username") == ["carol"]
    assert values("X-Forwarded-Groups") == ["friends"]
    assert values("X-Auth-Request-User") == []
    (token,) = values(h.FORWARDED_JWT)
    claims = viewer_from_headers(
        {h.FORWARDED_JWT: token}, public_key=pem_of_jwks(jwks.json()), audience=IDENT
    )
    assert claims is not None and (claims["sub"], claims["groups"]) == ("carol", ["friends"])
    assert not any("mallory" in v or v == "admins" for _, v in got), got
