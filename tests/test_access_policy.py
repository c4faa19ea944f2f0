"""Who may use the app (auth.AccessPolicy), from the JUPYTERHUB_* variables a spawner sets:
the access scopes, JUPYTERHUB_USER, JUPYTERHUB_GROUP and JUPYTERHUB_ANYONE (0.8.3's knobs,
which cdsdashboards-style spawners still set). Unit tests of the decision on hub models, then
JUPYTERHUB_GROUP and JUPYTERHUB_ANYONE with a real JupyterHub."""

from __future__ import annotations

import pytest
import requests

from jhsingle_native_proxy.auth import AccessPolicy
from jhsingle_native_proxy.settings import hub_settings

SCOPES = '["access:servers!server=alice/", "access:servers!user=alice"]'


def policy(**environ: str) -> AccessPolicy:
    """The policy a server spawned with these variables applies (as server.py builds it)."""
    return AccessPolicy.from_hub(hub_settings(environ))


def user(name: str, *, groups=(), scopes=(), kind: str = "user", admin: bool = False) -> dict:
    """A hub model, as `GET /hub/api/user` answers for a token."""
    return {"kind": kind, "name": name, "groups": list(groups), "scopes": list(scopes),
            "admin": admin}  # fmt: skip


def test_the_hubs_access_scopes_let_in_whoever_holds_one():
    p = policy(JUPYTERHUB_OAUTH_ACCESS_SCOPES=SCOPES, JUPYTERHUB_USER="alice")
    assert p.allows(user("alice", scopes=["access:servers!user=alice"]))
    # A group granted access, a share of this server, an admin with access to all servers.
    assert p.allows(user("carol", scopes=["access:servers!user=alice"]))
    assert p.allows(user("dave", scopes=["access:servers!server=alice/"]))
    assert p.allows(user("root", scopes=["access:servers"]))
    assert not p.allows(user("bob", scopes=["access:servers!user=bob", "read:users"]))
    assert not p.allows(user("bob"))


def test_without_scopes_the_named_user_only():
    """JupyterHub < 2 gives no access scopes: JUPYTERHUB_USER decides."""
    p = policy(JUPYTERHUB_USER="alice")
    assert p.allows(user("alice"))
    assert not p.allows(user("bob"))
    assert not p.allows(user("alice", kind="service"))  # a service called alice is not alice


def test_jupyterhub_group_lets_in_the_groups_members():
    p = policy(
        JUPYTERHUB_OAUTH_ACCESS_SCOPES=SCOPES,
        JUPYTERHUB_USER="alice",
        JUPYTERHUB_GROUP=" team , viewers,",  # a comma-separated list, spaces and all
    )
    assert p.groups == {"team", "viewers"}
    assert p.allows(user("erin", groups=["team"]))
    assert p.allows(user("gus", groups=["other", "viewers"]))
    assert not p.allows(user("frank", groups=["other"]))
    assert not p.allows(user("frank"))
    # Groups are users' groups: a service is never let in by them.
    assert not p.allows(user("svc", groups=["team"], kind="service"))
    # The owner is still the owner, and other rules still apply.
    assert p.allows(user("alice", scopes=["access:servers!user=alice"]))
    assert policy(JUPYTERHUB_GROUP="").groups == frozenset()


def test_jupyterhub_anyone_lets_in_everyone_the_hub_knows():
    for value in ("1", "true", "yes", "on", "True"):
        p = policy(JUPYTERHUB_OAUTH_ACCESS_SCOPES=SCOPES, JUPYTERHUB_ANYONE=value)
        assert p.anyone, value
        assert p.allows(user("frank"))
        assert p.allows(user("svc", kind="service"))
    for value in ("", "0", "false", "no"):
        p = policy(JUPYTERHUB_OAUTH_ACCESS_SCOPES=SCOPES, JUPYTERHUB_ANYONE=value)
        assert not p.anyone, value
        assert not p.allows(user("frank"))


# -- with a real JupyterHub -------------------------------------------------------------------

# Each server's extra variables, as a cdsdashboards-style spawner sets them. The hub's harness
# (tests/hub.py) runs this after its own pre-spawn hook.
SPAWN_ENVIRONMENT = """
_harness_hook = c.Spawner.pre_spawn_hook
EXTRA_ENV = {"dave": {"JUPYTERHUB_GROUP": "team"}, "gina": {"JUPYTERHUB_ANYONE": "1"}}

def _with_extra_env(spawner):
    _harness_hook(spawner)
    spawner.environment = {**spawner.environment, **EXTRA_ENV.get(spawner.user.name, {})}

c.Spawner.pre_spawn_hook = _with_extra_env
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub import start_hub, stop_hub

    hub = start_hub(tmp_path_factory.mktemp("hub"), more=SPAWN_ENVIRONMENT)
    try:
        hub.ensure_users("dave", "gina", "erin", "frank")
        hub.api("POST", "/groups/team", json={"users": ["erin"]})
        yield hub
    finally:
        stop_hub(hub)


def get_with_token(hub, user: str, path: str) -> requests.Response:
    token = hub.user_token(user)
    return requests.get(f"{hub.url}{path}", headers={"Authorization": f"token {token}"}, timeout=30)


def test_a_member_of_jupyterhub_group_gets_in_and_others_do_not(hub):
    """dave's server is spawned with JUPYTERHUB_GROUP=team: erin (in team) uses it, frank (in
    no group) gets the 403. Neither holds any of the server's access scopes: only the group
    lets erin in. Tokens, as the hub's own OAuth step would stop frank before us."""
    hub.start_server("dave")
    member = get_with_token(hub, "erin", "/user/dave/echo")
    assert member.status_code == 200, member.text[:300]
    assert "erin" in member.text  # the app was told who is looking (--forward-user-info)
    stranger = get_with_token(hub, "frank", "/user/dave/echo")
    assert stranger.status_code == 403
    assert "frank" in stranger.text and "Traceback" not in stranger.text
    assert get_with_token(hub, "dave", "/user/dave/echo").status_code == 200


def test_jupyterhub_anyone_lets_any_hub_user_in(hub):
    hub.start_server("gina")
    assert get_with_token(hub, "frank", "/user/gina/echo").status_code == 200
    anonymous = requests.get(
        f"{hub.url}/user/gina/echo", headers={"Accept": "application/json"}, timeout=30
    )
    assert anonymous.status_code == 401  # anyone the hub knows: still a hub user
