"""Inside a real JupyterHub, as its admins and users meet it: `c.Spawner.cmd` is our CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

import pytest
import requests

from conftest import pid_alive, wait_for, ws_try
from hub import BROWSER, start_hub, stop_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        hub.ensure_users("alice", "bob", "carol", "dave", "admin")
        hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
        hub.start_server("alice")
        yield hub
    finally:
        stop_hub(hub)


def app_echo(response: requests.Response) -> dict:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def test_owner_logs_in_through_the_hub_and_reaches_the_app(hub):
    session = hub.login("alice")
    response = session.get(f"{hub.url}/user/alice/deep/path%2Fx?a=1&a=2&flag")
    # The OAuth dance happened: to the hub's authorize URL and back through our callback.
    hops = [r.url for r in response.history]
    assert any("/hub/api/oauth2/authorize" in u for u in hops)
    assert any("/user/alice/oauth_callback" in u for u in hops)
    uri = app_echo(response)["uri"]
    assert uri.startswith("/deep/path%2Fx?a=1&a=2&flag&CDSDASHBOARDS_JH_USER=")
    # Logged in now: the next request goes straight to the app.
    again = session.get(f"{hub.url}/user/alice/echo", allow_redirects=False)
    assert again.status_code == 200


def test_anonymous_browser_is_sent_to_log_in(hub):
    response = requests.get(f"{hub.url}/user/alice/echo", headers=BROWSER, timeout=30)
    assert "/hub/login" in response.url
    assert response.status_code == 200


def test_anonymous_api_client_gets_401(hub):
    response = requests.get(
        f"{hub.url}/user/alice/echo",
        headers={"Accept": "application/json"},
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("token")
    assert "Traceback" not in response.text


def test_another_user_gets_a_403_page_saying_who_they_are(hub):
    session = hub.login("bob")
    response = session.get(f"{hub.url}/user/alice/echo")
    # The hub itself refuses bob at its authorize step, or we do: a 403 either way.
    assert response.status_code == 403
    with_token = requests.get(
        f"{hub.url}/user/alice/echo",
        headers={**BROWSER, "Authorization": f"token {hub.user_token('bob')}"},
        timeout=30,
    )
    assert with_token.status_code == 403
    assert "bob" in with_token.text and "not yours" in with_token.text
    assert "alice" in with_token.text


def test_group_granted_access_gets_in(hub):
    session = hub.login("carol")
    response = hub.get_as(session, f"{hub.url}/user/alice/echo")
    assert app_echo(response)["uri"].startswith("/echo")


def test_admin_gets_in(hub):
    # JupyterHub 5+ admins hold access:servers; the hub grants, and we follow the hub.
    session = hub.login("admin")
    response = hub.get_as(session, f"{hub.url}/user/alice/echo")
    assert app_echo(response)["uri"].startswith("/echo")


def test_jupyterhub_share_lets_the_guest_in(hub):
    if hub.major_version < 5:
        pytest.skip("shares are new in JupyterHub 5 (JHSNP_HUB_VERSION runs an older hub)")
    session = hub.login("dave")
    before = session.get(f"{hub.url}/user/alice/echo")
    assert before.status_code == 403
    r = hub.api("POST", "/shares/alice/", json={"user": "dave"})
    assert r.status_code in (200, 201), r.text
    try:
        fresh = hub.login("dave")
        response = hub.get_as(fresh, f"{hub.url}/user/alice/echo")
        assert app_echo(response)["uri"].startswith("/echo")
    finally:
        hub.api("DELETE", "/shares/alice/", json={"user": "dave"})


def test_owner_token_in_header_works_and_never_reaches_the_app(hub):
    token = hub.user_token("alice")
    seen = app_echo(
        requests.get(
            f"{hub.url}/user/alice/echo", headers={"Authorization": f"token {token}"}, timeout=30
        )
    )
    names = {k.lower() for k, _ in seen["headers"]}
    assert "authorization" not in names


def test_identity_cannot_be_forged_and_hub_cookies_stay_with_us(hub):
    session = hub.login("alice")
    forged = json.dumps({"kind": "user", "name": "admin", "admin": True, "groups": []})
    response = session.get(
        f"{hub.url}/user/alice/echo?CDSDASHBOARDS_JH_USER=x&cdsdashboards-jh-user=y",
        headers={
            "X-CDSDASHBOARDS-JH-USER": forged,
            "x-cdsdashboards-jh-user": forged,
            "X_CDSDASHBOARDS_JH_USER": forged,
            "Cookie": "app_cookie=kept",
        },
    )
    seen = app_echo(response)
    identity = [
        v for k, v in seen["headers"] if k.lower().replace("_", "-") == "x-cdsdashboards-jh-user"
    ]
    assert len(identity) == 1
    assert json.loads(identity[0]) == {
        "kind": "user",
        "name": "alice",
        "admin": False,
        "groups": [],
    }
    query = seen["uri"].split("?", 1)[1]
    assert query.count("CDSDASHBOARDS_JH_USER") == 1 and "cdsdashboards-jh-user" not in query
    cookies = " ".join(v for k, v in seen["headers"] if k.lower() == "cookie")
    assert "jupyterhub-" not in cookies


def test_cross_site_post_with_the_owners_cookie_is_refused(hub):
    session = hub.login("alice")
    assert session.get(f"{hub.url}/user/alice/echo").status_code == 200
    same = session.post(
        f"{hub.url}/user/alice/echo",
        data=b"x",
        headers={
            "Origin": hub.url,
            "Sec-Fetch-Site": "same-origin",
            "Referer": f"{hub.url}/user/alice/page",
        },
    )
    assert same.status_code == 200
    for headers in (
        {"Origin": "https://evil.example.org", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example.org"},
        # Another user's page on the same origin:
        {"Origin": hub.url, "Sec-Fetch-Site": "same-origin", "Referer": f"{hub.url}/user/bob/"},
        {"Origin": hub.url, "Sec-Fetch-Site": "same-origin"},
    ):
        refused = session.post(f"{hub.url}/user/alice/echo", data=b"x", headers=headers)
        assert refused.status_code == 403, headers


def test_websocket_matrix(hub):
    ws_url = hub.url.replace("http://", "ws://") + "/user/alice/ws"
    alice = hub.login("alice")
    alice.get(f"{hub.url}/user/alice/echo")
    alice_cookie = "; ".join(f"{c.name}={c.value}" for c in alice.cookies)
    bob = hub.login("bob")
    bob.get(f"{hub.url}/user/alice/echo")
    bob_cookie = "; ".join(f"{c.name}={c.value}" for c in bob.cookies)
    before = hub.log().count("app got GET /ws")
    cases = {
        "owner cookie, same origin": {"Cookie": alice_cookie, "Origin": hub.url},
        "owner token": {"Authorization": f"token {hub.user_token('alice')}"},
        "anonymous": {},
        "other user's cookie": {"Cookie": bob_cookie, "Origin": hub.url},
        "other user's token": {"Authorization": f"token {hub.user_token('bob')}"},
        "owner cookie, foreign origin": {
            "Cookie": alice_cookie,
            "Origin": "https://evil.example.org",
        },
        "owner cookie, cross-site": {
            "Cookie": alice_cookie,
            "Origin": "https://evil.example.org",
            "Sec-Fetch-Site": "cross-site",
        },
    }
    results = {name: asyncio.run(ws_try(ws_url, h)) for name, h in cases.items()}
    assert results["owner cookie, same origin"] == "echo:hello"
    assert results["owner token"] == "echo:hello"
    for name in cases:
        if not name.startswith("owner cookie, same") and name != "owner token":
            assert results[name].startswith("refused:4"), (name, results[name])
    # Only the two allowed handshakes reached the app.
    assert hub.log().count("app got GET /ws") - before == 2


def _last_activity(hub, user: str, name: str = "") -> str:
    return hub.server_model(user, name)["last_activity"]


def _reports_of(hub, when: str | None) -> int:
    """How many activity reports in the hub's log carried the time `when`."""
    return hub.log().count(f"Reported activity at {when} ") if when else 0


