"""A small real web app for the tests: it shows what it received and streams what it is asked to.

Usage: python echo_app.py PORT [--pidfile FILE] [--delay-start SECONDS] [--exit-after SECONDS]
                           [--wait-for-file PATH]  (listens only once PATH exists)
                           [--listening-stamp PATH]  (writes time.time() there once listening)

Routes:
  /echo            JSON of method, raw uri, headers (as a list of pairs), body length
  /upload          streams the request body, answers {"bytes": n, "sha256": ...}
  /download?n=N    streams N bytes (a repeating pattern) in 64 KiB chunks, no Content-Length
                   (with &length=1: with a Content-Length)
  /sse?n=N&gap=S   server-sent events: N events, S seconds apart
  /cookies         two Set-Cookie headers
  /redirect?to=X   302 to X
  /gzip            a gzip body with Content-Encoding: gzip
  /slow?s=S        answers after S seconds
  /exit?code=C     the process exits with status C
  /gated-sse       event 0 at once, event 1 only after a GET /release
  /hop             a response carrying hop-by-hop headers
  /close-listener  stops listening and drops its connections, but keeps running
  /ws              websocket echo (text and binary); with ?set-cookie=RAW (repeatable) its
                   handshake answer carries each RAW as a Set-Cookie header
  .../set-cookie?name=N  sets the cookie N=1 (Path=/)
  .../set-cookie?raw=RAW  one Set-Cookie header per `raw` argument, written as given
  /ws-open         {"open": N}: websockets open on the app right now
  .../dir          301 to the same path with a slash added, as a file server does for folders
  /redirect-self?path=P  302 to http://127.0.0.1:PORT{P}, the app's own absolute URL
  /env?name=NAME   the environment variable's value as text (404 when unset); never printed

Every request is printed as `app got METHOD URI`, so tests can tell what reached the app.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from tornado import web, websocket
from tornado.httpserver import HTTPServer

PATTERN = bytes(range(256)) * 256  # 64 KiB


def peer_port(request):
    peer = request.connection.stream.socket.getpeername()
    return peer[1] if isinstance(peer, tuple) else None


class Echo(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND")

    def _answer(self, *args):
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "method": self.request.method,
                    "uri": self.request.uri,
                    "headers": list(self.request.headers.get_all()),
                    "body_length": len(self.request.body or b""),
                    "peer_port": peer_port(self.request),
                }
            )
        )

    get = head = post = put = delete = patch = options = propfind = _answer


@web.stream_request_body
class Upload(web.RequestHandler):
    def prepare(self):
        self.request.connection.set_max_body_size(1 << 40)
        self.count = 0
        self.digest = hashlib.sha256()

    def data_received(self, chunk):
        self.count += len(chunk)
        self.digest.update(chunk)

    def post(self):
        self.finish(
            {
                "bytes": self.count,
                "sha256": self.digest.hexdigest(),
                "content_length": self.request.headers.get("Content-Length"),
                "transfer_encoding": self.request.headers.get("Transfer-Encoding"),
            }
        )

    put = post


class Download(web.RequestHandler):
    async def get(self):
        n = int(self.get_argument("n"))
        self.set_header("Content-Type", "application/octet-stream")
        if self.get_argument("length", ""):
            self.set_header("Content-Length", str(n))
        while n > 0:
            chunk = PATTERN[: min(n, len(PATTERN))]
            self.write(chunk)
            await self.flush()
            n -= len(chunk)


class SSE(web.RequestHandler):
    async def get(self):
        n = int(self.get_argument("n", "3"))
        gap = float(self.get_argument("gap", "0.5"))
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        for i in range(n):
            self.write(f"data: {i}\n\n")
            await self.flush()
            if i < n - 1:
                await asyncio.sleep(gap)


RELEASE = asyncio.Event()


class GatedSSE(web.RequestHandler):
    async def get(self):
        RELEASE.clear()
        self.set_header("Content-Type", "text/event-stream")
        self.write("data: first\n\n")
        await self.flush()
        await RELEASE.wait()
        self.write("data: second\n\n")


class Release(web.RequestHandler):
    def get(self):
        RELEASE.set()
        self.finish("released")


class Hop(web.RequestHandler):
    def get(self):
        self.set_header("Connection", "X-Private")
        self.set_header("X-Private", "secret")
        self.set_header("Keep-Alive", "timeout=5")
        self.set_header("Proxy-Authenticate", "Basic")
        self.set_header("X-Kept", "yes")
        self.finish("hop")


class CloseListener(web.RequestHandler):
    async def get(self):
        self.finish("closing")
        server = self.application.settings["server"]
        server.stop()
        asyncio.get_running_loop().call_later(
            0.05, asyncio.ensure_future, server.close_all_connections()
        )


WS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>echo app</title></head>
<body><h1>echo app</h1><p id="out">waiting</p>
<script>
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host
    + location.pathname.replace(/wspage$/, "ws");
  var ws = new WebSocket(url);
  ws.onopen = function () { ws.send("ping-from-browser"); };
  ws.onmessage = function (e) { document.getElementById("out").textContent = "echo: " + e.data; };
  ws.onerror = function () { document.getElementById("out").textContent = "websocket error"; };
</script></body></html>
"""


