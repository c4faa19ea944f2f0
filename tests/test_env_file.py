"""Secrets for the app (issue 24): `--env-file`, read strictly and again before every start,
never on a command line, in the logs, the pages or the console; the warning about `--env`
values that look like secrets; the variables the repository's jhsnp.toml says the app needs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
from test_repository_app import COMMAND, Repository, start_repo

from conftest import ECHO_APP, cli_error, console_form, run_cli, wait_for
from jhsingle_native_proxy.env_file import AppEnvironmentError, parse_env, read_env_file
from jhsingle_native_proxy.given_app import GivenApp
from jhsingle_native_proxy.launch import build_launch
from jhsingle_native_proxy.repository_manifest import ManifestError, parse_manifest
from jhsingle_native_proxy.secret_options import looks_secret
from jhsingle_native_proxy.settings import Settings

ENV_APP = [sys.executable, ECHO_APP, "{port}"]  # its /env?name=NAME answers a variable
HTML = {"Accept": "text/html"}
# Secrets no test output, page or process list may hold (long enough not to occur by chance).
SECRET = "s3cr3t-Value-Qx7Zp2Lm9Wv4Kd8"
ROTATED = "r0tated-Value-Hj5Nb3Tc6Ys1Fe0"


# -- the parser --------------------------------------------------------------------------------


def test_the_dotenv_syntax_we_read():
    text = (
        "# a comment\n"
        "\n"
        "PLAIN=a value   # a comment after blanks\n"
        "export EXPORTED = spaced\n"
        "HASH=b#c\n"
        "EMPTY=\n"
        "SINGLE='it\\'s {port} $HOME \\n'\n"
        'DOUBLE="tab\\there \\"quoted\\" back\\\\slash" # comment\n'
        'MULTI="first\n'
        'second"\r\n'
        "PLAIN=later wins\n"
    )
    assert parse_env(text, "f") == {
        "PLAIN": "later wins",
        "EXPORTED": "spaced",
        "HASH": "b#c",
        "EMPTY": "",
        "SINGLE": "it's {port} $HOME \\n",
        "DOUBLE": 'tab\there "quoted" back\\slash',
        "MULTI": "first\nsecond",
    }


def test_the_docs_example_file_is_read_as_it_says():
    page = (Path(__file__).parent.parent / "docs" / "secrets.md").read_text()
    start = page.index("# /run/secrets/app.env")
    example = parse_env(page[start : page.index("```", start)], "secrets.md")
    assert example["DB_PASSWORD"] == 'p@ss "word"'
    assert example["GREETING"] == "Hello\nworld"
    assert example["PEM"] == "-----BEGIN KEY-----\n...\n-----END KEY-----"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (f"OK=1\n{SECRET}\n", 2, "no '='"),
        (f"OK=1\n\n# c\n{SECRET}-NAME={SECRET}\n", 4, "not a variable name"),
        (f"A='{SECRET}\nB=2\n", 1, "never closed"),
        (f'A=1\nB="{SECRET}\\q"\n', 2, "no escape"),
        (f"A=1\nB='{SECRET}' {SECRET}\n", 2, "after the closing quote"),
        (f'A="two\nlines" {SECRET}\n', 2, "after the closing quote"),
        (f"A={SECRET}\0\n", 1, "NUL"),
        (f"export {SECRET}\n", 1, "no '='"),
    ],
)
def test_a_bad_line_names_the_file_and_its_number_never_its_text(text, line, problem):
    with pytest.raises(AppEnvironmentError) as e:
        parse_env(text, "--env-file /run/secrets/app.env")
    message = str(e.value)
    assert message.startswith(f"--env-file /run/secrets/app.env, line {line}: "), message
    assert problem in message and SECRET not in message and "\n" not in message


def test_a_file_that_is_not_utf8_nor_a_regular_file_is_refused(tmp_path):
    bad = tmp_path / "latin1.env"
    bad.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(AppEnvironmentError, match=r"latin1.env, line 2: not UTF-8"):
        read_env_file(str(bad))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it to read must not block the start
    with pytest.raises(AppEnvironmentError, match="not a regular file"):
        read_env_file(str(fifo))
    with pytest.raises(AppEnvironmentError, match=r"cannot be read \(No such file"):
        read_env_file(str(tmp_path / "missing.env"))


# -- precedence --------------------------------------------------------------------------------


def test_a_file_is_under_env_and_over_the_presets_and_the_inherited_environment():
    settings = Settings(
        command=("app", "{port}"),
        # settings.env: a preset's or the repository's variables, with --env laid over them.
        env=MappingProxyType({"FROM_PRESET": "preset", "BOTH": "env {port}"}),
        given_app=GivenApp(env=MappingProxyType({"BOTH": "env {port}"})),
    )
    inherited = {"INHERITED": "inherited", "FROM_PRESET": "inherited", "FILE": "inherited"}
    files = {"FILE": "file {port}", "FROM_PRESET": "file", "BOTH": "file"}
    launch = build_launch(settings, 8000, environ=inherited, env_files=files)
    assert launch.env == {
        "INHERITED": "inherited",
        "FILE": "file {port}",  # as written: a secret's braces are no placeholder
        "FROM_PRESET": "file",
        "BOTH": "env 8000",
    }


# -- the warning about --env -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("OPENAI_API_KEY", "x", True),  # by its name
        ("DB_PASSWORD", "hunter2", True),
        ("DATABASE_URL", "postgres://app:longpassword@db/app", True),  # a URL's user info
        ("CALLBACK", "https://example.org/hook?token=abc", True),  # a token argument
        ("GH", "ghp_" + "a1B2c3" * 6, True),  # a well-known token's shape
        ("KEY_MATERIAL", "Zx8Qp2Lm9Wv4Kd8Rt5Yh1Nb3", True),  # mixed case and digits
        ("MODE", "production", False),
        ("GREETING", "Hello, world", False),
        ("COMMIT", "0123456789abcdef0123456789abcdef01234567", False),  # a hash, one case
        ("DATA", "/home/alice/data2024/Shared", False),
        ("EMPTY_TOKEN", "", False),
    ],
)
def test_what_looks_like_a_secret(name, value, secret):
    assert looks_secret(name, value) is secret


# -- the manifest's required variables ---------------------------------------------------------


def test_the_manifest_names_the_variables_the_app_needs(tmp_path):
    text = 'command = ["app"]\nrequired_env = ["OPENAI_API_KEY", "HF_TOKEN"]\n'
    assert parse_manifest(text, str(tmp_path)).required_env == ("OPENAI_API_KEY", "HF_TOKEN")
    for bad in ('"OPENAI_API_KEY"', '["OPENAI-API-KEY"]', "[1]", '["A\\n"]'):
        with pytest.raises(ManifestError, match="required_env"):
            parse_manifest(f'command = ["app"]\nrequired_env = {bad}\n', str(tmp_path))


# -- the real CLI ------------------------------------------------------------------------------


def write_env(path: Path, value: str) -> Path:
    path.write_text(f"# the app's secrets\nexport API_TOKEN='{value}'\nPLAIN=plain\n")
    return path


def command_lines() -> list[bytes]:
    """Every process's command line that this user can read."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                found.append(Path(f"/proc/{entry}/cmdline").read_bytes())
    return found


