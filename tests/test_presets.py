"""`--app TYPE` (presets.py): the table, `auto`'s inference, --list-apps, how a preset is laid
under the command line and a config file's server, and the static server."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from example_support import EXAMPLES, require

from conftest import cli_error, free_port, run_cli, wait_for
from jhsingle_native_proxy import command as command_templates
from jhsingle_native_proxy import presets
from jhsingle_native_proxy.cli import parse_args
from jhsingle_native_proxy.launch import build_launch
from jhsingle_native_proxy.presets import PRESETS, PresetError, infer_app

NO_HUB = {"PATH": "/usr/bin:/bin"}


def settings_for(*argv: str, environ: dict | None = None):
    return parse_args(["--authtype", "none", *argv], {**NO_HUB, **(environ or {})})


@pytest.fixture
def installed(monkeypatch):
    """Every preset's framework counts as installed (the table is tested, not this machine)."""
    monkeypatch.setattr(presets, "check_installed", lambda name, environ: None)


def test_every_preset_uses_only_known_placeholders():
    for name in PRESETS:
        command_templates.placeholders(presets.preset_command(name))  # raises on an unknown one
        command_templates.placeholders(PRESETS[name].env.values())


def test_every_preset_names_what_to_install():
    for name, preset in PRESETS.items():
        if preset.needs_module or preset.needs_program:
            assert preset.install, name


@pytest.mark.parametrize(
    "file, expected",
    [
        ("streamlit_app.py", "streamlit"),
        ("panel_app.py", "panel"),
        ("bokeh_app.py", "bokeh"),
        ("dash_app.py", "dash"),
        ("gradio_app.py", "gradio"),
        ("voila_app.ipynb", "voila"),
        ("shiny/app.R", "shiny"),
        ("shiny", "shiny"),
        (".", "static"),
    ],
)
def test_auto_infers_the_examples_frameworks(file, expected):
    assert infer_app(str(EXAMPLES / file)) == expected