class WSPage(web.RequestHandler):
    def get(self):
        self.finish(WS_PAGE)


class Cookies(web.RequestHandler):
    def get(self):
        self.add_header("Set-Cookie", "a=1; Path=/")
        self.add_header("Set-Cookie", "b=2; Path=/")
        self.finish("cookies")


class Redirect(web.RequestHandler):
    def get(self):
        self.redirect(self.get_argument("to"))


class Gzip(web.RequestHandler):
    def get(self):
        self.set_header("Content-Encoding", "gzip")
        self.set_header("Content-Type", "text/plain")
        self.finish(gzip.compress(b"hello compressed world"))


class Slow(web.RequestHandler):
    async def get(self):
        await asyncio.sleep(float(self.get_argument("s")))
        self.finish("slow")


class Env(web.RequestHandler):
    def get(self):
        value = os.environ.get(self.get_argument("name"))
        if value is None:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(value)


class Exit(web.RequestHandler):
    def get(self):
        code = int(self.get_argument("code", "1"))
        self.finish("bye")
        asyncio.get_running_loop().call_later(0.05, os._exit, code)


LAST_CLOSE: dict = {}
OPEN_WEBSOCKETS = [0]


class WSEcho(websocket.WebSocketHandler):
    """Echoes messages. Commands: "close-me" (closes with 4001), "headers" (the handshake's
    headers as JSON pairs), "send N SIZE" (N binary
    messages of SIZE bytes, as fast as the socket takes them). Picks the LAST subprotocol offered,
    so a test can tell the app's choice from the client's first wish."""

    def check_origin(self, origin):
        return True

    def select_subprotocol(self, subprotocols):
        return subprotocols[-1] if subprotocols else None

    def prepare(self):
        # Headers set before the handshake is accepted go out with its answer.
        for raw in self.get_arguments("set-cookie"):
            self.add_header("Set-Cookie", raw)

    def open(self):
        self.set_nodelay(True)
        OPEN_WEBSOCKETS[0] += 1

    async def on_message(self, message):
        if message == "close-me":
            self.close(4001, "app says bye")
            return
        if message == "headers":  # the handshake's headers, as pairs
            await self.write_message(json.dumps(list(self.request.headers.get_all())))
            return
        if isinstance(message, str) and message.startswith("send "):
            _, n, size = message.split()
            chunk = b"z" * int(size)
            for _ in range(int(n)):
                await self.write_message(chunk, binary=True)
            return
        await self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self):
        OPEN_WEBSOCKETS[0] -= 1
        LAST_CLOSE.update(code=self.close_code, reason=self.close_reason)


class SetCookie(web.RequestHandler):
    def get(self):
        for raw in self.get_arguments("raw"):
            self.add_header("Set-Cookie", raw)
        if self.get_argument("name", ""):
            self.set_cookie(self.get_argument("name"), "1", path="/")
        self.finish("ok")