def assert_nowhere(proxy, *secrets: str) -> None:
    """None of `secrets` in any command line, in the proxy's whole output, in its own
    environment, in the console (page and JSON) or in the status the loading page polls."""
    for secret in secrets:
        raw = secret.encode()
        assert not [line for line in command_lines() if raw in line]
        assert secret not in proxy.log()
        assert raw not in Path(f"/proc/{proxy.pid}/environ").read_bytes()
        for path in ("_jhsnp/", "_jhsnp/console.json", "_jhsnp/status"):
            assert raw not in proxy.get(path, headers=HTML).body, path


def test_the_app_gets_the_files_values_and_a_rotated_one_after_a_restart(start_proxy, tmp_path):
    env_file = write_env(tmp_path / "app.env", SECRET)
    proxy = start_proxy(["--env-file", str(env_file)], app=ENV_APP)
    assert proxy.get("env?name=API_TOKEN").body == SECRET.encode()
    assert proxy.get("env?name=PLAIN").body == b"plain"
    # A rotated secret (a Kubernetes Secret's new content): the console's Restart takes it,
    # the proxy itself keeps running.
    write_env(env_file, ROTATED)
    answer = proxy.request("POST", "_jhsnp/restart", **console_form(proxy))
    assert answer.status == 303
    wait_for(lambda: proxy.get("env?name=API_TOKEN").body == ROTATED.encode(), what="rotated")
    assert proxy.process.poll() is None and len(proxy.app_pids()) == 2


def test_a_secret_from_a_file_is_never_shown_during_a_start_a_crash_and_a_restart(
    start_proxy, tmp_path
):
    env_file = write_env(tmp_path / "app.env", SECRET)
    proxy = start_proxy(["--env-file", str(env_file), "--debug"], app=ENV_APP, wait=None)

    def scanned_until_ready() -> bool:
        assert not [line for line in command_lines() if SECRET.encode() in line]
        return proxy.status().get("state") == "ready"

    # During the start: every process's command line scanned, again and again, until it is up.
    wait_for(scanned_until_ready, what="the app to be ready")
    assert proxy.get("env?name=API_TOKEN").body == SECRET.encode()  # the app has it
    assert_nowhere(proxy, SECRET)
    # A crash: the app is started again by itself.
    assert len(proxy.app_pids()) == 1
    proxy.get("exit?code=3")
    wait_for(lambda: len(proxy.app_pids()) == 2 and proxy.status().get("state") == "ready")
    assert_nowhere(proxy, SECRET)
    # A restart asked for on the console, with a rotated value.
    write_env(env_file, ROTATED)
    proxy.request("POST", "_jhsnp/restart", **console_form(proxy))
    wait_for(lambda: proxy.get("env?name=API_TOKEN").body == ROTATED.encode(), what="rotated")
    assert_nowhere(proxy, SECRET, ROTATED)
    # The console lists the names the files set, and only the names.
    view = proxy.get("_jhsnp/console.json").json()
    assert view["env_file_names"] == ["API_TOKEN", "PLAIN"]
    page = proxy.get("_jhsnp/", headers=HTML).body.decode()
    assert "Set from --env-file (names only): API_TOKEN, PLAIN" in page