def test_auto_reads_imports_not_text(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("# streamlit is not used here\nfrom panel import widgets\n")
    assert infer_app(str(app)) == "panel"
    app.write_text("import os\nprint('streamlit')\n")
    with pytest.raises(PresetError, match="imports none of"):
        infer_app(str(app))


def test_auto_refuses_what_it_cannot_tell(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PresetError, match="cannot tell"):
        infer_app(str(tmp_path / "notes.txt"))


def test_a_preset_sets_command_and_settings(installed):
    notebook = str(EXAMPLES / "voila_app.ipynb")
    s = settings_for("--app", "voila", "--presentation-path", notebook)
    assert s.command[:2] == ("voila", "{presentation_path}")
    assert s.presentation_path == notebook
    assert s.ready_check_path == "/voila/static/voila.js"
    s = settings_for("--app", "bokeh", "--presentation-path", str(EXAMPLES / "bokeh_app.py"))
    assert s.absolute_url is True


def test_explicit_options_win_over_the_preset(installed):
    s = settings_for(
        "--app", "gradio", "--presentation-path", str(EXAMPLES / "gradio_app.py"),
        "--ready-timeout", "5", "--env", "GRADIO_ANALYTICS_ENABLED=True",
    )  # fmt: skip
    assert s.ready_timeout == 5
    assert s.env["GRADIO_ANALYTICS_ENABLED"] == "True"
    assert s.env["HF_HUB_DISABLE_TELEMETRY"] == "1"


def test_words_after_the_double_dash_are_appended(installed):
    s = settings_for("--app", "static", "--presentation-path", str(EXAMPLES), "--", "--listing")
    assert s.command[-2:] == ("{presentation_path}", "--listing")


def test_panel_serves_the_app_at_the_prefix(installed):
    s = settings_for("--app", "panel", "--presentation-path", str(EXAMPLES / "panel_app.py"))
    argv = build_launch(s, 4321).argv
    assert argv[-2:] == ["--index", "panel_app"]


def test_a_missing_framework_is_one_line_naming_the_package(tmp_path):
    result = run_cli(
        ["--authtype", "none", "--app", "streamlit", "--presentation-path", str(tmp_path)],
        env={"PATH": str(tmp_path)},
    )
    assert cli_error(result.stderr, result.returncode) == (
        "--app streamlit needs streamlit: pip install streamlit"
    )


def test_a_preset_needs_the_file():
    result = run_cli(["--authtype", "none", "--app", "static"])
    assert "--presentation-path" in cli_error(result.stderr, result.returncode)


def test_an_unknown_preset_lists_the_known_ones(tmp_path):
    result = run_cli(["--authtype", "none", "--app", "flask", "--presentation-path", "."])
    assert "known: streamlit, voila" in cli_error(result.stderr, result.returncode)


def test_list_apps_shows_each_command():
    result = run_cli(["--list-apps"])
    assert result.returncode == 0, result.stderr
    for name in [*PRESETS, "auto"]:
        assert f"\n{name}\t" in "\n" + result.stdout
    assert "streamlit run {presentation_path} --server.port {port}" in result.stdout


def test_every_placeholder_list_apps_prints_is_accepted(installed):
    """A user copies a command --list-apps prints: each of its placeholders must be one the
    command line accepts (it once printed {presentation_stem}, an unknown placeholder)."""
    result = run_cli(["--list-apps"])
    assert result.returncode == 0, result.stderr
    printed = set(re.findall(r"\{(\w+)\}", result.stdout))
    assert {"port", "presentation_path", "presentation_stem"} <= printed
    for line in result.stdout.splitlines():
        if line.startswith("\t") and not line.startswith(("\tproxy:", "\tenvironment:")):
            command = shlex.split(line)
            s = settings_for("--presentation-path", str(EXAMPLES / "panel_app.py"), "--", *command)
            assert s.placeholders <= set(printed), line
    for name in printed:
        s = settings_for("--", "app", "{" + name + "}")
        assert s.placeholders == {name}


def test_a_config_server_may_name_a_preset(tmp_path, installed):
    config = tmp_path / "config.py"
    app = str(EXAMPLES / "gradio_app.py")
    config.write_text(
        textwrap.dedent(f"""
            c.ServerProxy.servers = {{
                "report": {{"app": "gradio", "presentation_path": {app!r},
                            "timeout": 7, "environment": {{"HF_HUB_DISABLE_TELEMETRY": "0"}}}},
            }}
        """)
    )
    s = settings_for("--config", str(config), "--env", "GRADIO_SERVER_NAME=0.0.0.0")
    assert s.command[-1] == "{presentation_path}"
    assert s.presentation_path == str(EXAMPLES / "gradio_app.py")
    # The server's settings over the preset's, the command line's over both.
    assert s.ready_timeout == 7
    assert s.env["HF_HUB_DISABLE_TELEMETRY"] == "0"
    assert s.env["GRADIO_SERVER_NAME"] == "0.0.0.0"
    assert s.env["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_a_config_server_has_app_or_command_not_both(tmp_path):
    config = tmp_path / "config.py"
    config.write_text('c.ServerProxy.servers = {"x": {"app": "static", "command": ["a"]}}\n')
    result = run_cli(["--authtype", "none", "--config", str(config)])
    assert "not both" in cli_error(result.stderr, result.returncode)


@pytest.fixture
def static_site(tmp_path):
    (tmp_path / "index.html").write_text("<h1>report</h1>")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "index.html").write_text("<h1>book</h1>")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app.js").write_text("1")
    (tmp_path / "assets" / "m.wasm").write_bytes(b"\0asm")
    return tmp_path


def serve(directory, *args):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, presets.STATIC_SERVER, "--port", str(port), *args, str(directory)],
        stderr=subprocess.DEVNULL,
    )

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.headers.get_content_type(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, "", b""
        except OSError:
            return None

    wait_for(lambda: get("/"), 10, what="the static server")
    return process, get


def test_static_serves_index_files_with_their_types_and_no_listing(static_site):
    process, get = serve(static_site)
    try:
        assert get("/") == (200, "text/html", b"<h1>report</h1>")
        assert get("/book/")[2] == b"<h1>book</h1>"
        assert get("/assets/app.js")[:2] == (200, "text/javascript")
        assert get("/assets/m.wasm")[:2] == (200, "application/wasm")
        assert get("/assets/")[0] == 404
    finally:
        process.terminate()
        process.wait(10)


def test_static_lists_folders_when_asked(static_site):
    process, get = serve(static_site, "--listing")
    try:
        status, _, body = get("/assets/")
        assert status == 200 and b'href="app.js"' in body
    finally:
        process.terminate()
        process.wait(10)


def test_a_relative_file_is_looked_for_where_the_app_will_run(tmp_path):
    """`--notebook-dir DIR --presentation-path app.py`: the preset checks and infers DIR/app.py,
    the same file Settings hands the app, not one in the proxy's own folder."""
    import os

    (tmp_path / "app.py").write_text("import streamlit as st\n")
    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/user/test/", "PATH": os.environ["PATH"]}
    argv = ["--authtype", "none", "--notebook-dir", str(tmp_path)]
    settings = parse_args([*argv, "--app", "auto", "--presentation-path", "app.py"], environ)
    assert list(settings.command[:2]) == ["streamlit", "run"]
    assert settings.presentation_abspath == str(tmp_path / "app.py")


def test_a_file_from_the_repo_is_not_looked_for_before_the_checkout(tmp_path):
    import os

    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/user/test/", "PATH": os.environ["PATH"]}
    argv = ["--authtype", "none", "--repo", "https://example.org/r.git"]
    settings = parse_args([*argv, "--app", "static", "--presentation-path", "site"], environ)
    assert settings.presentation_abspath.endswith("/r/site")
    # `--app auto` looks at the file after the checkout (repository_app.py), not before.
    settings = parse_args([*argv, "--app", "auto", "--presentation-path", "app.py"], environ)
    assert settings.given_app.deferred and settings.command == ()


# -- every preset's app listens on loopback only, or it is reachable around the login --------

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def _after(words: list[str], option: str) -> str:
    return words[words.index(option) + 1]


def _runner_binds() -> set[str]:
    """The host every `host=` / `server_name=` keyword in runners.py names (Dash's app.run,
    Gradio's launch): the address the dash and gradio presets' apps listen on."""
    import ast

    tree = ast.parse(Path(presets.RUNNER).read_text(encoding="utf-8"))
    return {
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg in ("host", "server_name") and isinstance(keyword.value, ast.Constant)
    }


# How each preset tells its app where to listen: the value of the framework's own option, or
# our helper's choice (runners.py; static_server.py's --bind, of which the preset gives none).
BIND_OF = {
    "streamlit": lambda words: {_after(words, "--server.address")},
    "voila": lambda words: {w.split("=", 1)[1] for w in words if w.startswith("--Voila.ip=")},
    "panel": lambda words: {_after(words, "--address")},
    "bokeh": lambda words: {_after(words, "--address")},
    "dash": lambda words: _runner_binds(),
    "gradio": lambda words: _runner_binds() | {PRESETS["gradio"].env["GRADIO_SERVER_NAME"]},
    "shiny": lambda words: set(re.findall(r"host='([^']*)'", " ".join(words))),
    "static": lambda words: {"--bind"} & set(words) or {_static_server_default_bind()},
}


def _static_server_default_bind() -> str:
    from jhsingle_native_proxy import static_server

    source = Path(static_server.__file__).read_text(encoding="utf-8")
    return re.search(r'"--bind", default="([^"]*)"', source).group(1)


def test_every_preset_binds_its_app_to_loopback():
    """A framework left to its default (Streamlit, Panel: every interface) serves the app on
    the machine's network, where nobody logs in."""
    assert set(BIND_OF) == set(PRESETS), "a new preset: say how its app binds"
    for name in PRESETS:
        binds = BIND_OF[name](presets.preset_command(name))
        assert binds and binds <= LOOPBACK_NAMES, (name, binds)
    assert _runner_binds() == {"127.0.0.1"}


def _preset_process(name: str, file: Path, port: int) -> subprocess.Popen:
    """The preset's command and environment with its placeholders filled, started as the proxy
    would start it (runners.py and static_server.py are run by their path)."""
    values = {"port": port, "base_url": "/user/test", "presentation_path": str(file)}
    argv = command_templates.substitute_all(presets.preset_command(name), values)
    env = {k: command_templates.substitute(v, values) for k, v in PRESETS[name].env.items()}
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("name", ["static", "dash"])
def test_our_helpers_listen_on_loopback_only_for_real(name, static_site):
    """runners.py (run by its path: its `__main__` block) and static_server.py, as the presets
    start them: what they listen on, from /proc/net/tcp."""
    from loadgen import is_loopback, listening_addresses

    if name == "dash":
        require("dash")
    port = free_port()
    file = static_site if name == "static" else EXAMPLES / "dash_app.py"
    process = _preset_process(name, file, port)

    def app_listens() -> set:
        if process.poll() is not None:
            raise AssertionError(f"the {name} preset's app exited ({process.returncode})")
        return listening_addresses([process.pid])

    try:
        listening = wait_for(app_listens, 60, what=f"the {name} preset's app to listen")
        assert {p for _, p in listening} == {port}
        assert all(is_loopback(address) for address, _ in listening), listening
    finally:
        process.kill()
        process.wait(10)


# -- a framework that is not installed: one line saying what to install ----------------------


def _python_without(tmp_path: Path, *hidden: str) -> tuple[list[str], dict]:
    """An interpreter command and environment that see this checkout and every package of
    this environment but `hidden` (`python -S`, site-packages given as a folder of links)."""
    import sysconfig

    farm = tmp_path / "site-packages"
    farm.mkdir()
    packages = Path(sysconfig.get_paths()["purelib"])
    for entry in packages.iterdir():
        if not entry.name.lower().startswith(hidden):
            (farm / entry.name).symlink_to(entry)
    root = Path(presets.__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(farm)])
    return [sys.executable, "-S"], env


