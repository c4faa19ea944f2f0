"""A small app that tells one of its environment variables to whoever asks, and prints none.

Usage: python env_app.py PORT  (stdlib only)

Routes:
  /env?name=NAME   the variable's value as text/plain (404 when it is not set)
  /crash           the process exits with status 3, at once

It writes its pid into $TEST_PIDFILE, and prints one line per request (the path, no value), so
a test that scans the proxy's log for a secret sees the app's output too.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class EnvHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        print(f"env app got {url.path}", flush=True)
        if url.path == "/crash":
            os._exit(3)
        name = parse_qs(url.query).get("name", [""])[0]
        value = os.environ.get(name) if url.path == "/env" else None
        body = (value or "").encode()
        self.send_response(200 if value is not None else 404)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    pidfile = os.environ.get("TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), EnvHandler)
    print("env app listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
