"""An app that holds memory: for the console's memory figure and the kernel's OOM killer.

Usage: python memory_app.py PORT [HOLD_MIB]   (standard library only)
It touches HOLD_MIB MiB at start (so they are resident), then listens. Routes:
  /        `holding N MiB`
  /grow?mib=N   allocates N MiB more, 16 MiB at a time, each page touched (past a memory
                limit: the kernel kills it before it answers)
Writes its PID to $TEST_PIDFILE, so the test ends it.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CHUNK_MIB = 16
held: list[bytearray] = []


def hold(mib: int) -> None:
    for _ in range(0, mib, CHUNK_MIB):
        block = bytearray(CHUNK_MIB * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        held.append(block)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.endswith("/grow"):
            hold(int(parse_qs(url.query).get("mib", ["0"])[0]))
        body = f"holding {len(held) * CHUNK_MIB} MiB\n".encode()
        print(f"memory app: {body.decode().strip()} after GET {self.path}", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


if __name__ == "__main__":
    if os.environ.get("TEST_PIDFILE"):
        with open(os.environ["TEST_PIDFILE"], "a") as f:
            f.write(f"{os.getpid()}\n")
    hold(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(f"memory app: holding {len(held) * CHUNK_MIB} MiB, pid {os.getpid()}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