def test_activity_moves_with_traffic_and_stays_put_when_idle(hub):
    for name in ("", "named"):
        hub.start_server("alice", name)
        server_path = "/user/alice/" + (f"{name}/" if name else "")
        token = hub.user_token("alice")
        # Quiet: after several reports (one a second), the time reported does not move. The
        # hub's log is every server's: this server's reports are those of the time the hub
        # shows for it (its own idle time, to the microsecond).
        wait_for(
            lambda n=name: _reports_of(hub, _last_activity(hub, "alice", n)) >= 2,
            20,
            what="two activity reports",
        )
        idle = _last_activity(hub, "alice", name)
        reports = _reports_of(hub, idle)
        wait_for(
            lambda i=idle, r=reports: _reports_of(hub, i) >= r + 3,
            20,
            what="three more activity reports",
        )
        assert _last_activity(hub, "alice", name) == idle, name
        # Traffic: the next report carries a later time.
        r = requests.get(
            hub.url + server_path + "echo", headers={"Authorization": f"token {token}"}, timeout=30
        )
        assert r.status_code == 200
        wait_for(
            lambda n=name, i=idle: _last_activity(hub, "alice", n) > i,
            20,
            what=f"activity to move for server {name!r}",
        )


def test_stopping_the_server_from_the_hub_leaves_no_process(hub):
    hub.start_server("alice", "stopme")
    proxy_pid = hub.server_pid("alice", "stopme")
    app_pids = children_of(proxy_pid)
    assert pid_alive(proxy_pid) and app_pids
    hub.stop_server("alice", "stopme")
    wait_for(lambda: not pid_alive(proxy_pid), 20, what="the proxy to exit")
    wait_for(lambda: not any(pid_alive(p) for p in app_pids), 20, what="the app to exit")


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def test_after_a_restart_of_the_proxy_a_hub_user_is_let_in_again_without_a_login(hub):
    """The proxy restarts (a crashed container, say) with the same environment. Its cookie secret
    was its own (the app must not know it), so the old login cookie is void; a viewer still logged
    in to the hub is let in again through the OAuth redirect, without seeing a login form."""
    import signal
    import subprocess

    from conftest import Proxy

    hub.start_server("alice", "restart")
    session = hub.login("alice")
    url = f"{hub.url}/user/alice/restart/echo"
    assert app_echo(session.get(url))["uri"].startswith("/echo")
    old = hub.server_pid("alice", "restart")
    with open(f"/proc/{old}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    env = {k.decode(): v.decode() for k, v in env.items()}
    with open(f"/proc/{old}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    cwd = os.readlink(f"/proc/{old}/cwd")
    port = int(re.search(r":(\d+)/", env["JUPYTERHUB_SERVICE_URL"]).group(1))
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: not pid_alive(old), 20, what="the old proxy to exit")
    log = hub.dir / "restarted-proxy.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    proxy = Proxy(process, port, "/user/alice/restart/", log, hub.dir / "none")
    try:
        proxy.wait_listening()
        old_cookie_only = session.get(url, allow_redirects=False)
        assert old_cookie_only.status_code == 302, "a cookie of the old process was accepted"
        again = session.get(url)  # through the hub's OAuth redirect, no login form on the way
        hops = [r.url for r in again.history]
        assert any("/hub/api/oauth2/authorize" in u for u in hops), hops
        assert any("/user/alice/restart/oauth_callback" in u for u in hops), hops
        assert not any("/hub/login" in u for u in hops), hops
        wait_for(
            lambda: session.get(url, allow_redirects=False).status_code != 503,
            30,
            what="the restarted app",
        )
        assert app_echo(session.get(url, allow_redirects=False))["uri"].startswith("/echo")
    finally:
        proxy.cleanup()


def test_browser_logs_in_and_uses_the_apps_websocket(hub):
    from browser import chromium_page, screenshot

    with chromium_page() as page:
        page.goto(f"{hub.url}/user/alice/wspage")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct horse")
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(re.compile(r".*/user/alice/wspage$"), timeout=30000)
        page.wait_for_function(
            "document.getElementById('out') && "
            "document.getElementById('out').textContent.startsWith('echo:')",
            timeout=20000,
        )
        assert page.inner_text("#out") == "echo: ping-from-browser"
        screenshot(page, "hub-login-to-app-websocket")


def test_hub_unreachable_gives_a_503_page(tmp_path):
    """A server whose hub is gone: a clear 503 page, not a traceback."""
    import subprocess
    import sys

    from conftest import ECHO_APP, Proxy, free_port

    port = free_port()
    dead_hub = f"http://127.0.0.1:{free_port()}/hub/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(
        JUPYTERHUB_API_TOKEN="t" * 32,
        JUPYTERHUB_CLIENT_ID="jupyterhub-user-alice",
        JUPYTERHUB_API_URL=dead_hub,
        JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
        JUPYTERHUB_USER="alice",
        JUPYTERHUB_OAUTH_ACCESS_SCOPES='["access:servers!user=alice"]',
    )
    log = tmp_path / "proxy.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jhsingle_native_proxy",
                "--port",
                str(port),
                "--",
                sys.executable,
                ECHO_APP,
                "{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    proxy = Proxy(process, port, "/user/alice/", log, tmp_path / "none")
    try:
        proxy.wait_listening()
        r = requests.get(
            f"http://127.0.0.1:{port}/user/alice/echo",
            timeout=30,
            headers={**BROWSER, "Authorization": "token abc"},
        )
        assert r.status_code == 503
        assert "cannot be reached" in r.text
        assert "Traceback" not in r.text
    finally:
        proxy.cleanup()


