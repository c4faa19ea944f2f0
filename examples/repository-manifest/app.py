"""A dashboard in one file (standard library only): its title comes from jhsnp.toml's [env].

Usage: python3 app.py PORT
"""

import html
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TITLE = os.environ.get("DASHBOARD_TITLE", "A dashboard")


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok"
        else:
            body = f"<!doctype html><title>{html.escape(TITLE)}</title>"
            body = (body + f"<h1>{html.escape(TITLE)}</h1>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Page).serve_forever()
