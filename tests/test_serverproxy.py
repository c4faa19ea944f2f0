"""jupyter-server-proxy's server-process options, a config file, and plugins, through the CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ECHO_APP, TESTS, cli_error, free_port, run_cli, wait_for

ECHO = [sys.executable, ECHO_APP, "{port}"]


def start_with(start_proxy, *args: str, **kw):
    """The real CLI with exactly these options (a config file or plugin gives the command)."""
    port = free_port()
    return start_proxy(raw_argv=["--authtype", "none", "--port", str(port), *args], port=port, **kw)


def said(proxy, name: str) -> str:
    prefix = f"echo app env {name}="
    line = next(x for x in proxy.log().splitlines() if prefix in x)
    return line.split(prefix, 1)[1]


def test_env_options_reach_the_app_with_templates(start_proxy):
    proxy = start_proxy(
        ["--env", "GREETING=hi {base_url}", "--env", "EMPTY="],
        app=[*ECHO, "--say-env", "GREETING", "--say-env", "EMPTY"],
    )
    assert said(proxy, "GREETING") == "hi /user/alice"
    assert said(proxy, "EMPTY") == ""


def test_timeout_is_the_ready_timeout(start_proxy):
    proxy = start_proxy(["--timeout", "1.5"], app=[*ECHO, "--delay-start", "60"], wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the timeout")
    assert "within 1.5 seconds" in proxy.status()["reason"]


def test_absolute_url_sends_the_full_path(start_proxy):
    proxy = start_proxy(["--absolute-url", "--ready-check-path", "/user/alice/"])
    assert proxy.get("echo?x=1").json()["uri"] == "/user/alice/echo?x=1"


def test_mappath_maps_a_path(start_proxy):
    proxy = start_proxy(["--mappath", "/old=/echo", "--mappath", "/=/echo"])
    assert proxy.get("old?q=1").json()["uri"] == "/echo?q=1"
    assert proxy.get("").json()["uri"] == "/echo"
    assert proxy.get("other").json()["uri"] == "/other"


def test_request_header_overrides_the_clients(start_proxy):
    proxy = start_proxy(["--request-header", "X-Api-Key=key-{base_url}"])
    seen = proxy.get("echo", headers={"x-api-key": "forged"}).json()
    keys = [v for k, v in seen["headers"] if k.lower() == "x-api-key"]
    assert keys == ["key-/user/alice"]


def test_activity_exclude_keeps_health_checks_from_counting(start_proxy):
    proxy = start_proxy(["--activity-exclude", "/healthz"])
    before = proxy.status()["last_activity"]
    assert proxy.get("healthz").status == 200
    assert proxy.status()["last_activity"] == before
    assert proxy.get("echo").status == 200
    assert proxy.status()["last_activity"] > before


CONFIG = textwrap.dedent(
    """
    import sys

    ECHO = {echo!r}

    def command(port, base_url):
        return [sys.executable, ECHO, str(port), "--say-env", "FROM_CONFIG",
                "--say-env", "BASE_SEEN"]

    def environment(base_url):
        return {{"FROM_CONFIG": "callable", "BASE_SEEN": base_url + "|{{port}}"}}

    def mappath(path):
        return "/echo" if path == "/mapped" else path

    c.ServerProxy.servers = {{
        "plain": {{
            "command": [sys.executable, ECHO, "{{port}}", "--say-env", "FROM_CONFIG"],
            "environment": {{"FROM_CONFIG": "dict-{{base_url}}"}},
            "timeout": 20,
            "request_headers_override": {{"X-From": "config"}},
            "launcher_entry": {{"title": "ignored"}},
            "new_browser_tab": False,
        }},
        "computed": {{
            "command": command,
            "environment": environment,
            "mappath": mappath,
            "request_headers_override": lambda: {{"X-From": "callable"}},
        }},
    }}
    """
)


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "jupyter_server_config.py"
    path.write_text(CONFIG.format(echo=ECHO_APP))
    return path


def test_config_file_with_dict_values(start_proxy, config_file):
    proxy = start_with(start_proxy, "--config", str(config_file), "--server", "plain")
    assert said(proxy, "FROM_CONFIG") == "dict-/user/alice"
    seen = proxy.get("echo").json()
    assert [v for k, v in seen["headers"] if k == "X-From"] == ["config"]
    assert "Ignoring the server option 'launcher_entry'" in proxy.log()


def test_config_file_with_callables_and_the_command_line_winning(start_proxy, config_file):
    proxy = start_with(
        start_proxy,
        "--config",
        str(config_file),
        "--server",
        "computed",
        "--env",
        "BASE_SEEN=cli wins",
    )
    assert said(proxy, "FROM_CONFIG") == "callable"
    assert said(proxy, "BASE_SEEN") == "cli wins"
    assert proxy.get("mapped").json()["uri"] == "/echo"
    seen = proxy.get("echo").json()
    assert [v for k, v in seen["headers"] if k == "X-From"] == ["callable"]


def test_several_servers_need_a_choice(config_file):
    result = run_cli(["--authtype", "none", "--config", str(config_file)])
    assert "choose one with --server" in cli_error(result.stderr, result.returncode)


@pytest.mark.parametrize(
    "servers, expected",
    [
        ('{"a": {"command": ["x"], "comand": ["y"]}}', "unknown key 'comand'"),
        ('{"a": {"command": "python -m http.server"}}', "'command' must be a list of strings"),
        ('{"a": {"command": ["x"], "timeout": "soon"}}', "'timeout' must be a positive number"),
        ('{"a": {"command": ["x"], "absolute_url": "yes"}}', "'absolute_url' must be True"),
        ('{"a": {"command": ["x"], "environment": {"A": 1}}}', "'environment' must be a dict"),
    ],
)
def test_bad_config_is_one_message_naming_the_key(tmp_path, servers, expected):
    path = tmp_path / "bad_config.py"
    path.write_text(f"c.ServerProxy.servers = {servers}\n")
    result = run_cli(["--authtype", "none", "--config", str(path), "--server", "a"])
    assert expected in cli_error(result.stderr, result.returncode)


def test_a_callable_that_raises_is_reported_not_a_traceback(start_proxy, tmp_path):
    path = tmp_path / "raising_config.py"
    path.write_text(
        textwrap.dedent("""
        def command(port):
            raise RuntimeError("no such tool")
        c.ServerProxy.servers = {"broken": {"command": command}}
    """)
    )
    proxy = start_with(start_proxy, "--config", str(path), wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the failure")
    assert "raised RuntimeError: no such tool" in proxy.status()["reason"]
    assert "Traceback" not in proxy.log()


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """The test plugin package, built and installed (pip) into a folder of its own."""
    target = tmp_path_factory.mktemp("plugin-install")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(TESTS / "plugin"),
        ],
        check=True,
        capture_output=True,
    )
    return target


def test_plugin_server_found_through_its_entry_point(start_proxy, plugin_path):
    env = {"PYTHONPATH": f"{plugin_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listing = run_cli(["--list-servers"], env=env)
    assert listing.returncode == 0
    assert "testplugin\tplugin jhsnp-test-plugin 0.1" in listing.stdout
    proxy = start_with(start_proxy, "--server", "testplugin", env=env)
    response = proxy.get("")
    assert response.status == 200
    assert b"Directory listing" in response.body
    assert "Ignoring the server option 'launcher_entry'" in proxy.log()


def test_a_real_plugin_from_pypi(start_proxy, tmp_path):
    """jupyter-www-proxy (PyPI): serves a `www` folder with Python's http.server."""
    assert importlib.util.find_spec("jupyter_www_proxy"), (
        "pip install --no-deps jupyter-www-proxy (.ci/run does)"
    )
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<p>served by a real plugin</p>")
    proxy = start_with(start_proxy, "--server", "www")
    response = proxy.get("")
    assert response.status == 200
    assert b"served by a real plugin" in response.body


