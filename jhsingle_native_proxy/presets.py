"""`--app TYPE`: a known framework's command and settings, so the admin names a file, not a
command line.

`PRESETS` is the whole table, data only: the commands are those of the tested recipes in
examples/ with the user's file as {presentation_path}. Dash and Gradio apps are Python files
that build an app object; `runners.py` imports the file and serves that object with the port and
prefix (the file's own `if __name__ == "__main__"` block does not run). `static` serves a folder
with `static_server.py`. Both are run by their file's path, so they also work with --conda-env.

`apply_preset` lays a preset under the command line: an option given on the command line wins
over the preset's, the command line's `--env` is laid over the preset's environment, and the
words after `--` are appended to the preset's command.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .command import spell_dashes
from .settings import SettingsError

_HERE = Path(__file__).resolve().parent
RUNNER = str(_HERE / "runners.py")
STATIC_SERVER = str(_HERE / "static_server.py")
# Words of a preset's command replaced when it is applied: "{python}" is this interpreter (or
# the conda environment's python3), "{runner}" and "{static_server}" our helper scripts.
_PYTHON = "{python}"


class PresetError(SettingsError):
    """A preset cannot be used as asked; the message is one line for the user."""


@dataclass(frozen=True)
class Preset:
    """One framework: its command, the proxy settings it needs, and what must be installed."""

    command: tuple[str, ...]
    # The Python module (found with importlib) or the program (on PATH) the command needs,
    # and what to install to get it.
    needs_module: str = ""
    needs_program: str = ""
    install: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    what: str = ""
    # "file" or "folder" when the app can serve only that kind of path ("" for either).
    takes: str = ""
    # The app's options that the proxy relies on (its port, address, base URL): the preset sets
    # them, or relies on their default. Given again after `--` they would be the app's last word
    # and the proxy could no longer reach it, so the command line is refused.
    owns: tuple[str, ...] = ()


PRESETS: dict[str, Preset] = {
    "streamlit": Preset(
        command=(
            "streamlit",
            "run",
            "{presentation_path}",
            "--server.port",
            "{port}",
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ),
        needs_program="streamlit",
        install="pip install streamlit",
        what="a Streamlit script (.py)",
        takes="file",
        owns=("--server.port", "--server.address"),
    ),
    "voila": Preset(
        command=(
            "voila",
            "{presentation_path}",
            "--port={port}",
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            "--Voila.base_url={base_url}/",
            "--Voila.server_url=/",
        ),
        needs_program="voila",
        install="pip install voila",
        settings={"ready_check_path": "/voila/static/voila.js"},
        what="a notebook (.ipynb) shown by Voilà",
        owns=(
            "--port",
            "--Voila.port",
            "--Voila.ip",
            "--base_url",
            "--Voila.base_url",
            "--server_url",
            "--Voila.server_url",
        ),
    ),
    "panel": Preset(
        command=(
            "panel",
            "serve",
            "{presentation_path}",
            "--address",
            "127.0.0.1",
            "--port",
            "{port}",
            "--allow-websocket-origin",
            "*",
            "--index",
            "{presentation_stem}",
        ),
        needs_program="panel",
        install="pip install panel",
        what="a Panel app (.py or .ipynb)",
        owns=("--port", "--address"),
    ),
    "bokeh": Preset(
        command=(
            "bokeh",
            "serve",
            "{presentation_path}",
            "--address",
            "127.0.0.1",
            "--port",
            "{port}",
            "--prefix",
            "{base_url}",
            "--allow-websocket-origin",
            "*",
        ),
        needs_program="bokeh",
        install="pip install bokeh",
        settings={"absolute_url": True},
        what="a Bokeh server app (.py, .ipynb or an app folder), at PREFIX/NAME",
        owns=("--port", "--address", "--prefix"),
    ),
    "dash": Preset(
        command=(
            _PYTHON,
            "{runner}",
            "dash",
            "--port",
            "{port}",
            "--base-url",
            "{base_url}/",
            "{presentation_path}",
        ),
        needs_module="dash",
        install="pip install dash",
        env={"DASH_REQUESTS_PATHNAME_PREFIX": "{base_url}/", "DASH_ROUTES_PATHNAME_PREFIX": "/"},
        what="a .py file that makes a Dash app object",
        takes="file",
    ),
    "gradio": Preset(
        command=(
            _PYTHON,
            "{runner}",
            "gradio",
            "--port",
            "{port}",
            "--base-url",
            "{base_url}",
            "{presentation_path}",
        ),
        needs_module="gradio",
        install="pip install gradio",
        settings={"ready_timeout": 60.0},
        env={
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            # For a file that calls launch() itself at import time.
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": "{port}",
            "GRADIO_ROOT_PATH": "{base_url}",
        },
        what="a .py file that makes a Gradio Blocks or Interface",
        takes="file",
    ),
    "shiny": Preset(
        command=(
            "R",
            "--no-save",
            "--no-restore",
            "--quiet",
            "-e",
            # The path goes in by the environment, never into R's code: a quote, backslash or
            # newline in it must not end R's string (nor the R front end's word splitting).
            "shiny::runApp(Sys.getenv('JHSNP_SHINY_APP'), port={port}, host='127.0.0.1', "
            "launch.browser=FALSE)",
        ),
        needs_program="R",
        install="apt-get install r-cran-shiny, or install.packages('shiny') in R",
        settings={"ready_timeout": 30.0},
        env={"JHSNP_SHINY_APP": "{presentation_path}"},
        what="an R Shiny app (app.R, or its folder)",
    ),
    "static": Preset(
        command=(_PYTHON, "{static_server}", "--port", "{port}", "{presentation_path}"),
        what="a folder of files (an HTML report, a built Jupyter Book); add --listing after "
        "-- to list folders without index.html",
        takes="folder",
        owns=("--port", "--bind"),
    ),
}

# `auto`: a .py file names its framework by what it imports; the first found here wins.
_IMPORTS = ("streamlit", "gradio", "dash", "panel", "bokeh")


def infer_app(path: str) -> str:
    """The preset for `path`: .ipynb → voila, a .py importing a framework → that framework,
    app.R (or a folder with one) → shiny, another folder → static."""
    p = Path(path)
    if p.is_dir():
        return "shiny" if (p / "app.R").is_file() or (p / "server.R").is_file() else "static"
    if not p.is_file():
        raise PresetError(f"--app auto: {path!r} is neither a file nor a folder")
    if p.suffix == ".ipynb":
        return "voila"
    if p.suffix.lower() == ".r":
        return "shiny"
    if p.suffix == ".py":
        found = imported_modules(p.read_text(encoding="utf-8", errors="replace"))
        for name in _IMPORTS:
            if name in found:
                return name
        raise PresetError(
            f"--app auto: {path!r} imports none of {', '.join(_IMPORTS)}; name the framework "
            "with --app TYPE (see --list-apps)"
        )
    raise PresetError(
        f"--app auto cannot tell the framework of {path!r} (.py, .ipynb, .R or a folder); "
        "name it with --app TYPE (see --list-apps)"
    )


def imported_modules(source: str) -> set[str]:
    """Top-level names of the packages a Python source imports (`import a.b`, `from a import b`)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Not Python we can read (a NUL byte, nesting deeper than the parser's stacks): it
        # imports nothing we know, which the caller says in one line.
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def preset_command(name: str, conda_env: str = "") -> list[str]:
    """The preset's command words, our helpers' paths and the interpreter filled in."""
    python = "python3" if conda_env else sys.executable
    fill = {_PYTHON: python, "{runner}": RUNNER, "{static_server}": STATIC_SERVER}
    return [fill.get(word, word) for word in PRESETS[name].command]


def check_installed(name: str, environ: Mapping[str, str]) -> None:
    """PresetError naming what to install when the preset's framework is missing."""
    preset = PRESETS[name]
    if preset.needs_module and importlib.util.find_spec(preset.needs_module) is None:
        missing = preset.needs_module
    elif preset.needs_program and not shutil.which(
        preset.needs_program, path=environ.get("PATH", os.defpath)
    ):
        missing = preset.needs_program
    else:
        return
    raise PresetError(f"--app {name} needs {missing}: {preset.install}")


def describe_presets() -> list[str]:
    """Lines for --list-apps: each preset, what it runs, and the command."""
    lines = []
    for name, preset in PRESETS.items():
        extra = " ".join(
            f"--{k.replace('_', '-')}"
            + ("" if v is True else f" {v:g}" if isinstance(v, float) else f" {v}")
            for k, v in preset.settings.items()
        )
        env = " ".join(f"{k}={v}" for k, v in preset.env.items())
        lines.append(f"{name}\t{preset.what}")
        lines.append("\t" + " ".join(_quote(w) for w in preset_command(name)))
        if extra:
            lines.append(f"\tproxy: {extra}")
        if env:
            lines.append(f"\tenvironment: {env}")
    lines.append(
        "auto\tfrom --presentation-path: .ipynb → voila, .py → what it imports "
        "(streamlit, gradio, dash, panel, bokeh), app.R or its folder → shiny, "
        "another folder → static"
    )
    return lines


def _quote(word: str) -> str:
    """A word as a person would type it in a shell (for reading; placeholders left as they are)."""
    if word and not any(c.isspace() or c in "*'\"$;&|<>" for c in word):
        return word
    return '"' + word.replace('"', '\\"') + '"'


def apply_preset(
    name: str,
    options: dict[str, Any],
    command: list[str],
    explicit: Collection[str],
    environ: Mapping[str, str],
    *,
    check_framework: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """The options and command for `--app name`; `command` (the words after `--`) is appended.

    Options named in `explicit` (given on the command line) keep their value; `options["env"]`,
    already a dict, is laid over the preset's environment; `options["app_name"]` is the preset
    run (auto's choice). `check_framework=False` when the framework is yet to be installed
    (the repository declares its packages: app_packages.py).
    """
    path = str(options.get("presentation_path") or "")
    if not path:
        raise PresetError(f"--app {name} needs the app's file: --presentation-path FILE")
    # Where the app will look for it (Settings.presentation_abspath): a relative path is taken
    # in the checkout, which does not exist yet, or in the app's working directory.
    path = os.path.expanduser(path)
    # A relative path inside a --repo checkout cannot be looked at before the checkout.
    checkable = os.path.isabs(path) or not (options.get("repo") or environ.get("JHSNP_REPO"))
    if not os.path.isabs(path) and checkable:
        base = options.get("working_dir") or environ.get("JUPYTERHUB_ROOT_DIR") or os.getcwd()
        path = os.path.join(os.path.expanduser(str(base)), path)
    path = os.path.abspath(path)
    if name == "auto":
        if not checkable:
            raise PresetError(
                "--app auto cannot look at a file that the --repo checkout has not made yet: "
                "name the framework (--app TYPE, see --list-apps)"
            )
        name = infer_app(path)
    if name not in PRESETS:
        raise PresetError(
            f"--app {name!r} is not known (known: {', '.join(PRESETS)}, auto; see --list-apps)"
        )
    if check_framework and not options.get("conda_env"):
        check_installed(name, environ)
    if checkable:
        check_path(name, path)
    check_owned_options(name, command)
    preset = PRESETS[name]
    options = dict(options)
    for key, value in preset.settings.items():
        if key not in explicit:
            options[key] = value
    options["env"] = {**preset.env, **(options.get("env") or {})}
    options["app_name"] = name
    words = preset_command(name, str(options.get("conda_env") or ""))
    return options, words + list(command)


def check_path(name: str, path: str) -> None:
    """PresetError when `path` is missing, or is a file where the app serves a folder (or the
    other way round): one line at start-up, not an app that fails at every start."""
    if not os.path.exists(path):
        raise PresetError(f"--app {name}: --presentation-path {path!r} does not exist")
    takes = PRESETS[name].takes
    kind = "folder" if os.path.isdir(path) else "file"
    if takes and kind != takes:
        hint = " (give the folder that holds it)" if takes == "folder" else ""
        raise PresetError(
            f"--app {name} serves a {takes}, and --presentation-path {path!r} is a {kind}{hint}"
        )


def check_owned_options(name: str, command: Collection[str]) -> None:
    """PresetError when the words added to the preset's command set an option the preset owns
    (`--server.port N` for streamlit): the app would listen where the proxy does not look."""
    owned = PRESETS[name].owns
    for word in command:
        option = spell_dashes(word).split("=", 1)[0]
        if option in owned:
            raise PresetError(
                f"--app {name} sets {option} itself (the proxy must know the app's port, "
                f"address and base URL): remove {word!r} from the words after --"
                + ("; --destport chooses the port" if "port" in option.lower() else "")
            )
