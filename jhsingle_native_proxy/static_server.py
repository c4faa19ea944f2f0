"""Serve a folder of files read-only: `python3 static_server.py --port PORT [--listing] DIR`.

Run by `--app static` (see presets.py). Standard library only. A folder's index.html is its page;
a folder without one answers 404 unless --listing (a report's folder is not browsable by
accident), and so does any path with a dot file or folder in it (.git, .env). Content types
come from the file's extension (.js, .wasm, .svg included). Links in listings are relative, so
the proxy can strip its prefix.
"""

from __future__ import annotations

import argparse
import functools
import os
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class StaticHandler(SimpleHTTPRequestHandler):
    listing = False
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".svg": "image/svg+xml",
        ".ipynb": "application/x-ipynb+json",
    }

    def send_head(self):
        # Dot files and folders (.git, .env, .ipynb_checkpoints) are not part of a report, and
        # may hold secrets that viewers other than the owner must not read.
        path = urllib.parse.unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        if any(part.startswith(".") for part in path.split("/") if part):
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        target = self.translate_path(self.path)
        # A folder is served by its index file, which may itself be a link: check that too.
        candidates = [target]
        if os.path.isdir(target):
            candidates += [os.path.join(target, index) for index in ("index.html", "index.htm")]
        if not all(self._stays_inside(path) for path in candidates if os.path.lexists(path)):
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        return super().send_head()

    def _stays_inside(self, path: str) -> bool:
        """Symbolic links are followed only within the folder, and never to a dot file: a link
        (from a checked-out repository, say) must not serve ~/.ssh or a file outside it."""
        root = os.path.realpath(self.directory)
        real = os.path.realpath(path)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            return False
        inside = os.path.relpath(real, root)
        return not any(part.startswith(".") for part in inside.split(os.sep) if part != ".")

    def list_directory(self, path):
        if not self.listing:
            self.send_error(HTTPStatus.NOT_FOUND, "No index.html in this folder")
            return None
        return super().list_directory(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="static_server.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--listing", action="store_true", help="list folders without index.html")
    parser.add_argument("directory")
    options = parser.parse_args(argv)
    directory = os.path.abspath(options.directory)
    if not os.path.isdir(directory):
        raise SystemExit(f"Error: {directory} is not a folder")
    handler = type("Handler", (StaticHandler,), {"listing": options.listing})
    server = ThreadingHTTPServer(
        (options.bind, options.port), functools.partial(handler, directory=directory)
    )
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
