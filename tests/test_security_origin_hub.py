"""Issue 18, items 2 and 10, with a real JupyterHub's users: a viewer the hub lets in (carol, by
her group) is not the owner (alice). Each test fails on the code before the fix."""

from __future__ import annotations

import re

import pytest

from conftest import wait_for
from hub import start_hub, stop_hub

REPO_PATH = "/nonexistent/SECRET-REPO-PATH"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    extra = {
        # The command needs {origin_host}: it waits for a visit that may give it.
        "origin": {"app": ["--say", "origin-host={origin_host}"]},
        # A checkout that fails, with a server path in its reason.
        "badrepo": {"proxy": ["--repo", f"file://{REPO_PATH}"]},
    }
    hub = start_hub(tmp_path_factory.mktemp("hub"), extra=extra)
    try:
        hub.ensure_users("alice", "carol", "admin")
        hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
        hub.start_server("alice", "origin")
        hub.start_server("alice", "badrepo")
        yield hub
    finally:
        stop_hub(hub)


def hosts_said(hub) -> list[str]:
    """The `{origin_host}` of each start of the "origin" app, as the app printed it."""
    return re.findall(r"out\| origin-host=(\S*)", hub.log())


def as_host(session, host: str) -> dict[str, str]:
    """Headers for a request that names `host`, with the session's cookies: requests matches
    its cookies against the Host header, not the URL, so they are given by hand."""
    return {"Host": host, "Cookie": "; ".join(f"{c.name}={c.value}" for c in session.cookies)}


def test_a_shared_viewer_cannot_choose_origin_host(hub):
    """A viewer's `Host: attacker.example` was kept as `{origin_host}` for every later start."""
    url = f"{hub.url}/user/alice/origin/"
    carol = hub.login("carol")
    # Through the login, to a page that does not ask for the app.
    assert hub.get_as(carol, url + "_jhsnp/status").json()["state"] == "waiting"
    for headers in (as_host(carol, "attacker.example"), {}):
        page = carol.get(url + "echo", headers=headers, allow_redirects=False, timeout=30)
        assert page.status_code == 503, page.text[:300]
        assert "owner" in page.text
    assert hosts_said(hub) == []
    # The owner's visit gives it, and starts the app.
    alice = hub.login("alice")
    hub.get_as(alice, url + "echo")
    wait_for(lambda: hosts_said(hub), 30, what="the app to start")
    assert hosts_said(hub) == [hub.url.removeprefix("http://")]
    # The viewer reaches the app now, with whatever Host: nothing of it is kept.
    wait_for(
        lambda: carol.get(url + "echo", headers=as_host(carol, "attacker.example")).ok,
        30,
        what="the app to answer carol",
    )
    assert hosts_said(hub) == [hub.url.removeprefix("http://")]


def _failed(hub, session, url: str, path: str) -> dict | str:
    def answer():
        response = hub.get_as(session, url + path, headers={"Accept": "text/html,*/*"})
        if path.endswith("status"):
            status = response.json()
            return status if status.get("state") == "failed" else None
        return response.text if "could not be prepared" in response.text else None

    return wait_for(answer, 40, interval=0.3, what=f"the failed checkout at {path}")


def test_a_failed_checkouts_reason_is_for_the_owner_and_admins(hub):
    """The reason names server paths, git's text and the repository: like the output, not for
    every viewer."""
    url = f"{hub.url}/user/alice/badrepo/"
    for user, sees in (("alice", True), ("admin", True), ("carol", False)):
        session = hub.login(user)
        status = _failed(hub, session, url, "_jhsnp/status")
        page = _failed(hub, session, url, "x")
        assert (REPO_PATH in status["reason"]) is sees, (user, status)
        assert (REPO_PATH in page) is sees, user
        assert "SECRET-REPO-PATH" not in status["phase"]
        if not sees:
            assert status["reason"] == "could not be prepared; its owner can see why"
            assert "SECRET-REPO-PATH" not in str(status)


def test_a_public_url_without_subdomains_still_means_one_shared_origin(tmp_path):
    """JupyterHub 5+ sets JUPYTERHUB_HOST from `public_url` although every server still shares
    the hub's origin: a same-origin POST that names no page of ours (another user's page, with
    `Referrer-Policy: no-referrer`) must still be refused. It passed when JUPYTERHUB_HOST was
    read as "subdomains"."""
    more = 'c.JupyterHub.public_url = f"http://127.0.0.1:{c.JupyterHub.port}/"\n'
    hub = start_hub(tmp_path / "hub", more=more)
    try:
        hub.ensure_users("alice")
        hub.start_server("alice")
        session = hub.login("alice")
        url = f"{hub.url}/user/alice/echo"
        assert hub.get_as(session, url).status_code == 200
        forged = session.post(url, data="x", headers={"Origin": hub.url}, allow_redirects=False)
        assert forged.status_code == 403, forged.status_code
        ours = session.post(
            url, data="x", headers={"Origin": hub.url, "Referer": f"{hub.url}/user/alice/page"}
        )
        assert ours.status_code == 200, ours.status_code
    finally:
        stop_hub(hub)
