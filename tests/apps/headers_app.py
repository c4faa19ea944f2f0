"""A small page-serving app that answers with the response headers it is asked for.

Usage: python headers_app.py PORT

Every GET answers 200 with a small HTML page (`<p id="app-text">app content</p>`) and, for each
`h=NAME:VALUE` in the query, that response header: `/?h=X-Frame-Options:DENY`.
Values are sent as their UTF-8 bytes.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>headers app</title></head>
<body><p id="app-text">app content</p></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        for key, value in parse_qsl(urlsplit(self.path).query):
            if key == "h":
                name, _, header_value = value.partition(":")
                # As UTF-8 bytes on the wire (http.server writes a str as latin-1).
                self.send_header(name, header_value.strip().encode().decode("latin-1"))
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def main() -> None:
    pidfile = os.environ.get("TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main()
