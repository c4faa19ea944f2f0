"""Security review of the presets and the owner's console (issue 14): regressions for what it
found. Each test failed before its fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
from test_console_live import ask_restart, console
from test_presets import serve, settings_for

from conftest import wait_for
from jhsingle_native_proxy import presets
from jhsingle_native_proxy.launch import build_launch

HOSTILE_DIR = "it's '+system('touch PWNED')+' \\ dir"


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(presets, "check_installed", lambda name, environ: None)


def launched(*argv: str):
    settings = settings_for(*argv)
    return build_launch(settings, 4321)


# -- the shiny preset built R code from the path: a quote in it ran R code ----------------------


def test_shiny_path_never_becomes_r_code(tmp_path, installed):
    app = tmp_path / HOSTILE_DIR
    app.mkdir()
    (app / "app.R").write_text("library(shiny)\n")
    launch = launched("--app", "shiny", "--presentation-path", str(app))
    assert not any(str(app) in word for word in launch.argv), launch.argv
    assert launch.env["JHSNP_SHINY_APP"] == str(app)


@pytest.mark.skipif(not shutil.which("R"), reason="R is not installed")
def test_shiny_path_with_a_quote_runs_no_r_code(tmp_path, installed):
    app = tmp_path / "'+system('touch PWNED')+'"
    app.mkdir()
    (app / "app.R").write_text("stop('not served in this test')\n")
    launch = launched("--app", "shiny", "--presentation-path", str(app))
    subprocess.run(launch.argv, env=launch.env, cwd=tmp_path, capture_output=True, timeout=60)
    assert not (tmp_path / "PWNED").exists()


# -- {presentation_stem} was filled in before the placeholders: a file's name was a template ----


def test_a_file_name_with_braces_is_text_not_a_placeholder(tmp_path, installed):
    for name in ("{port}.py", "{nope}.py"):
        app = tmp_path / name
        app.write_text("import panel\n")
        argv = launched("--app", "panel", "--presentation-path", str(app)).argv
        assert argv[argv.index("--index") + 1] == name[:-3]


# -- the static server followed symbolic links out of its folder, and to dot files ------------


def test_static_follows_no_link_out_of_its_folder_or_to_a_dot_file(tmp_path):
    site, secret = tmp_path / "site", tmp_path / "home"
    site.mkdir()
    secret.mkdir()
    (site / "index.html").write_text("<h1>report</h1>")
    (site / ".env").write_text("TOKEN=in-the-folder")
    (site / "data.csv").write_text("a,b\n")
    (secret / ".env").write_text("TOKEN=outside")
    (secret / "notes.txt").write_text("private")
    os.symlink(secret / ".env", site / "innocent.txt")
    os.symlink(secret, site / "linked")
    os.symlink(site / ".env", site / "env.txt")
    os.symlink(site / "data.csv", site / "alias.csv")
    process, get = serve(site)
    try:
        assert get("/alias.csv")[::2] == (200, b"a,b\n")  # a link within the folder still works
        for path in ("/innocent.txt", "/linked/notes.txt", "/linked/", "/env.txt"):
            assert get(path)[0] == 404, path
    finally:
        process.terminate()
        process.wait(10)


def test_static_follows_no_link_out_of_its_folder_through_an_index_file(tmp_path):
    """A folder is served by its index.html, which may be a link too: `/sub/` must not serve
    what `sub/index.html -> ../../secret.txt` points at."""
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "inner").mkdir()
    (tmp_path / "secret.txt").write_text("outside the folder")
    (site / "page.html").write_text("<h1>page</h1>")
    os.symlink(tmp_path / "secret.txt", site / "sub" / "index.html")
    os.symlink(site / "page.html", site / "inner" / "index.html")
    process, get = serve(site)
    try:
        assert get("/sub/")[0] == 404
        assert get("/inner/")[::2] == (200, b"<h1>page</h1>")  # a link within the folder works
    finally:
        process.terminate()
        process.wait(10)


# -- the console read a request's body before it authorised the request -----------------------


def test_a_refused_console_post_is_answered_before_its_body_is_read(start_proxy):
    proxy = start_proxy()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(
            (
                f"POST {proxy.prefix}_jhsnp/restart HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{proxy.port}\r\n"
                "Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n"
                "Content-Length: 60000\r\n\r\n"
            ).encode()
        )
        started = time.monotonic()
        answer = s.recv(4096)  # no body sent: only an answer before reading it comes back
    assert answer.startswith(b"HTTP/1.1 403"), answer[:100]
    assert time.monotonic() - started < 5
    # That it restarted nothing shows only after a moment in which a restart would have shown:
    # an allowed Restart, asked now and seen through. Had the refused one acted too, the log
    # would name two, and the console count two.
    assert ask_restart(proxy).status == 200
    wait_for(
        lambda: console(proxy)["restarts"] >= 1 and console(proxy)["state"] == "ready",
        30,
        what="the allowed restart",
    )
    assert proxy.log().count("asked by") == 1
    assert console(proxy)["restarts"] == 1 and len(proxy.app_pids()) == 2