class WSOpen(web.RequestHandler):
    def get(self):
        self.finish({"open": OPEN_WEBSOCKETS[0]})


class FolderRedirect(web.RequestHandler):
    def get(self):
        self.redirect(self.request.path + "/", permanent=True)


class RedirectSelf(web.RequestHandler):
    def get(self):
        port = self.request.connection.stream.socket.getsockname()[1]
        self.redirect(f"http://127.0.0.1:{port}{self.get_argument('path')}")


class LastClose(web.RequestHandler):
    def get(self):
        self.finish(LAST_CLOSE)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--pidfile", default=os.environ.get("TEST_PIDFILE"))
    parser.add_argument("--delay-start", type=float, default=0)
    parser.add_argument("--wait-for-file", default="", help="listen only once this file exists")
    parser.add_argument("--listening-stamp", default="", help="write the time listening began")
    parser.add_argument("--exit-after", type=float, default=0)
    parser.add_argument("--say", default="")
    parser.add_argument("--say-env", action="append", default=[], help="print this variable")
    parser.add_argument("--unix", default="", help="listen on this unix socket, not the port")
    parser.add_argument("--max-message", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--flood", type=int, default=0, help="MB of output before listening")
    args = parser.parse_args()
    if args.pidfile:
        with open(args.pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    if args.say:
        print(args.say, flush=True)
    print(f"echo app argv: {json.dumps(sys.argv[1:])}", flush=True)
    print(f"echo app cwd: {os.getcwd()}", flush=True)
    print(f"echo app python: {sys.executable}", flush=True)
    for name in args.say_env:
        print(f"echo app env {name}={os.environ.get(name, '')}", flush=True)
    if args.flood:
        line = "flood " + "x" * 1000 + "\n"
        for _ in range(args.flood * 1000):
            sys.stdout.write(line)
            sys.stderr.write(line)
        sys.stdout.write("y" * (2 * 1024 * 1024) + "\n")
        sys.stdout.flush()
        print("flood done", flush=True)
    if args.delay_start:
        await asyncio.sleep(args.delay_start)
    if args.wait_for_file:
        # A start that lasts exactly as long as the test wants: until it creates the file.
        print(f"echo app waiting for {args.wait_for_file}", flush=True)
        while not os.path.exists(args.wait_for_file):
            await asyncio.sleep(0.05)
    if args.exit_after:
        asyncio.get_running_loop().call_later(args.exit_after, os._exit, 0)
    app = web.Application(
        [
            (r"/upload", Upload),
            (r"/download", Download),
            (r"/sse", SSE),
            (r"/cookies", Cookies),
            (r"/redirect", Redirect),
            (r"/gzip", Gzip),
            (r"/slow", Slow),
            (r"/exit", Exit),
            (r"/env", Env),
            (r"/gated-sse", GatedSSE),
            (r"/release", Release),
            (r"/hop", Hop),
            (r"/close-listener", CloseListener),
            (r"/ws", WSEcho),
            (r"/ws-open", WSOpen),
            (r".*/set-cookie", SetCookie),  # .*: for apps that see the prefix too
            (r".*/dir", FolderRedirect),
            (r"/redirect-self", RedirectSelf),
            (r"/last-close", LastClose),
            (r"/wspage", WSPage),
            (r"/.*", Echo),
        ],
        log_function=lambda h: print(f"app got {h.request.method} {h.request.uri}", flush=True),
    )
    server = HTTPServer(app, max_body_size=1 << 40)
    app.settings["server"] = server
    app.settings["websocket_max_message_size"] = args.max_message
    if args.unix:
        from tornado.netutil import bind_unix_socket

        server.add_socket(bind_unix_socket(args.unix))
    else:
        server.listen(args.port, "127.0.0.1")
    print(f"echo app listening on {args.port}", flush=True)
    if args.listening_stamp:
        # When the port opened, for tests that order other events against it.
        Path(args.listening_stamp).write_text(repr(time.time()))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