def test_a_bad_file_at_launch_is_a_usage_error_naming_the_file_and_line(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text(f"GOOD=1\n{SECRET}\n")
    done = run_cli(["--authtype", "none", "--env-file", str(env_file), "--", *ENV_APP])
    message = cli_error(done.stderr, done.returncode)
    assert done.returncode == 2
    assert f"--env-file {env_file}, line 2: no '='" in message
    assert SECRET not in done.stderr + done.stdout
    missing = tmp_path / "missing.env"
    done = run_cli(["--authtype", "none", "--env-file", str(missing), "--", *ENV_APP])
    message = cli_error(done.stderr, done.returncode)
    assert done.returncode == 2 and f"--env-file {missing}: cannot be read" in message


def test_a_file_gone_bad_before_a_restart_fails_that_start_for_the_owner(start_proxy, tmp_path):
    env_file = write_env(tmp_path / "app.env", SECRET)
    proxy = start_proxy(["--env-file", str(env_file)], app=ENV_APP)
    env_file.write_text(f"API_TOKEN={ROTATED}\n'{SECRET}\n")
    proxy.request("POST", "_jhsnp/restart", **console_form(proxy))
    wait_for(lambda: proxy.status().get("state") == "failed", what="the failed start")
    assert len(proxy.app_pids()) == 1  # not started
    where = f"--env-file {env_file}, line 2: no '='"
    assert where in proxy.status()["reason"]
    page = proxy.get("", headers=HTML)
    assert page.status == 503 and where.replace("'", "&#x27;").encode() in page.body
    wait_for(lambda: proxy.status().get("state") == "failed", what="the second try")
    assert_nowhere(proxy, SECRET, ROTATED)
    # Fixed, then Try again (a visit): started with the new value.
    write_env(env_file, ROTATED)
    proxy.get("", headers=HTML)
    wait_for(lambda: proxy.status().get("state") == "ready", what="the fixed start")
    assert proxy.get("env?name=API_TOKEN").body == ROTATED.encode()


def test_a_token_looking_env_value_is_warned_about_by_its_name(start_proxy):
    proxy = start_proxy(["--env", f"SERVICE_KEY={SECRET}", "--env", "MODE=production"], app=ENV_APP)
    warnings = [line for line in proxy.log().splitlines() if "looks like a secret" in line]
    assert len(warnings) == 1 and "--env SERVICE_KEY looks like a secret" in warnings[0]
    assert SECRET not in warnings[0] and "MODE" not in warnings[0]
    assert "--env-file" in warnings[0]


def test_a_harmless_env_value_is_not_warned_about(start_proxy):
    proxy = start_proxy(["--env", "MODE=production"], app=ENV_APP)
    assert proxy.get("env?name=MODE").body == b"production"
    assert "looks like a secret" not in proxy.log()


def test_a_variable_the_manifest_requires_stops_the_start_until_a_file_gives_it(
    start_proxy, tmp_path
):
    app = Path(ECHO_APP).read_text()
    repo = Repository(tmp_path / "repo", {
        "jhsnp.toml": COMMAND + 'required_env = ["OPENAI_API_KEY"]\n',
        "app.py": app,
    })  # fmt: skip
    env_file = tmp_path / "app.env"
    env_file.write_text("OTHER=1\n")
    proxy = start_repo(start_proxy, tmp_path, repo, "--env-file", str(env_file), wait="listening")
    wait_for(lambda: proxy.status().get("state") == "failed", what="the missing variable")
    reason = proxy.status()["reason"]
    assert "jhsnp.toml says the app needs OPENAI_API_KEY in its environment" in reason
    assert "\n" not in reason and proxy.app_pids() == []
    page = proxy.get("", headers=HTML)  # a visit: the start tried again, and failed again
    assert b"Try again" in page.body and b"needs OPENAI_API_KEY" in page.body
    wait_for(lambda: proxy.status().get("state") == "failed", what="the second try")
    # Given in the file, then Try again: the app starts and sees it.
    env_file.write_text(f"OPENAI_API_KEY={SECRET}\n")
    proxy.get("", headers=HTML)
    wait_for(lambda: proxy.status().get("state") == "ready", what="the app with its key")
    assert proxy.get("env?name=OPENAI_API_KEY").body == SECRET.encode()
    assert_nowhere(proxy, SECRET)
