"""Publish mode behind a real JupyterHub: the revisions (JSON, output of failures) and their
buttons are the owner's and admins', like the console; a shared viewer gets 403, anonymous
viewers 401, and nothing moves."""

from __future__ import annotations

import requests
from test_follow import Upstream

from conftest import form_token


def test_the_revisions_are_the_owners_and_admins_only(tmp_path):
    from hub import start_hub, stop_hub

    upstream = Upstream(tmp_path / "upstream")
    follow = ["--repo", upstream.url, "--repobranch", "main", "--follow"]
    follow += ["--repofolder", str(tmp_path / "published"), "--follow-interval", "0"]
    hub = start_hub(tmp_path / "hub", extra={"": {"proxy": follow}})
    try:
        hub.ensure_users("alice", "carol", "admin")
        hub.start_server("alice")
        url = f"{hub.url}/user/alice/_jhsnp/"
        alice, admin, carol = hub.login("alice"), hub.login("admin"), hub.login("carol")
        owner = hub.get_as(alice, url + "revisions.json")
        assert owner.status_code == 200 and owner.json()["live"]["subject"] == "version v1"
        assert hub.get_as(admin, url + "revisions.json").status_code == 200
        # carol may use alice's app (the friends group), not its revisions nor their buttons.
        assert hub.get_as(carol, f"{hub.url}/user/alice/echo").status_code == 200
        assert hub.get_as(carol, url + "revisions.json").status_code == 403
        upstream.push("v2")
        token = form_token(hub.get_as(alice, url).text)  # even with the owner's form token
        same_site = {"Referer": url, "Origin": hub.url}
        for action in ("update", "rollback", "follow"):
            refused = carol.post(url + action, data={"_xsrf": token}, headers=same_site)
            assert refused.status_code == 403, (action, refused.status_code)
            anonymous = requests.post(url + action, allow_redirects=False, timeout=30)
            assert anonymous.status_code == 401
        after = hub.get_as(alice, url + "revisions.json").json()
        # No update ran: the branch was not even looked at again since the start.
        assert after["live"]["subject"] == "version v1"
        assert after["remote_head"] == owner.json()["live"]["commit"]
        assert len(after["revisions"]) == 1
    finally:
        stop_hub(hub)
