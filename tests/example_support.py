"""Running a recipe of examples/ the way its comment tells a person to, for the example tests.

`sh examples/NAME.sh --port P` with `JUPYTERHUB_SERVICE_PREFIX=/user/test/`: the exact command
an admin would copy, so a recipe that breaks fails its test. The frameworks come from the
`examples` extra (`pip install -e '.[test,examples]'`); without one its test is skipped, except
under CI (the CI variable set), where a missing framework is a failure, never a silent skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Proxy, free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PREFIX = "/user/test/"


# How each example test starts its app: the recipe (examples/NAME.sh), or `--app NAME` with the
# recipe's app file as --presentation-path (presets.py), through the real CLI.
HOW = pytest.mark.parametrize("how", ["recipe", "preset"])
# The preset and the user's file for each recipe.
PRESET_OF = {
    "streamlit.sh": ("streamlit", "streamlit_app.py"),
    "voila.sh": ("voila", "voila_app.ipynb"),
    "panel.sh": ("panel", "panel_app.py"),
    "bokeh.sh": ("bokeh", "bokeh_app.py"),
    "dash.sh": ("dash", "dash_app.py"),
    "gradio.sh": ("gradio", "gradio_app.py"),
}


def require_program(program: str) -> None:
    """Skip the test when `program` is not on PATH; fail instead under CI."""
    if shutil.which(program):
        return
    message = f"{program} is not on PATH"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def running(how: str, script: str, directory: Path, **kwargs) -> contextlib.AbstractContextManager:
    """`example_running(script)` for "recipe", `preset_running` with its file for "preset"."""
    if how == "recipe":
        return example_running(script, directory, **kwargs)
    app, file = PRESET_OF[script]
    return preset_running(app, EXAMPLES / file, directory, **kwargs)


def require(module: str) -> None:
    """Skip the test when `module` is not installed; fail instead under CI."""
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed (pip install -e '.[examples]')"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def example_running(
    script: str,
    directory: Path,
    *proxy_args: str,
    env: dict[str, str] | None = None,
    ready_timeout: float = 120,
) -> Iterator[Proxy]:
    """Start `examples/<script>` behind the proxy and wait until the app is ready.

    The recipe `exec`s the proxy, so the process started here is the proxy itself: stopping it
    (SIGTERM, then SIGKILL) ends the app's whole process group too, in the `finally`.
    """
    port = free_port()
    log_path = directory / f"{Path(script).stem}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    # The recipe calls `jhsingle-native-proxy`: this interpreter's, first on the PATH.
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment["PATH"]
    environment["JUPYTERHUB_SERVICE_PREFIX"] = PREFIX
    environment.update(env or {})
    argv = ["sh", str(EXAMPLES / script), "--port", str(port)]
    argv += ["--ready-timeout", f"{ready_timeout:g}", *proxy_args]
    with _proxy_started(argv, log_path, environment, directory, port, ready_timeout) as proxy:
        yield proxy


@contextlib.contextmanager
def preset_running(
    app: str, file: Path, directory: Path, *proxy_args: str, ready_timeout: float = 120
) -> Iterator[Proxy]:
    """`jhsingle-native-proxy --authtype none --app APP --presentation-path FILE` under PREFIX,
    started and stopped as example_running does; no variable of the recipes is exported (the
    preset must set what its framework needs)."""
    port = free_port()
    log_path = directory / f"preset-{app}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment["PATH"]
    environment["JUPYTERHUB_SERVICE_PREFIX"] = PREFIX
    argv = [sys.executable, "-m", "jhsingle_native_proxy", "--authtype", "none"]
    argv += ["--port", str(port), "--ready-timeout", f"{ready_timeout:g}"]
    argv += ["--app", app, "--presentation-path", str(file), *proxy_args]
    with _proxy_started(argv, log_path, environment, directory, port, ready_timeout) as proxy:
        yield proxy


@contextlib.contextmanager
def _proxy_started(argv, log_path, environment, directory, port, ready_timeout):
    """Start the proxy (`argv`; a recipe `exec`s it), wait until the app is ready, and stop it
    and the app's whole process group in the `finally`."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=str(directory),
            stdin=subprocess.DEVNULL,
        )
    proxy = Proxy(process, port, PREFIX, log_path, directory / "no-app-pids.txt")
    try:
        proxy.wait_ready(timeout=ready_timeout + 10)
        assert_app_listens_on_loopback_only(proxy)
        yield proxy
    finally:
        proxy.cleanup()


def assert_app_listens_on_loopback_only(proxy: Proxy) -> None:
    """Every TCP port the app's processes listen on is on a loopback address (/proc/net/tcp):
    an app bound to every interface is reachable on the machine's network around the login."""
    from loadgen import is_loopback, listening_addresses, process_tree

    listening = listening_addresses(process_tree(proxy.pid))
    assert listening, "the app listens on no TCP port: is the check looking at the right place?"
    outside = sorted(a for a in listening if not is_loopback(a[0]))
    assert not outside, f"the app listens beyond loopback: {outside}"