@pytest.mark.parametrize("name", ["dash", "gradio"])
def test_a_missing_python_framework_is_one_line_naming_the_package(tmp_path, name):
    python, env = _python_without(tmp_path, name)
    app = tmp_path / "app.py"
    app.write_text(f"import {name}\n")
    check = subprocess.run(
        [*python, "-c", f"import importlib.util as u; print(u.find_spec({name!r}))"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.stdout.strip() == "None", check  # the environment really lacks it
    result = subprocess.run(
        [*python, "-m", "jhsingle_native_proxy", "--authtype", "none", "--app", name,
         "--presentation-path", str(app)],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert cli_error(result.stderr, result.returncode) == (
        f"--app {name} needs {name}: pip install {name}"
    )


@pytest.mark.parametrize("name", ["dash", "gradio"])
def test_the_runner_without_its_framework_says_what_to_install(tmp_path, name):
    """With --conda-env the proxy cannot look for the framework first: the runner, run by its
    path in an interpreter without it (`-I -S`: no site-packages), says it in one line."""
    app = tmp_path / "app.py"
    app.write_text("x = 1\n")
    result = subprocess.run(
        [sys.executable, "-I", "-S", presets.RUNNER, name, "--port", str(free_port()),
         "--base-url", "/user/test/", str(app)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"Error: --app {name} needs {name}, which {sys.executable} cannot import: "
        f"pip install {name}"
    )


# -- issue 19: rough edges -----------------------------------------------------------------


def test_static_given_a_file_fails_at_start_with_one_line(tmp_path):
    """It crash-looped (the static server exits, backing off to 30 s): now one line, at once."""
    report = tmp_path / "report.html"
    report.write_text("<h1>report</h1>")
    result = run_cli(["--authtype", "none", "--app", "static", "--presentation-path", str(report)])
    assert cli_error(result.stderr, result.returncode) == (
        f"--app static serves a folder, and --presentation-path {str(report)!r} is a file "
        "(give the folder that holds it)"
    )


def test_a_preset_for_one_file_refuses_a_folder(tmp_path, installed):
    with pytest.raises(PresetError, match="serves a file, and .* is a folder"):
        settings_for("--app", "streamlit", "--presentation-path", str(tmp_path))


@pytest.mark.parametrize(
    "words",
    [
        ["--server.port", "8502"],
        ["--server.port=8502"],
        ["--server.address", "0.0.0.0"],
        ["{--}server.port", "8502"],
        ["<-->server.port", "8502"],
    ],
)
def test_words_after_the_dashes_may_not_move_the_apps_port(words):
    """`--app streamlit ... -- --server.port N`: the app listened on N while the proxy waited
    on {port}, and readiness failed without a word why. Now a usage error naming the option."""
    app = str(EXAMPLES / "streamlit_app.py")
    argv = ["--authtype", "none", "--app", "streamlit", "--presentation-path", app, "--", *words]
    result = run_cli(argv)
    message = cli_error(result.stderr, result.returncode)
    assert result.returncode == 2
    option = words[0].replace("{--}", "--").replace("<-->", "--").split("=")[0]
    assert message.startswith(f"--app streamlit sets {option} itself"), message


def test_other_words_after_the_dashes_are_still_the_apps(installed):
    app = str(EXAMPLES / "streamlit_app.py")
    s = settings_for("--app", "streamlit", "--presentation-path", app, "--", "--theme.base", "dark")
    assert s.command[-2:] == ("--theme.base", "dark")
    s = settings_for("--app", "dash", "--presentation-path", str(EXAMPLES / "dash_app.py"),
                     "--", "--port", "1")  # fmt: skip
    assert s.command[-2:] == ("--port", "1")  # the runner hands words after the file to the app


def test_each_preset_owns_the_options_that_carry_its_port_address_and_base_url():
    """The `owns` column is checked against the commands: an option whose value is the port,
    the loopback address or the base URL must be owned (else `--` could override it), unless
    the command hands words after the file to the app (our runner, R's -e)."""
    passes_words_on = {"dash", "gradio", "shiny"}
    for name, preset in PRESETS.items():
        command = list(preset.command)
        carried = set()
        for i, word in enumerate(command):
            option, _, value = word.partition("=")
            if not value and i + 1 < len(command) and not command[i + 1].startswith("-"):
                value = command[i + 1]
            if option.startswith("--") and re.search(r"\{port\}|\{base_url\}|127\.0\.0\.1", value):
                carried.add(option)
        if name in passes_words_on:
            assert not preset.owns, name
        else:
            assert carried and carried <= set(preset.owns), (name, carried)
