"""The security review of the console's insight (issue 23): `usage.json`, the runs' downloads,
the /proc readings and the request counter, seen by a hostile client.

Real CLI where the wire matters; the usage reading's own cost as a unit on top. (The owner-only
rule of `usage.json` and `runs/N.txt` with a real hub: tests/test_console.py.)
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
import requests

from conftest import wait_for
from jhsingle_native_proxy import usage_history
from jhsingle_native_proxy.usage_history import LIVE_CPU_WINDOW, UsageHistory

CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


def proxied_requests(proxy) -> int:
    return proxy.get("_jhsnp/usage.json").json()["requests"]


def test_refused_requests_are_not_counted_as_requests_to_the_app(start_proxy):
    """The chart's requests per minute are "requests the proxy passed to the app" (README): a
    flood the proxy refuses (a forged cross-site POST, a foreign Host, a broken websocket
    handshake) reached nothing, and must not make the owner's app look busy. They were counted."""
    proxy = start_proxy()
    before = proxied_requests(proxy)
    for _ in range(5):
        forged = proxy.request("POST", "echo", body=b"x", headers=CROSS_SITE)
        assert forged.status == 403
        foreign = proxy.get("echo", headers={"Host": "evil.example"})
        assert foreign.status == 403
        handshake = proxy.get("ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        assert handshake.status == 426
    assert "app got POST" not in proxy.log()
    assert proxied_requests(proxy) == before
    # What does reach the app is counted, the HTTP requests and the websockets alike.
    assert proxy.get("echo?counted").status == 200
    assert proxied_requests(proxy) == before + 1

    async def one_websocket():
        ws_url = proxy.url("ws").replace("http://", "ws://")
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=10)).data == "hello"

    asyncio.run(asyncio.wait_for(one_websocket(), 60))
    wait_for(lambda: proxied_requests(proxy) == before + 2, what="the websocket counted")


def test_polls_of_the_console_share_one_reading_of_proc(monkeypatch):
    """Each read of console.json, usage.json and the console page scanned all of /proc: every
    process on the machine (another user's thousands, too), about 10 µs each, on the event
    loop, as often as clients asked. Polls within LIVE_CPU_WINDOW now share one scan."""
    scans = []

    def counted(pid):
        scans.append(pid)
        return real(pid)

    real = usage_history.tree_usage
    monkeypatch.setattr(usage_history, "tree_usage", counted)
    usage = UsageHistory()
    pid = os.getpid()
    first = usage.live(pid, now=100.0)
    assert first["processes"] >= 1
    for k in range(100):
        assert usage.live(pid, now=100.0 + k * LIVE_CPU_WINDOW / 200) == first
    assert len(scans) == 1
    # Once the window has passed, or for another pid (a restarted app), a new scan.
    usage.live(pid, now=100.0 + LIVE_CPU_WINDOW)
    usage.live(pid + 1, now=100.0 + LIVE_CPU_WINDOW)
    assert scans == [pid, pid, pid + 1]


# -- with a real JupyterHub: a viewer the app is shared with, and an anonymous one --------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub import start_hub, stop_hub

    hub = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        hub.ensure_users("alice", "carol")
        hub.start_server("alice")
        yield hub
    finally:
        stop_hub(hub)


def test_the_new_console_routes_answer_the_owner_only_however_spelled(hub):
    """carol may use alice's app (her group's scope), not its insight: usage.json (memory, CPU,
    the runs' ends) and the runs' output, under every spelling the route pattern takes, by any
    method. What the pattern does not take goes to the app, after the usual login."""
    url = f"{hub.url}/user/alice/_jhsnp/"
    alice, carol = hub.login("alice"), hub.login("carol")
    assert hub.get_as(carol, f"{hub.url}/user/alice/echo").status_code == 200
    huge = "runs/" + "9" * 300 + ".txt"
    for path in ("usage.json", "runs/1.txt", "runs/01.txt", "runs/1.txt?x=1", huge):
        owner = hub.get_as(alice, url + path)
        assert owner.status_code in (200, 404), path
        for method in ("GET", "HEAD", "POST", "OPTIONS"):
            refused = carol.request(method, url + path, allow_redirects=False, timeout=30)
            assert refused.status_code == 403, (method, path)
            assert "echo app" not in refused.text and "memory" not in refused.text
        anonymous = requests.get(url + path, allow_redirects=False, timeout=30)
        assert anonymous.status_code in (302, 401) and "echo app" not in anonymous.text
    assert hub.get_as(alice, url + "runs/1.txt").headers["Cache-Control"] == "no-store"


def test_anonymous_requests_to_the_app_are_not_counted(hub):
    """An anonymous flood at the app's URLs is sent to the hub's login: it reached nothing, and
    the owner's chart does not count it."""
    alice = hub.login("alice")
    usage = f"{hub.url}/user/alice/_jhsnp/usage.json"
    before = hub.get_as(alice, usage).json()["requests"]
    for _ in range(10):
        anonymous = requests.get(f"{hub.url}/user/alice/echo", allow_redirects=False, timeout=30)
        assert anonymous.status_code == 302
    assert hub.get_as(alice, usage).json()["requests"] == before
