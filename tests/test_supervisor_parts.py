"""The supervisor's pure parts, without processes: one start's argv/env/headers (launch.py), the
restart policy and the failure messages (supervisor.py), and the progress log (prepare.py).
The lifecycle itself is tested with real processes in test_lifecycle.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jhsingle_native_proxy.launch import build_launch, substitutions
from jhsingle_native_proxy.prepare import ProgressLog, app_environment
from jhsingle_native_proxy.serverproxy import ConfigError
from jhsingle_native_proxy.settings import build_settings
from jhsingle_native_proxy.supervisor import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    STABLE_AFTER,
    Failure,
    FailureKind,
    restart_delay,
)

PREFIX_ENV = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ann/"}


def settings_for(command: list[str], **options):
    return build_settings({"authtype": "none", **options}, command, PREFIX_ENV)


def test_a_launch_fills_every_placeholder_of_the_command():
    settings = settings_for(["app", "--port={port}", "{base_url}/x", "{origin_host}"])
    launch = build_launch(settings, 8123, origin_host="hub.example:443", environ={"A": "1"})
    assert launch.argv == ["app", "--port=8123", "/user/ann/x", "hub.example:443"]
    assert launch.env == {"A": "1"}
    assert launch.request_headers == []


def test_env_and_headers_take_placeholders_and_the_command_line_wins_over_config():
    settings = settings_for(
        ["app"],
        env={"WHERE": "{port}"},
        request_header={"X-Prefix": "{base_url}"},
    )
    settings = replace(
        settings,
        server_env={"WHERE": "config", "OTHER": "o"},
        server_request_header={"X-Prefix": "config", "X-Other": "{port}"},
    )
    launch = build_launch(settings, 7000)
    assert launch.env == {"WHERE": "7000", "OTHER": "o"}
    assert dict(launch.request_headers) == {"X-Prefix": "/user/ann", "X-Other": "7000"}


def test_callables_from_a_config_are_called_with_the_arguments_they_ask_for():
    settings = settings_for(["unused"])
    settings = replace(
        settings,
        command_factory=lambda port, base_url: ["app", str(port), base_url],
        server_env=lambda port: {"P": str(port)},
    )
    launch = build_launch(settings, 9001)
    assert launch.argv == ["app", "9001", "/user/ann"]
    assert launch.env == {"P": "9001"}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("command_factory", lambda: "app --port", "must give a list of strings"),
        ("server_env", lambda: ["A=1"], "environment must be a dict"),
        ("server_request_header", {"X-Bad": "a\nb"}, "request_headers_override"),
    ],
)
def test_a_config_value_of_the_wrong_type_fails_the_start_naming_it(field, value, message):
    settings = settings_for(["app"])
    settings = replace(settings, **{field: value})
    with pytest.raises(ConfigError, match=message):
        build_launch(settings, 1)


def test_the_unix_socket_placeholder_and_the_resolver_of_the_command():
    settings = settings_for(["app", "--socket", "{unix_socket}", "{port}"])
    launch = build_launch(
        settings,
        0,
        unix_socket="/run/app.sock",
        resolve_command=lambda argv, env: ["/env/bin/" + argv[0], *argv[1:]],
    )
    assert launch.argv == ["/env/bin/app", "--socket", "/run/app.sock", "0"]
    assert substitutions(settings, 0, "/s", "")["unix_socket"] == "/s"


def test_restarts_back_off_while_starting_and_are_at_once_after_serving():
    restarts, delays = 0, []
    for _ in range(10):
        restarts, delay = restart_delay(0.1, restarts)
        delays.append(delay)
    assert delays[:3] == [BACKOFF_FIRST, 2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST]
    assert max(delays) == BACKOFF_MAX
    assert restart_delay(STABLE_AFTER, restarts) == (0, 0.0)


def test_failures_say_what_happened_in_one_place():
    assert Failure.exit(3).reason == "exited with status 3"
    assert Failure.exit(-9).sentence == "The app was killed by SIGKILL"
    assert Failure.exit(0).exited
    not_started = Failure(FailureKind.NOT_STARTED, "command not found: nope")
    assert not_started.reason == "could not be started: command not found: nope"
    assert not not_started.exited
    slow = Failure.not_ready(settings_for(["app"], ready_timeout=2.5))
    assert slow.reason == "did not answer HTTP at / within 2.5 seconds"
    assert not slow.exited


def test_progress_lines_fold_percentages_like_a_terminal():
    progress = ProgressLog()
    for line in ["Getting repo", "Receiving objects: 10%", "Receiving objects: 90%", "done", ""]:
        progress.add(line)
    assert list(progress.lines) == ["Getting repo", "Receiving objects: 90%", "done"]


def test_the_repositorys_credentials_never_reach_the_apps_environment():
    environ = {"JHSNP_REPO": "https://u:t@h/r", "JHSNP_REPO_TOKEN": "t", "HOME": "/h"}
    assert app_environment(environ) == {"HOME": "/h"}
