"""The owner's console at `{prefix}_jhsnp/`: what it shows, what its buttons do, who reaches it."""

from __future__ import annotations

import pytest
import requests
from test_prepare import git, make_upstream

from browser import chromium_page, screenshot
from conftest import console_form, form_token, pid_alive, wait_for
from jhsingle_native_proxy import pages
from jhsingle_native_proxy.console import console_view
from jhsingle_native_proxy.console import form_token as make_form_token
from jhsingle_native_proxy.supervisor import AppState, AppStatus

HTML = {"Accept": "text/html"}
CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
WAIT_MS = 20_000


def console(proxy) -> dict:
    return proxy.get("_jhsnp/console.json", timeout=5).json()


def test_the_console_shows_the_apps_output_live_in_a_browser(start_proxy):
    proxy = start_proxy()
    with chromium_page() as page:
        page.goto(proxy.url("_jhsnp/"))
        assert page.text_content("#state") == "ready"
        assert proxy.get("echo?seen-on-the-console").status == 200
        # The page polls: the line the app printed for that request appears without a reload.
        page.wait_for_function(
            "document.getElementById('lines').textContent"
            ".includes('app got GET /echo?seen-on-the-console')",
            timeout=WAIT_MS,
        )
        assert page.text_content("#restarts") == "0"
        assert page.text_content("#pid") == str(proxy.app_pids()[-1])
        # Wake is for a sleeping app only (its form's display once overrode `hidden`).
        assert not page.is_visible("text=Wake")
        screenshot(page, "console")


def test_the_restart_button_brings_a_new_instance_up_in_a_browser(start_proxy):
    proxy = start_proxy()
    [old_pid] = proxy.app_pids()
    with chromium_page() as page:
        page.goto(proxy.url("_jhsnp/"))
        page.click("text=Restart the app")
        # Back on the console (303), which follows the new instance until it is ready.
        page.wait_for_function(
            "document.getElementById('state').textContent === 'ready'"
            " && document.getElementById('restarts').textContent === '1'",
            timeout=WAIT_MS,
        )
        assert page.url == proxy.url("_jhsnp/")
        new_pid = int(page.text_content("#pid"))
    assert new_pid != old_pid and proxy.app_pids() == [old_pid, new_pid]
    assert not pid_alive(old_pid) and pid_alive(new_pid)
    assert proxy.get("echo").status == 200


def test_a_cross_site_restart_is_refused_and_restarts_nothing(start_proxy):
    proxy = start_proxy()
    before = console(proxy)
    refused = proxy.request("POST", "_jhsnp/restart", headers=CROSS_SITE)
    assert refused.status == 403
    # The same-origin Origin does not help a cross-site request either.
    own = {**CROSS_SITE, "Origin": f"http://127.0.0.1:{proxy.port}"}
    assert proxy.request("POST", "_jhsnp/restart", headers=own).status == 403
    after = console(proxy)
    assert (after["pid"], after["restarts"], after["state"]) == (before["pid"], 0, "ready")
    assert len(proxy.app_pids()) == 1
    assert "asked by" not in proxy.log()


def test_a_restart_asked_by_fetch_is_answered_in_json(start_proxy):
    proxy = start_proxy()
    origin = f"http://127.0.0.1:{proxy.port}"
    sent = console_form(proxy)
    headers = {"Accept": "application/json", "Origin": origin, "Sec-Fetch-Site": "same-origin"}
    headers.update(sent["headers"])
    answer = proxy.request("POST", "_jhsnp/restart", body=sent["body"], headers=headers)
    assert answer.status == 200 and answer.json()["state"] in ("starting", "ready")
    wait_for(lambda: console(proxy)["restarts"] == 1 and console(proxy)["state"] == "ready")