def test_oauth_without_hub_settings_refuses_to_start():
    from conftest import cli_error, run_cli

    result = run_cli(["--", "python3", "-m", "http.server", "{port}"])
    assert "JUPYTERHUB_API_TOKEN" in cli_error(result.stderr, result.returncode)


def test_hub_waits_for_the_app_and_long_starts_do_not_fail_the_spawn(tmp_path):
    """The hub's progress page lasts until the app answers; a start longer than the hub's
    http_timeout still succeeds, and the user then sees our loading page."""
    # The gated apps listen only once the test creates their file: a start lasts as long as the
    # test wants, whatever the machine's speed (--ready-timeout gives them far more than needed).
    gate = tmp_path / "slow-app-may-listen"
    opened = tmp_path / "gated-app-may-listen"
    listening = tmp_path / "gated-app-listening"
    hub = start_hub(
        tmp_path / "hub2",
        http_timeout=12,
        extra={
            "gated": {
                "ip": "localhost",
                "proxy": ["--hub-probe-timeout", "10", "--ready-timeout", "120"],
                "app": ["--wait-for-file", str(opened), "--listening-stamp", str(listening)],
            },
            "slow": {
                "proxy": ["--hub-probe-timeout", "2", "--ready-timeout", "120"],
                "app": ["--wait-for-file", str(gate)],
            },
        },
    )
    try:
        hub.ensure_users("alice")
        token = hub.user_token("alice")
        auth = {"Authorization": f"token {token}"}

        # The hub polls the server as soon as the proxy listens. The proxy holds that poll while
        # its app cannot listen, so the hub must not have called the server ready by then.
        def spawn_gated() -> None:
            opened.unlink(missing_ok=True)
            probes_before = hub.log().count("readiness probe waits")
            spawn = hub.spawn_watching_progress("alice", "gated")
            wait_for(
                lambda: (
                    spawn.ready_at
                    or spawn.failure
                    or hub.log().count("readiness probe waits") > probes_before
                ),
                60,
                what="the hub's readiness probe to reach the proxy",
            )
            assert spawn.ready_at is None and spawn.failure is None, (
                "the hub called the server ready while its app could not listen yet "
                f"({spawn.failure or 'ready'})"
            )
            opened.touch()
            spawn.wait(60)
            assert spawn.ready_at is not None, spawn.failure
            app_listened_at = float(listening.read_text())
            # The hub's "ready" came after the app's port opened, not before it.
            assert spawn.ready_at >= app_listened_at, (spawn.ready_at, app_listened_at)
            print(
                f"gated spawn: ready {spawn.ready_at - spawn.requested_at:.2f} s after the "
                f"request, {spawn.ready_at - app_listened_at:.2f} s after the app listened"
            )

        spawn_gated()
        # Again: the server is on a host name, so JupyterHub 6's client kept the login state
        # cookie of the first probe's answer and brings it back; the probe is still known.
        hub.stop_server("alice", "gated")
        spawn_gated()
        r = requests.get(f"{hub.url}/user/alice/gated/echo", headers=auth, timeout=5)
        assert r.status_code == 200 and r.json()["uri"].startswith("/echo")
        # The probe's shape opens nothing: an anonymous client gets the login, not the app.
        for path in ("", "api"):
            anonymous = requests.get(
                f"{hub.url}/user/alice/gated/{path}", timeout=10, allow_redirects=False
            )
            assert anonymous.status_code in (302, 401), anonymous.status_code
        assert not re.search(r"^app got GET /(api)?$", hub.log(), re.M)

        # Ready in the hub's eyes while the app cannot answer yet: without --hub-probe-timeout
        # the hub would have failed the spawn after its http_timeout of 12 s.
        hub.start_server("alice", "slow", timeout=60)
        page = requests.get(f"{hub.url}/user/alice/slow/", headers={**auth, **BROWSER}, timeout=10)
        assert page.status_code == 503, (page.status_code, page.text[:500])
        assert "Starting the app" in page.text
        gate.touch()
        wait_for(
            lambda: (
                requests.get(
                    f"{hub.url}/user/alice/slow/echo", headers=auth, timeout=30
                ).status_code
                == 200
            ),
            40,
            what="the slow app through the hub",
        )
        assert "didn't respond" not in hub.log()
    finally:
        stop_hub(hub)


