"""Serve the Dash or Gradio app object that a user's Python file makes, behind the proxy.

    python3 runners.py dash|gradio --port PORT --base-url PREFIX FILE [ARG ...]

Run by `--app dash` / `--app gradio` (see presets.py) by this file's path, so it needs nothing
but the standard library and the framework, and also works in a conda environment that lacks
jhsingle_native_proxy. The file runs as a module named `__jhsnp_app__`, so its own
`if __name__ == "__main__": app.run(...)` does not run; its sys.argv is [FILE, ARG ...]. Then
the app object is found among its globals (`app` for Dash, `demo` for Gradio first, else the
only one) and served on 127.0.0.1:PORT, at "/" (the proxy strips the prefix), with the prefix
in the URLs it gives the browser.

Dash takes the prefix from DASH_REQUESTS_PATHNAME_PREFIX when the file does not set
requests_pathname_prefix itself (the preset sets it); a Gradio file that calls launch() at
import time reads GRADIO_SERVER_PORT and GRADIO_ROOT_PATH instead (also set by the preset).
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import sys

_PREFERRED = {"dash": "app", "gradio": "demo"}


def find_app(namespace: dict, kind: type, preferred: str, path: str):
    """The app object of `kind` in the file's globals: `preferred` by name, else the only one."""
    if isinstance(namespace.get(preferred), kind):
        return namespace[preferred]
    found = {name: value for name, value in namespace.items() if isinstance(value, kind)}
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise SystemExit(f"Error: {path} makes no {kind.__name__} object at its top level")
    raise SystemExit(
        f"Error: {path} makes several {kind.__name__} objects ({', '.join(sorted(found))}); "
        f"call the one to serve {preferred!r}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="runners.py")
    parser.add_argument("framework", choices=sorted(_PREFERRED))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", default="/")
    parser.add_argument("file")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    path = os.path.abspath(options.file)
    # As `python3 FILE` would: its folder first on sys.path, its own arguments in sys.argv.
    sys.path.insert(0, os.path.dirname(path))
    sys.argv = [path, *options.args]
    if options.framework == "dash":
        os.environ.setdefault("DASH_REQUESTS_PATHNAME_PREFIX", options.base_url)
        os.environ.setdefault("DASH_ROUTES_PATHNAME_PREFIX", "/")
        Dash = _framework("dash").Dash

        namespace = runpy.run_path(path, run_name="__jhsnp_app__")
        app = find_app(namespace, Dash, "app", path)
        app.run(host="127.0.0.1", port=options.port, debug=False)
    else:
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        gr = _framework("gradio")

        namespace = runpy.run_path(path, run_name="__jhsnp_app__")
        demo = find_app(namespace, gr.Blocks, "demo", path)
        demo.launch(
            server_name="127.0.0.1",
            server_port=options.port,
            root_path=options.base_url.rstrip("/"),
            share=False,
            **_supported(demo.launch, ssr_mode=False, mcp_server=False),
        )


def _framework(name: str):
    """The framework's module. Missing (a --conda-env without it: the proxy cannot look there
    first), the owner reads one line on the failure page saying what to install, not a
    traceback; a framework that is there but fails to import keeps its traceback."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise SystemExit(
            f"Error: --app {name} needs {name}, which {sys.executable} cannot import: "
            f"pip install {name}"
        ) from None


def _supported(function, **kwargs) -> dict:
    """The keyword arguments `function` accepts (older Gradio lacks ssr_mode, mcp_server)."""
    import inspect

    parameters = inspect.signature(function).parameters
    return {k: v for k, v in kwargs.items() if k in parameters}


if __name__ == "__main__":
    main()