def test_a_console_post_without_its_token_is_refused(start_proxy):
    """Same origin, a Referer under the prefix: all the checks of a shared origin pass, yet
    without the token that only the console's page holds nothing is restarted (issue 18)."""
    proxy = start_proxy()
    before = console(proxy)
    origin = f"http://127.0.0.1:{proxy.port}"
    same_origin = {
        "Origin": origin,
        "Sec-Fetch-Site": "same-origin",
        "Referer": proxy.url("_jhsnp/"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    for body in ("", "_xsrf=", "_xsrf=" + "0" * 64, "other=1"):
        refused = proxy.request("POST", "_jhsnp/restart", body=body, headers=same_origin)
        assert refused.status == 403, (body, refused.status)
        assert b"console's page" in refused.body
    after = console(proxy)
    assert (after["pid"], after["restarts"]) == (before["pid"], 0)
    assert "asked by" not in proxy.log()
    # The token of the page the console served is what makes the difference.
    sent = console_form(proxy)
    answer = proxy.request(
        "POST", "_jhsnp/restart", body=sent["body"], headers={**same_origin, **sent["headers"]}
    )
    assert answer.status == 303


def test_the_form_token_is_the_viewers_on_this_server_only():
    secret = b"s" * 64
    token = make_form_token(secret, "/user/alice/", "alice")
    assert token == make_form_token(secret, "/user/alice/", "alice")
    assert token != make_form_token(secret, "/user/alice/other/", "alice")
    assert token != make_form_token(secret, "/user/alice/", "bob")
    assert token != make_form_token(b"t" * 64, "/user/alice/", "alice")


def test_pull_and_restart_updates_the_checkout_and_keeps_the_users_work(start_proxy, tmp_path):
    upstream = make_upstream(tmp_path)
    proxy = start_proxy(["--repo", f"file://{upstream}", "--repofolder", "work"])
    page = proxy.get("_jhsnp/", headers=HTML)
    assert b"Pull and restart" in page.body
    work = tmp_path / "work"
    (work / "README.md").write_text("my edit\n")
    (work / "notes.txt").write_text("my notes\n")
    (upstream / "new.txt").write_text("from upstream\n")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "more")
    answer = proxy.request("POST", "_jhsnp/pull", **console_form(proxy))
    assert answer.status == 303 and answer.header("Location") == "/user/alice/_jhsnp/"
    wait_for(lambda: console(proxy)["restarts"] == 1 and console(proxy)["state"] == "ready")
    assert (work / "new.txt").read_text() == "from upstream\n"
    assert (work / "README.md").read_text() == "my edit\n"
    assert (work / "notes.txt").read_text() == "my notes\n"


def test_without_a_repo_there_is_no_pull(start_proxy):
    proxy = start_proxy()
    assert b"Pull and restart" not in proxy.get("_jhsnp/", headers=HTML).body
    assert proxy.request("POST", "_jhsnp/pull").status == 404
    assert console(proxy)["restarts"] == 0


def test_the_repos_credentials_never_show_on_the_console(start_proxy):
    proxy = start_proxy(
        ["--repo", "http://alice:s3cr3t@127.0.0.1:1/x.git", "--repofolder", "w"], wait="listening"
    )
    wait_for(lambda: proxy.status().get("state") == "failed", what="the failed checkout")
    page = proxy.get("_jhsnp/", headers=HTML)
    assert page.status == 200
    assert b"127.0.0.1:1/x.git" in page.body and b"s3cr3t" not in page.body
    assert b"could not be prepared" in page.body
    assert b"s3cr3t" not in proxy.get("_jhsnp/console.json").body
    assert page.header("Content-Security-Policy") == "frame-ancestors 'none'"


def test_a_hostile_output_line_is_shown_escaped():
    hostile = "</script><script>alert(1)</script>"
    status = AppStatus(AppState.READY, hostile, [hostile], None, None, 0.0, 2, 7)
    page = pages.console_page(
        console_view(status, now=65.0),
        status_url="/u/_jhsnp/console.json",
        restart_url="/u/_jhsnp/restart",
        pull_url="",
        app_url="/u/",
        repo=hostile,
    )
    assert hostile not in page and "&lt;/script&gt;&lt;script&gt;" in page
    assert page.count("<script") == 1
    assert "1 min 5 s" in page


# -- with a real JupyterHub: the owner and admins, not other users, not anonymous viewers -------


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub import start_hub, stop_hub

    hub = start_hub(tmp_path_factory.mktemp("hub"))
    try:
        hub.ensure_users("alice", "carol", "admin")
        hub.api("POST", "/groups/friends/users", json={"users": ["carol"]})
        hub.start_server("alice")
        yield hub
    finally:
        stop_hub(hub)


def test_the_console_is_the_owners_and_admins_only(hub):
    url = f"{hub.url}/user/alice/_jhsnp/"
    owner = hub.get_as(hub.login("alice"), url)
    assert owner.status_code == 200 and "Restart the app" in owner.text
    assert hub.get_as(hub.login("admin"), url).status_code == 200
    # carol may use alice's app (the friends group), but not its console.
    carol = hub.login("carol")
    assert hub.get_as(carol, f"{hub.url}/user/alice/echo").status_code == 200
    assert hub.get_as(carol, url).status_code == 403
    assert hub.get_as(carol, url + "console.json").status_code == 403
    alice = hub.login("alice")
    before = hub.get_as(alice, url + "console.json").json()
    refused = carol.post(url + "restart", headers={"Referer": url, "Origin": hub.url})
    assert refused.status_code == 403
    after = hub.get_as(alice, url + "console.json").json()
    assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])


