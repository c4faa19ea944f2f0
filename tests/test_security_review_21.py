"""Security review of issue 21 (the repository describes its app): a crafted jhsnp.toml or
README.md front matter, attacked as a collaborator with push rights but no rights on the server.

The repository's code runs as the owner's app anyway, so what matters is what a repository can
make the *proxy* do that the app cannot: stop it (a YAML alias bomb, deep nesting), loosen what
the proxy enforces on the app's answers (cookie paths, service workers, redirects under the
prefix: guarantees 6 and 16), point the proxy's own requests at another host (mappath), or read
files outside the checkout. Real CLI and real git repositories where the proxy's behaviour is the
point; the parser's own refusals as unit tests.
"""

from __future__ import annotations

import json
import os
import sys
from types import MappingProxyType

import pytest
from test_repository_app import Repository, console, start_repo

from conftest import APPS, free_port, wait_for
from jhsingle_native_proxy.given_app import GivenApp
from jhsingle_native_proxy.prepare import NotPrepared
from jhsingle_native_proxy.repository_app import resolve
from jhsingle_native_proxy.repository_manifest import (
    ManifestError,
    front_matter,
    parse_manifest,
    read_description,
    space_description,
)
from jhsingle_native_proxy.settings import Settings

HEADERS_APP = (APPS / "headers_app.py").read_text()
COMMAND = f'command = [{json.dumps(sys.executable)}, "app.py", "{{port}}"]\n'


def alias_bomb(key: str, levels: int = 7) -> str:
    """Front matter whose `key` is a billion-laughs structure: a few hundred bytes of YAML,
    9**levels strings once expanded (safe_load keeps the aliases shared; str() does not)."""
    lines = ["---", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    if key != "sdk":
        lines.append("sdk: gradio")
    return "\n".join([*lines, f"{key}: *a{levels}", "---", ""])


@pytest.mark.parametrize("key", ["sdk", "sdk_version"])
def test_a_yaml_alias_bomb_in_a_space_is_refused_without_expanding_it(tmp_path, key):
    # Expanded by str(), a bomb of 9 levels takes the proxy's event loop for half a minute and
    # gigabytes of memory (the whole server, console included, stops answering); 7 levels keep
    # this test quick either way: expanded, the owner's one line would be 300 MB.
    front = front_matter(alias_bomb(key))
    assert front is not None
    with pytest.raises(ManifestError) as refused:
        space_description(front, str(tmp_path))
    message = str(refused.value)
    assert len(message) < 300, message[:300]
    assert key in message


@pytest.mark.parametrize(
    "text",
    [
        "command = " + "[" * 20000 + "]" * 20000,
        "command = " + "{a=" * 20000 + "1" + "}" * 20000,
    ],
)
def test_deeply_nested_toml_is_a_manifest_error_not_a_recursion_error(tmp_path, text):
    with pytest.raises(ManifestError, match="nested"):
        parse_manifest(text, str(tmp_path))


def test_deeply_nested_front_matter_is_a_manifest_error(tmp_path):
    (tmp_path / "README.md").write_text("---\nsdk: " + "[" * 20000 + "]" * 20000 + "\n---\n")
    with pytest.raises(ManifestError, match="nested"):
        read_description(str(tmp_path))


def probe_settings(folder) -> Settings:
    return Settings(
        command=(),
        repo="file:///repo",
        repofolder=str(folder),
        given_app=GivenApp(deferred=True),
        environ=MappingProxyType(dict(os.environ)),
    )


@pytest.mark.parametrize(
    "source",
    [
        "import streamlit\nx = " + "-" * 200000 + "1\n",  # MemoryError from the parser
        "import streamlit\nx = 1" + "+1" * 400000 + "\n",  # RecursionError building the tree
    ],
)
def test_an_app_py_that_breaks_the_parser_gives_the_owner_one_line(tmp_path, source):
    # Inference reads app.py by what it imports: a file the parser cannot take is "imports
    # none", one line for the owner, never an exception the supervisor logs as a bug of ours.
    (tmp_path / "app.py").write_text(source)
    with pytest.raises(NotPrepared, match="imports none"):
        resolve(probe_settings(tmp_path))


@pytest.mark.parametrize(
    "value",
    [
        "@127.0.0.1:9/",  # `http://127.0.0.1:PORT@127.0.0.1:9/`: another host, PORT as a password
        ".evil.example/",
        "x",
        "/a\r\nX-Injected: 1",
        "/a b",
    ],
)
def test_a_mapped_path_that_is_no_path_on_the_app_is_refused(tmp_path, value):
    text = f'{COMMAND}[mappath]\n"/" = {json.dumps(value)}\n'
    with pytest.raises(ManifestError, match="mappath"):
        parse_manifest(text, str(tmp_path))


def test_a_manifest_linked_from_outside_the_checkout_is_not_read(tmp_path):
    outside = tmp_path / "outside.toml"
    outside.write_text(COMMAND)
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / "jhsnp.toml").symlink_to(outside)
    with pytest.raises(ManifestError, match="link"):
        read_description(str(folder))
    # /proc/self/environ holds the proxy's own secrets: never read as a manifest.
    (folder / "jhsnp.toml").unlink()
    (folder / "jhsnp.toml").symlink_to("/proc/self/environ")
    with pytest.raises(ManifestError, match="link"):
        read_description(str(folder))


