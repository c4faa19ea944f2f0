"""An app that needs packages: it imports each module named on its command line at start, and
answers every GET with `module version` lines (and sys.executable), so a test sees which
packages it got, from where.

Usage: python imports_app.py PORT MODULE [MODULE ...]   (standard library only, besides those)
More modules may be named in imports.txt in its working directory (a repository's push).
Exits with status 3, saying which, when a module cannot be imported. Writes its PID to
$TEST_PIDFILE, so the test ends it.
"""

from __future__ import annotations

import importlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, names = int(sys.argv[1]), sys.argv[2:]
if os.path.exists("imports.txt"):
    with open("imports.txt") as listed:
        names += listed.read().split()
if os.environ.get("TEST_PIDFILE"):
    with open(os.environ["TEST_PIDFILE"], "a") as f:
        f.write(f"{os.getpid()}\n")
lines = []
for name in names:
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        print(f"cannot import {name}: {e}", flush=True)
        sys.exit(3)
    version = getattr(module, "__version__", "?")
    lines.append(f"{name} {version} {module.__file__}")
lines.append(f"python {sys.executable}")
BODY = ("\n".join(lines) + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