def test_a_runs_output_is_downloaded_by_the_owner_only(hub):
    """The output may hold secrets: a run's download has the console's access rules."""
    url = f"{hub.url}/user/alice/_jhsnp/"
    [run] = [r for r in hub.get_as(hub.login("alice"), url + "console.json").json()["runs"]][:1]
    download = f"{url}runs/{run['number']}.txt"
    owner = hub.get_as(hub.login("alice"), download)
    assert owner.status_code == 200 and "echo app listening on" in owner.text
    assert owner.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert owner.headers["Content-Disposition"].startswith("attachment;")
    assert hub.get_as(hub.login("admin"), download).status_code == 200
    carol = hub.get_as(hub.login("carol"), download)
    assert carol.status_code == 403 and "echo app" not in carol.text
    anonymous = requests.get(download, allow_redirects=False, timeout=30)
    assert anonymous.status_code in (401, 302) and "echo app" not in anonymous.text


def test_a_page_of_the_owners_named_server_cannot_restart_the_default_servers_app(hub):
    """`/user/alice/other/x` shares the origin, and its Referer starts with `/user/alice/`: it
    passed every forgery check of the default server's console (issue 18)."""
    url = f"{hub.url}/user/alice/_jhsnp/"
    session = hub.login("alice")
    before = hub.get_as(session, url + "console.json").json()
    other_page = {"Referer": f"{hub.url}/user/alice/other/x", "Origin": hub.url}
    for data in ({}, {"_xsrf": "0" * 64}):
        refused = session.post(url + "restart", data=data, headers=other_page)
        assert refused.status_code == 403, (data, refused.status_code, refused.url)
    after = hub.get_as(session, url + "console.json").json()
    assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])


def test_the_console_is_nothing_to_anonymous_viewers(hub):
    url = f"{hub.url}/user/alice/_jhsnp/"
    page = requests.get(url, allow_redirects=False, timeout=30)
    assert page.status_code == 302 and "/hub/" in page.headers["Location"]
    api = requests.get(url + "console.json", headers={"Accept": "application/json"}, timeout=30)
    assert api.status_code == 401
    assert requests.post(url + "restart", allow_redirects=False, timeout=30).status_code == 401


def test_the_owner_restarts_through_the_hub(hub):
    url = f"{hub.url}/user/alice/_jhsnp/"
    session = hub.login("alice")
    before = hub.get_as(session, url + "console.json").json()
    token = form_token(hub.get_as(session, url).text)
    answer = session.post(
        url + "restart", data={"_xsrf": token}, headers={"Referer": url, "Origin": hub.url}
    )
    assert answer.status_code == 200 and answer.url == url  # 303, then the console
    wait_for(
        lambda: (lambda s: s["state"] == "ready" and s["pid"] != before["pid"])(
            hub.get_as(session, url + "console.json").json()
        ),
        what="the restarted app",
    )
