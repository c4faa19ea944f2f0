"""The hub's token and the proxy's own secret (issue 18, item 6): what the app and the checkout
child find in their environment, and why the app cannot sign the proxy's cookies.

The app inherits JUPYTERHUB_API_TOKEN unless --hide-hub-token; the checkout child never gets it.
The secret that signs our cookies is random per process: a cookie signed the old way, with a
secret derived from the API token (which the app has), is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_hub import children_of
from test_security import hub_env
from tornado.web import create_signed_value

from conftest import ECHO_APP, wait_for
from jhsingle_native_proxy.prepare import app_environment, checkout_environment

API_TOKEN = "t" * 32  # hub_env's
HUB_TOKENS = {"JUPYTERHUB_API_TOKEN": API_TOKEN, "JPY_API_TOKEN": API_TOKEN}
SAY_TOKENS = ["--say-env", "JUPYTERHUB_API_TOKEN", "--say-env", "JPY_API_TOKEN"]


# -- the app's environment ---------------------------------------------------------------------


def test_the_environments_built_for_the_app_and_the_checkout():
    given = {**HUB_TOKENS, "JHSNP_REPO_TOKEN": "r", "HOME": "/home/alice"}
    assert app_environment(given) == {**HUB_TOKENS, "HOME": "/home/alice"}
    assert app_environment(given, hide_hub_token=True) == {"HOME": "/home/alice"}
    assert checkout_environment(given) == {"HOME": "/home/alice"}


@pytest.mark.parametrize("hide", [False, True])
def test_the_app_has_the_hub_token_unless_the_owner_hides_it(start_proxy, hide):
    proxy = start_proxy(
        ["--hide-hub-token"] if hide else [],
        app=[sys.executable, ECHO_APP, "{port}", *SAY_TOKENS],
        env=HUB_TOKENS,
    )
    seen = "" if hide else API_TOKEN
    for name in HUB_TOKENS:
        assert f"echo app env {name}={seen}\n" in proxy.log()


# -- the checkout child's environment ----------------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().split(b"\0")
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


class _RemoteThatLooks(BaseHTTPRequestHandler):
    """A git remote that, while git waits for its first answer, reads the environment of the
    proxy's checkout child (the proxy's child running checkout_runner), then answers 404."""

    def do_GET(self):  # noqa: N802 - http.server's name
        server = self.server
        for pid in children_of(server.proxy_pid):  # type: ignore[attr-defined]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"jhsingle_native_proxy.checkout_runner" in f.read():
                    server.seen.append(_environ(pid))  # type: ignore[attr-defined]
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_checkout_child_gets_no_hub_token(start_proxy):
    remote = ThreadingHTTPServer(("127.0.0.1", 0), _RemoteThatLooks)
    remote.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=remote.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{remote.server_address[1]}/repo.git"
        proxy = start_proxy(["--repo", url, "--repofolder", "work"], env=HUB_TOKENS, wait=None)
        remote.proxy_pid = proxy.pid  # type: ignore[attr-defined]
        proxy.wait_listening()
        wait_for(lambda: proxy.status().get("state") == "failed", what="the failed checkout")
    finally:
        remote.shutdown()
        remote.server_close()
        thread.join(10)
    assert remote.seen, "git never asked the remote while the checkout child was running"
    for environ in remote.seen:
        assert "PATH" in environ  # the child's environment was read
        leaked = sorted(name for name in HUB_TOKENS if name in environ)
        assert leaked == []


# -- the cookie secret -------------------------------------------------------------------------


class _StandInHub(BaseHTTPRequestHandler):
    """The hub's `GET /hub/api/user`: the server's own API token is its owner, alice, as on a
    real hub; any other token is unknown (403)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if (
            self.path.startswith("/hub/api/user")
            and self.headers.get("Authorization") == f"token {API_TOKEN}"
        ):
            body = json.dumps(
                {
                    "kind": "user",
                    "name": "alice",
                    "admin": False,
                    "groups": [],
                    "scopes": ["access:servers!user=alice"],
                }  # fmt: skip
            ).encode()
            self.send_response(200)
        else:
            body = b"{}"
            self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _old_cookie_secret(api_token: str) -> bytes:
    """How the cookie secret used to be made: from the API token, which the app inherits."""
    digest = hmac.new(
        api_token.encode(), b"jhsingle-native-proxy cookie secret v1", hashlib.sha256
    ).hexdigest()
    return digest.encode("ascii")


def test_a_cookie_signed_with_a_secret_from_the_api_token_is_refused(start_proxy):
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _StandInHub)
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    try:
        env = hub_env(JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.server_address[1]}/hub/api")
        proxy = start_proxy(authtype="oauth", env=env, wait="listening")
        proxy.wait_log("The app is ready")
        api = {"Accept": "application/json"}
        # The stand-in hub works: the token itself, in a header, is alice.
        as_alice = proxy.get("echo", headers={**api, "Authorization": f"token {API_TOKEN}"})
        assert as_alice.status == 200
        # The app knows the API token, so it could sign a login cookie holding it.
        name = env["JUPYTERHUB_CLIENT_ID"]
        forged = create_signed_value(_old_cookie_secret(API_TOKEN), name, API_TOKEN).decode()
        answer = proxy.get("echo", headers={**api, "Cookie": f"{name}={forged}"})
        assert answer.status == 401, (answer.status, answer.body[:200])
    finally:
        hub.shutdown()
        hub.server_close()
        thread.join(10)