def test_internal_ssl(tmp_path):
    """With c.JupyterHub.internal_ssl the server speaks HTTPS with the hub's client certificates,
    refuses clients without one, and reports activity to the hub over TLS too."""
    certs = tmp_path / "certs"
    hub = start_hub(
        tmp_path / "sslhub",
        more=f"""
        c.JupyterHub.internal_ssl = True
        c.ConfigurableHTTPProxy.api_url = f"https://127.0.0.1:{{API_PORT}}"
        c.JupyterHub.internal_certs_location = {str(certs)!r}
        """,
    )
    try:
        hub.start_server("alice")
        session = hub.login("alice")
        assert app_echo(session.get(f"{hub.url}/user/alice/echo"))["uri"].startswith("/echo")
        listening = re.search(r"Listening on (https://127\.0\.0\.1:\d+/user/alice/)", hub.log())
        assert listening, "the server did not serve HTTPS"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(listening.group(1), verify=False, timeout=10)
        wait_for(lambda: "Reported activity" in hub.log(), 20, what="an activity report over TLS")
    finally:
        stop_hub(hub)


def test_idle_culler_culls_the_idle_server_and_spares_the_busy_one(tmp_path):
    # A test dependency (pyproject's `test` extra): missing, this test fails here, not skips.
    import jupyterhub_idle_culler  # noqa: F401

    hub = start_hub(
        tmp_path / "cullhub",
        more="""
        c.JupyterHub.services.append({
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        "--timeout=6", "--cull-every=2"],
        })
        c.JupyterHub.load_roles.append({
            "name": "idle-culler", "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        })
        """,
    )
    try:
        hub.ensure_users("alice")
        hub.start_server("alice", "idle")
        hub.start_server("alice", "busy")
        token = hub.user_token("alice")
        deadline = time.monotonic() + 40
        while hub.server_model("alice", "idle") is not None:
            assert time.monotonic() < deadline, "the idle server was never culled"
            r = requests.get(
                f"{hub.url}/user/alice/busy/echo",
                headers={"Authorization": f"token {token}"},
                timeout=10,
            )
            assert r.status_code == 200
            time.sleep(1)  # a user's pace of traffic, not a wait for a condition
        assert (hub.server_model("alice", "busy") or {}).get("ready"), "the busy one was culled"
    finally:
        stop_hub(hub)
