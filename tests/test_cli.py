"""The command line, through the real CLI: options, substitutions, singleuser flags, bad input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest

from conftest import ECHO_APP, cli_error, free_port, run_cli

OPTIONS_OF_0_8_3 = [
    "--port",
    "--destport",
    "--ip",
    "--presentation-path",
    "--debug",
    "--no-debug",
    "--logs",
    "--no-logs",
    "--authtype",
    "--request-timeout",
    "--last-activity-interval",
    "--force-alive",
    "--no-force-alive",
    "--ready-check-path",
    "--ready-timeout",
    "--repo",
    "--repobranch",
    "--repofolder",
    "--conda-env",
    "--allow-root",
    "--NotebookApp.allow_origin",
    "--forward-user-info",
    "--query-user-info",
    "--progressive",
    "--websocket-max-message-size",
    "--aiohttp-no-ssl-connector",
    "--aiohttp-request-timeout",
]


def app_argv(proxy) -> list[str]:
    match = re.search(r"echo app argv: (\[.*\])", proxy.log())
    assert match, proxy.log()
    return json.loads(match.group(1))


def test_version_and_module_entry_point():
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert re.search(r"\d+\.\d+", result.stdout)


def test_help_lists_every_option_of_0_8_3():
    result = run_cli(["--help"])
    assert result.returncode == 0
    missing = [o for o in OPTIONS_OF_0_8_3 if o not in result.stdout]
    assert not missing


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--authtype", "none"], "no command given"),
        (["--authtype", "none", "--no-such-flag", "--", "true"], "No such option '--no-such-flag'"),
        (["--authtype", "none", "--", "app", "{prot}"], "unknown placeholder {prot}"),
        (["--authtype", "none", "--", "app", "{port"], "unbalanced '{'"),
        (["--authtype", "bogus", "--", "true"], "Invalid value for '--authtype'"),
        (["--ready-timeout", "soon", "--", "true"], "Invalid value for '--ready-timeout'"),
    ],
)
def test_bad_input_is_a_usage_error_in_clicks_shape(args, expected):
    result = run_cli(args)
    assert result.returncode == 2
    assert not result.stdout
    assert expected in cli_error(result.stderr, 2)


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            [
                "--authtype",
                "none",
                "--port",
                str(port),
                "--ip",
                "127.0.0.1",
                "--",
                sys.executable,
                ECHO_APP,
                "{port}",
            ]
        )
    # Not a usage error: the command line was fine, so no usage lines, and exit 1.
    assert "already in use" in cli_error(result.stderr, result.returncode)
    assert result.returncode == 1


def test_substitutions_reach_the_app(start_proxy, tmp_path):
    (tmp_path / "deck").mkdir()
    proxy = start_proxy(
        ["--presentation-path", "deck/Talk.ipynb", "--destport", str(free_port())],
        app=[
            sys.executable,
            ECHO_APP,
            "{port}",
            "--say",
            "{base_url}|{presentation_path}|{presentation_basename}|{presentation_dirname}"
            "|{presentation_stem}|{{literal}}|{unix_socket}|",
        ],
    )
    argv = app_argv(proxy)
    said = argv[argv.index("--say") + 1]
    assert said == (
        f"/user/alice|{tmp_path}/deck/Talk.ipynb|Talk.ipynb|{tmp_path}/deck|Talk|{{literal}}||"
    )
    assert argv[0].isdigit()


def test_destport_is_used_as_given(start_proxy):
    port = free_port()
    proxy = start_proxy(["--destport", str(port)])
    assert app_argv(proxy)[0] == str(port)
    assert proxy.get("echo").status == 200


def test_inline_dashes_and_options_after_the_command(start_proxy):
    """0.8.3's style: {--} and {-} spell the app's dashes, our options may follow the command."""
    port = free_port()
    proxy = start_proxy(
        raw_argv=[
            "--authtype",
            "none",
            sys.executable,
            "{-}u",
            ECHO_APP,
            "{port}",
            "{--}say",
            "inline",
            "--port",
            str(port),
            "--ip",
            "127.0.0.1",
        ],
        port=port,
        prefix="/",
    )
    assert app_argv(proxy)[1:] == ["--say", "inline"]
    assert proxy.get("echo").json()["uri"] == "/echo"


def test_singleuser_flags_do_not_stop_it(start_proxy, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proxy = start_proxy(
        [
            "--debug",
            f"--notebook-dir={home}",
            "--SingleUserNotebookApp.default_url=/lab",
            "--disable-user-config",
            "--allow-root",
        ],
    )
    assert proxy.get("echo").status == 200
    log = proxy.log()
    assert f"echo app cwd: {home}" in log
    assert "Ignoring jupyterhub-singleuser option --SingleUserNotebookApp.default_url" in log
    assert "Ignoring jupyterhub-singleuser option --disable-user-config" in log


def test_service_url_gives_the_listen_address(start_proxy):
    port = free_port()
    proxy = start_proxy(
        raw_argv=["--authtype", "none", "--", sys.executable, ECHO_APP, "{port}"],
        port=port,
        env={"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/user/alice/"},
    )
    assert f"Listening on http://127.0.0.1:{port}/user/alice/" in proxy.log()
    assert proxy.get("echo").status == 200


def test_origin_host_waits_for_the_first_request(start_proxy):
    proxy = start_proxy(
        app=[sys.executable, ECHO_APP, "{port}", "--say", "host={origin_host}"],
        wait="listening",
    )
    # An app started at launch is started before the proxy serves (it says "Starting the app"
    # before "Listening on"), so once the proxy serves, the app would have been started.
    proxy.wait_log("Listening on ")
    assert "Starting the app" not in proxy.log()
    response = proxy.get("echo", headers={"Host": "localhost:8123"})
    assert response.status == 200
    assert "Starting the app" in proxy.log()
    assert "host=localhost:8123" in proxy.log()


def test_origin_host_from_allow_host_starts_the_app_at_launch(start_proxy):
    """--allow-host names the host: no request has to (nor may) choose it."""
    proxy = start_proxy(
        ["--allow-host", "dash.example.org"],
        app=[sys.executable, ECHO_APP, "{port}", "--say", "host={origin_host}"],
    )
    assert "host=dash.example.org" in proxy.log()
    assert proxy.get("echo", headers={"Host": "localhost:8123"}).status == 200
    assert "host=localhost" not in proxy.log()


@pytest.mark.parametrize(
    "flags",
    [
        ["--no-progressive", "--no-forward-user-info", "--no-query-user-info"],
        ["--no-allow-root", "--allow-root", "--NotebookApp.allow_origin"],
        ["--no-NotebookApp.allow_origin", "--aiohttp-request-timeout", "0"],
    ],
)
def test_every_flag_spelling_of_0_8_3_is_accepted(flags):
    """0.8.3 had `--x/--no-x` pairs and a bare `--NotebookApp.allow_origin`: a spawner line
    written for it must still parse (here up to --list-servers, which exits at once)."""
    result = run_cli(["--authtype", "none", *flags, "--list-servers"])
    assert result.returncode == 0, result.stderr


def test_python_m_main_runs_the_command_as_0_8_3s_readme_says():
    done = subprocess.run(
        [sys.executable, "-m", "jhsingle_native_proxy.main", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_jupyterhub_root_dir_is_the_apps_working_directory(start_proxy, tmp_path):
    """JupyterHub 2+ sends c.Spawner.notebook_dir as JUPYTERHUB_ROOT_DIR: the app runs there."""
    root = tmp_path / "root"
    root.mkdir()
    proxy = start_proxy(env={"JUPYTERHUB_ROOT_DIR": str(root)})
    assert f"echo app cwd: {root}" in proxy.log()


def test_hub_mode_log_has_no_alembic_lines(start_proxy):
    """Importing JupyterHub's client under our logging let alembic log seven INFO lines at the
    top of every hub-mode log."""
    from test_security import hub_env

    proxy = start_proxy(authtype="oauth", env=hub_env(), wait="listening")
    proxy.wait_log("The app is ready")
    # The login redirect: JupyterHub's client has been imported and used.
    assert proxy.get("echo", headers={"Accept": "text/html"}).status == 302
    assert "alembic" not in proxy.log()


def test_angle_bracket_placeholders_reach_the_app_as_values(start_proxy, tmp_path):
    """`<port>` (as some docs and generated configurations write it) reached the app as it
    was, and the app crash-looped. Now it is `{port}`; `<b>` stays the app's text."""
    proxy = start_proxy(
        ["--presentation-path", "Talk.ipynb"],
        app=[sys.executable, ECHO_APP, "<port>", "--say", "<b><base_url>|<presentation_stem></b>"],
    )
    assert proxy.get("echo").status == 200
    argv = app_argv(proxy)
    assert argv[0].isdigit()
    assert argv[argv.index("--say") + 1] == "<b>/user/alice|Talk</b>"


