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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Proxy, free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PREFIX = "/user/test/"


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
        yield proxy
    finally:
        proxy.cleanup()