def write_servers(tmp_path, name: str, servers: str) -> Path:
    path = tmp_path / name
    path.write_text(f"import sys\nECHO = {ECHO_APP!r}\nc.ServerProxy.servers = {servers}\n")
    return path


def test_config_file_port_and_absolute_url(start_proxy, tmp_path):
    port = free_port()
    path = write_servers(
        tmp_path,
        "port_config.py",
        f"""{{"fixed": {{
            "command": [sys.executable, ECHO, "{{port}}"],
            "absolute_url": True,
            "port": {port},
        }}}}""",
    )
    proxy = start_with(start_proxy, "--config", str(path), "--ready-check-path", "/user/alice/")
    assert f"Starting the app on port {port}:" in proxy.log()
    assert proxy.get("echo").json()["uri"] == "/user/alice/echo"
    said_argv = next(x for x in proxy.log().splitlines() if "echo app argv: " in x)
    assert said_argv.endswith(f'echo app argv: ["{port}"]')


def test_config_file_timeout_is_the_ready_timeout(start_proxy, tmp_path):
    path = write_servers(
        tmp_path,
        "timeout_config.py",
        """{"late": {
            "command": [sys.executable, ECHO, "{port}", "--delay-start", "60"],
            "timeout": 1.5,
        }}""",
    )
    proxy = start_with(start_proxy, "--config", str(path), wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the timeout")
    assert proxy.status()["reason"] == "did not answer HTTP at / within 1.5 seconds"


def test_config_file_unix_socket_wins_over_port(start_proxy, tmp_path):
    port = free_port()
    path = write_servers(
        tmp_path,
        "socket_config.py",
        f"""{{"socket": {{
            "command": [sys.executable, ECHO, "{{port}}", "--unix", "{{unix_socket}}"],
            "unix_socket": True,
            "port": {port},
        }}}}""",
    )
    proxy = start_with(start_proxy, "--config", str(path))
    assert "Starting the app on socket" in proxy.log()
    assert f"Starting the app on port {port}" not in proxy.log()
    assert proxy.get("echo").json()["uri"] == "/echo"


def test_no_update_last_activity_sends_no_reports(start_proxy):
    dead = f"http://127.0.0.1:{free_port()}/hub/api/users/alice/activity"
    env = {"JUPYTERHUB_ACTIVITY_URL": dead, "JUPYTERHUB_API_TOKEN": "t"}
    quiet = start_proxy(["--last-activity-interval", "1", "--no-update-last-activity"], env=env)
    control = start_proxy(["--last-activity-interval", "1"], env=env)
    # Once the control has tried twice, the quiet one would have tried too.
    control.wait_log("Cannot report activity", count=2)
    assert "report activity" not in quiet.log() and "Reported activity" not in quiet.log()


def test_merge_server_lets_the_options_given_on_the_command_line_win():
    from jhsingle_native_proxy.serverproxy import merge_server, server_from_dict

    server = server_from_dict(
        "app",
        {
            "command": ["serve", "{port}"],
            "timeout": 30,
            "port": 9000,
            "absolute_url": True,
            "unix_socket": True,
            "environment": {"A": "1"},
        },
        "test",
    )
    options = {"ready_timeout": 5.0, "destport": 0, "absolute_url": False, "unix_socket": ""}
    merged, command = merge_server(server, options, [], explicit={"ready_timeout"})
    assert merged["ready_timeout"] == 5.0  # given on the command line
    assert merged["destport"] == 9000 and merged["absolute_url"] is True
    assert merged["unix_socket"] == "auto"
    assert merged["server_env"] == {"A": "1"} and merged["server_label"] == "app (test)"
    assert command == ["serve", "{port}"]
    assert options["destport"] == 0  # the caller's dict is left as it was
    _, given = merge_server(server, options, ["mine"], explicit=set())
    assert given == ["mine"]  # the command line's command wins too