def test_angle_bracket_dashes_among_our_options(start_proxy):
    """0.8.3's inline form with `<-->`/`<->` for the app's dashes."""
    port = free_port()
    raw_argv = ["--authtype", "none", sys.executable, "<->u", ECHO_APP, "<port>"]
    raw_argv += ["<-->say", "inline", "--port", str(port)]
    proxy = start_proxy(raw_argv=raw_argv, port=port, prefix="/")
    assert app_argv(proxy)[1:] == ["--say", "inline"]
    assert proxy.get("echo").status == 200


@pytest.mark.parametrize(
    "option",
    ["--ready-timeout", "--request-timeout", "--shutdown-grace", "--follow-interval",
     "--drain-timeout", "--aiohttp-request-timeout", "--hub-probe-timeout"],
)  # fmt: skip
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_duration_must_be_a_finite_number(option, value):
    """`float()` reads nan and inf, and a float range let them through (NaN compares false with
    every bound): a `nan` timeout made every wait end at once or never."""
    result = run_cli(["--authtype", "none", option, value, "--list-servers"])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"not a finite number of seconds|not in the range", result.stderr)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "not json", "is not a JSON list"),
        ("JUPYTERHUB_COOKIE_OPTIONS", "[1, 2]", "is not a JSON object"),
    ],
)
def test_a_hub_variable_the_hub_never_writes_is_one_line(variable, value, says):
    argv = ["--authtype", "none", "--port", str(free_port()), "--", "true"]
    result = run_cli(argv, env={variable: value}, timeout=20)
    assert cli_error(result.stderr, result.returncode).startswith(f"{variable} {says}")