def test_the_repository_cannot_switch_off_cookie_and_worker_confinement(start_proxy, tmp_path):
    # `absolute_url = true` (or `app = "bokeh"`) is the repository's to say for the app's own
    # paths, but the proxy's confinement of the app's cookies, service workers and redirects
    # under the prefix (guarantee 6) follows the command line only (guarantee 16).
    repo = Repository(tmp_path / "repo", {
        "jhsnp.toml": COMMAND + "absolute_url = true\n",
        "app.py": HEADERS_APP,
    })  # fmt: skip
    proxy = start_repo(start_proxy, tmp_path, repo)
    # The app sees the whole URL (the repository's absolute_url holds for that)...
    ok = proxy.get("?h=X-Probe:1", timeout=10)
    assert ok.status == 200 and ok.header("X-Probe") == "1"
    # ...but its cookie for the whole origin stays under the prefix,
    r = proxy.get("?h=Set-Cookie:sid=1;%20Path=/;%20HttpOnly", timeout=10)
    assert r.status == 200
    assert r.header("Set-Cookie") == "sid=1; Path=/user/alice/; HttpOnly"
    # ...one meant for another user's server too,
    r = proxy.get("?h=Set-Cookie:sid=1;%20Path=/user/bob/", timeout=10)
    assert r.header("Set-Cookie") == "sid=1; Path=/user/alice/user/bob/"
    # ...its redirects stay under the prefix,
    r = proxy.get("?h=Location:/user/bob/", timeout=10)
    assert r.header("Location") == "/user/alice/user/bob/"
    # ...and no worker of its can answer for the whole origin (this held before the review).
    r = proxy.get("?h=Service-Worker-Allowed:/", timeout=10)
    assert r.status == 200 and r.header("Service-Worker-Allowed") in (None, "/user/alice/")


def test_a_mapped_path_cannot_send_a_viewer_to_another_host(start_proxy, tmp_path):
    # The proxy's own request would go to `http://127.0.0.1:APP@127.0.0.1:OTHER/`: the other
    # server gets the viewer's request. Refused: the app does not start, the owner reads why.
    other = free_port()
    repo = Repository(tmp_path / "repo", {
        "jhsnp.toml": COMMAND + f'[mappath]\n"/elsewhere" = "@127.0.0.1:{other}/"\n',
        "app.py": HEADERS_APP,
    })  # fmt: skip
    proxy = start_repo(start_proxy, tmp_path, repo, wait="listening")
    proxy.get("", timeout=10)  # a first visit starts the checkout
    wait_for(lambda: proxy.status().get("state") == "failed", 30, what="the refusal")
    assert any("mappath" in line for line in console(proxy)["lines"])


def test_a_python_tag_in_the_front_matter_is_refused_and_never_run(tmp_path):
    # Held before the review (safe_load): kept, as the one attack here that would run code in
    # the proxy itself rather than in the app.
    marker = tmp_path / "ran"
    (tmp_path / "README.md").write_text(
        f"---\nsdk: !!python/object/apply:os.system ['touch {marker}']\n---\n"
    )
    with pytest.raises(ManifestError, match="not valid YAML"):
        read_description(str(tmp_path))
    assert not marker.exists()


def test_a_command_line_mapped_path_stays_a_path_on_the_app(start_proxy):
    # The admin's own --mappath (or a config's callable) is written after the app's origin too:
    # `@127.0.0.1:OTHER/` sent the viewer's request to another server. It stays on the app.
    other = start_proxy(prefix="/other/")  # a second server that would answer
    proxy = start_proxy(["--mappath", f"/elsewhere=@127.0.0.1:{other.port}/echo"])
    proxy.get("elsewhere", timeout=10)
    proxy.wait_log(f"app got GET /@127.0.0.1:{other.port}/echo")
    assert "app got GET /echo" not in other.log()
