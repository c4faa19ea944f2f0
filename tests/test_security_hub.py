"""Issue 9's findings that need real JupyterHub users: the owner, a viewer the hub lets in, an
admin. Each test fails on the code before the fix."""

from __future__ import annotations

import pytest
import requests

from conftest import wait_for
from hub import BROWSER, start_hub, stop_hub

SECRET = "SECRET-abc123-in-the-apps-output"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # "crashy" prints a secret, then fails to listen and exits: its output is on every page.
    extra = {
        "crashy": {"app": ["--say", SECRET, "--unix", "/nonexistent/dir/app.sock"]},
        # A server whose hub lets a token in the URL log a viewer in (issue 18, finding 5).
        "tokenurl": {"env": {"JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}},
    }
    hub = start_hub(tmp_path_factory.mktemp("hub"), extra=extra)
    try:
        hub.ensure_users("alice", "carol", "admin")
        hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
        hub.start_server("alice")
        hub.start_server("alice", "crashy")
        hub.start_server("alice", "tokenurl")
        yield hub
    finally:
        stop_hub(hub)


def test_a_cross_site_subresource_read_with_the_owners_cookie_is_refused(hub):
    """Finding 8: another site's `<img>`/`<script>` must not read the app as its owner."""
    session = hub.login("alice")
    assert session.get(f"{hub.url}/user/alice/echo").status_code == 200
    embedded = session.get(
        f"{hub.url}/user/alice/echo?embedded",
        headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
        allow_redirects=False,
    )
    assert embedded.status_code == 403
    # Following a link from another site is still a visit.
    followed = session.get(
        f"{hub.url}/user/alice/echo?followed",
        headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        allow_redirects=False,
    )
    assert followed.status_code == 200
    assert "app got GET /echo?embedded" not in hub.log()


def test_identity_forged_behind_a_semicolon_never_reaches_the_app(hub):
    """Finding 9: `a=1;CDSDASHBOARDS_JH_USER=x` is a forged identity for `;`-splitting apps."""
    session = hub.login("alice")
    response = session.get(f"{hub.url}/user/alice/echo?a=1;CDSDASHBOARDS_JH_USER=forged")
    uri = response.json()["uri"]
    assert "forged" not in uri
    assert uri.startswith("/echo?a=1&CDSDASHBOARDS_JH_USER=")


def _crashy_pages(hub, session) -> tuple[str, dict]:
    """The page a viewer gets for the crashing app while it is down, and its status JSON."""
    url = f"{hub.url}/user/alice/crashy/"

    def failed_page():
        page = hub.get_as(session, url + "x")
        return page.text if "The app is not running" in page.text else None

    def failed_status():
        response = hub.get_as(session, url + "_jhsnp/status", headers={"Accept": "*/*"})
        if response.headers.get("Content-Type", "").startswith("application/json"):
            status = response.json()
            return status if status.get("state") == "failed" else None
        return None

    page = wait_for(failed_page, 40, interval=0.3, what="the crashing app's failure page")
    status = wait_for(failed_status, 40, interval=0.3, what="the crashing app to be failed")
    return page, status


def test_the_apps_output_is_shown_to_the_owner_and_admins_only(hub):
    """Finding 10: tracebacks and tokens in the app's output are for its owner."""
    owner_page, owner_status = _crashy_pages(hub, hub.login("alice"))
    assert SECRET in owner_page
    assert any(SECRET in line for line in owner_status["lines"])
    admin_page, _ = _crashy_pages(hub, hub.login("admin"))
    assert SECRET in admin_page
    viewer_page, viewer_status = _crashy_pages(hub, hub.login("carol"))
    assert SECRET not in viewer_page
    assert viewer_status["lines"] == []
    assert "could not" in viewer_status["reason"] or "exited" in viewer_status["reason"]


def test_a_script_that_follows_redirects_logs_in_like_a_browser(hub):
    """jupyterhub-singleuser redirects an anonymous GET to the login, whatever its Accept."""
    session = requests.Session()
    response = session.get(f"{hub.url}/user/alice/echo", timeout=30)
    assert "/hub/login" in response.url
    form = session.get(f"{hub.url}/hub/login", headers=BROWSER, timeout=30)
    assert form.status_code == 200
    api = requests.get(
        f"{hub.url}/user/alice/echo",
        headers={"Accept": "application/json"},
        allow_redirects=False,
        timeout=30,
    )
    assert api.status_code == 401


def test_a_flood_of_anonymous_visits_does_not_break_a_login_in_progress(hub):
    """Pending logins cost the proxy nothing, so no number of them can evict a real one (a
    bounded store of them could be emptied by anonymous requests while the owner logs in)."""
    from concurrent.futures import ThreadPoolExecutor

    session = hub.login("alice")  # at the hub only: not yet at alice's server
    start = session.get(f"{hub.url}/user/alice/deep?x=1", allow_redirects=False)
    assert start.status_code == 302 and "oauth2/authorize" in start.headers["Location"]

    def anonymous(_):
        return requests.get(
            f"{hub.url}/user/alice/flood", allow_redirects=False, timeout=30
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(anonymous, range(2500))) == {302}
    finished = session.get(hub.url + start.headers["Location"])
    assert finished.status_code == 200, finished.text[:300]
    assert finished.json()["uri"].startswith("/deep?x=1")


def test_a_hub_token_in_the_url_never_reaches_the_app(hub):
    """JupyterHub 5+ ignores `?token=` by default; the proxy must still not pass it on."""
    session = hub.login("alice")
    uri = session.get(f"{hub.url}/user/alice/echo?token=abc123&x=1").json()["uri"]
    assert "abc123" not in uri and uri.startswith("/echo?x=1")


def test_a_token_in_the_url_is_taken_out_of_the_address_and_the_referer(hub):
    """Issue 18, finding 5: with JUPYTERHUB_ALLOW_TOKEN_IN_URL, `?token=` logs the viewer in;
    the page must not keep it in its address, where every request it makes would hand it to
    the app in Referer."""
    token = hub.user_token("alice")
    server = f"{hub.url}/user/alice/tokenurl/"
    session = requests.Session()
    session.headers.update(BROWSER)
    page_load = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none"}
    first = session.get(
        f"{server}echo?token={token}&x=1", headers=page_load, allow_redirects=False, timeout=30
    )
    assert first.status_code == 302, first.text[:300]
    assert first.headers["Location"] == "/user/alice/tokenurl/echo?x=1"
    assert session.cookies.get("jupyterhub-user-alice-tokenurl")
    # The cookie logs the viewer in at the address without the token; a page that still has
    # the token in its address (opened before) sends it in Referer, which the app gets without.
    referer = f"{server}page?token={token}&y=2"
    seen = session.get(
        hub.url + first.headers["Location"], headers={"Referer": referer}, timeout=30
    ).json()
    assert seen["uri"].startswith("/echo?x=1")
    assert [v for k, v in seen["headers"] if k.lower() == "referer"] == [f"{server}page?y=2"]
    assert not any(token in value for _, value in seen["headers"])
    assert token not in hub.log()
