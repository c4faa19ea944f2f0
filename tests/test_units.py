"""Pure logic, tested on its own: templates, header hygiene, redirects, singleuser flags."""

from __future__ import annotations

import pytest

from jhsingle_native_proxy import command
from jhsingle_native_proxy.cli import split_singleuser_traits
from jhsingle_native_proxy.proxy import headers as h


def test_substitute_fills_known_names_and_literal_braces():
    values = {"port": 9000, "base_url": "/user/a"}
    assert command.substitute_all(
        ["--port={port}", "{base_url}/", "{--}x", "{-}m", "{{json}}"], values
    ) == ["--port=9000", "/user/a/", "--x", "-m", "{json}"]


@pytest.mark.parametrize("bad", ["{prot}", "{port", "port}", "{a:b}"])
def test_placeholders_reject_typos_and_unbalanced_braces(bad):
    with pytest.raises(command.TemplateError):
        command.placeholders([bad])


def test_placeholders_lists_what_a_command_uses():
    assert command.placeholders(["x", "{port}", "{origin_host}:{port}", "{--}y"]) == {
        "port",
        "origin_host",
    }


def test_singleuser_traits_are_taken_out_and_app_options_kept():
    rest, traits = split_singleuser_traits(
        [
            "--SingleUserNotebookApp.default_url=/x",
            "streamlit",
            "--server.port",
            "1",
            "--ServerApp.root_dir",
            "/home/a",
            "--NotebookApp.allow_origin=*",
        ]
    )
    assert rest == ["streamlit", "--server.port", "1", "--NotebookApp.allow_origin=*"]
    assert traits == {"SingleUserNotebookApp.default_url": "/x", "ServerApp.root_dir": "/home/a"}


def test_identity_header_is_dropped_in_every_spelling():
    pairs = [
        ("X-CDSDASHBOARDS-JH-USER", "a"),
        ("x_cdsdashboards_jh_user", "b"),
        ("X-Cdsdashboards-Jh_User", "c"),
        ("Accept", "*/*"),
    ]
    out = h.request_headers_for_app(
        pairs, [], client_ip="1.2.3.4", protocol="http", host="h", prefix="/p"
    )
    assert [n for n, _ in out if "cdsdashboards" in n.lower().replace("_", "-")] == []


@pytest.mark.parametrize(
    "query, expected",
    [
        ("a=1&CDSDASHBOARDS_JH_USER=x&b=%2F", "a=1&b=%2F"),
        ("cdsdashboards-jh-user=x", ""),
        ("CDSDASHBOARDS%5FJH%5FUSER=x&flag", "flag"),
        ("a=1&a=2&flag", "a=1&a=2&flag"),
    ],
)
def test_identity_query_argument_is_dropped_in_every_spelling(query, expected):
    assert h.strip_query_arg(query) == expected


@pytest.mark.parametrize(
    "location, expected",
    [
        ("/x", "/user/a/x"),
        ("/user/a", "/user/a"),
        ("/user/a/x?y", "/user/a/x?y"),
        ("/user/ab", "/user/a/user/ab"),
        ("//cdn.example.org/x", "//cdn.example.org/x"),
        ("x/y", "x/y"),
        ("http://127.0.0.1:5000/z?q#f", "/user/a/z?q#f"),
        ("http://localhost:5000", "/user/a/"),
        ("http://127.0.0.1:5001/z", "http://127.0.0.1:5001/z"),
        ("https://example.org/z", "https://example.org/z"),
    ],
)
def test_rewrite_location(location, expected):
    assert h.rewrite_location(location, "/user/a", 5000) == expected


def test_rewrite_location_at_the_root_prefix_changes_nothing():
    assert h.rewrite_location("/x", "", 5000) == "/x"


def test_connection_listed_headers_are_hop_by_hop_in_responses():
    out = h.response_headers_for_client(
        [("Connection", "X-A"), ("X-A", "1"), ("Set-Cookie", "a"), ("Set-Cookie", "b")],
        ["X-A"],
    )
    assert out == [("Set-Cookie", "a"), ("Set-Cookie", "b")]


def test_page_scripts_are_valid_javascript(tmp_path):
    """A broken script leaves a person on a page that never moves on: have node parse it."""
    import re
    import shutil
    import subprocess

    from jhsingle_native_proxy import pages

    node = shutil.which("node")
    assert node, "node is needed (it comes with configurable-http-proxy)"
    page = pages.loading_page("/user/a/_jhsnp/status", "Getting x", ["a", "b"], "crashed")
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    path = tmp_path / "page.js"
    path.write_text(script)
    result = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
