"""A test app that knows nothing of any prefix: every URL it writes starts at `/` (issue 22).

Usage: python root_absolute_app.py PORT [--gzip] [--csp POLICY]
  --gzip         HTML and CSS gzip-compressed whatever the request accepts (some apps do)
  --csp POLICY   every page carries this Content-Security-Policy; `NONCE` in it is replaced
                 by the page's nonce, which its inline script carries

Routes:
  /                the page: links, a form, images, srcset, a stylesheet, scripts; its script
                   uses fetch, XHR, WebSocket, EventSource, sendBeacon and script-set src, and
                   writes what worked into <body data-*>
  /static/...      style.css (url() and @import), more.css, app.js, late.js, images
  /api/x           JSON, sets the cookie seen=1 (Path=/)
  /api/cookie      {"seen": the cookie's value}
  /api/xhr         JSON
  /go              302 to /page2
  /page2           a page; POST /submit 303s to it too
  /hub-links       links to the hub's pages (/hub/home, a /hub/ url() in CSS) and to /page2
  /events          server-sent events: two, then the stream stays open
  /ws              websocket echo ("echo:" + message)
  /beacon          POST: counted; GET /api/beacons tells the count
  /big-page?mib=N  an N MiB page (links, images), streamed
  /br-page         a brotli-compressed page (whatever the request accepts)
  /broken-gzip     a gzip page that turns to garbage after its first bytes
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os

from tornado import web, websocket
from tornado.httpserver import HTTPServer

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f2d5b60000000049454e44ae426082"
)

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>root absolute</title>
<link rel="icon" href="/static/icon.png">
<link rel="stylesheet" href="/static/style.css">
<style>.inline {{ background: url(/static/inline.png); }}</style>
</head>
<body data-ready="no">
<a id="link" href="/page2">page 2</a>
<a id="go" href="/go">via a redirect</a>
<form id="form" action="/submit" method="post"><input name="x" value="1">
<button id="submit">send</button></form>
<img id="img" src="/static/a.png" alt="">
<img srcset="/static/b.png 1x, /static/c.png 2x" alt="">
<p class="inline">x</p>
<div style="background-image: url('/static/style-attr.png')">x</div>
<script src="/static/app.js"{nonce_attr}></script>
<script{nonce_attr}>document.body.dataset.inline = "ran";</script>
</body>
</html>
"""

APP_JS = r"""
(function () {
  var body = document.body;
  function done(name, value) { body.dataset[name] = value; }
  fetch("/api/x").then(function (r) { return r.json(); }).then(function (j) {
    done("fetch", j.ok ? "ok" : "bad");
    return fetch("/api/cookie");
  }).then(function (r) { return r.json(); }).then(function (j) { done("cookie", j.seen); });
  fetch(location.origin + "/api/x").then(function (r) { done("fetchAbsolute", String(r.status)); });
  var xhr = new XMLHttpRequest();
  xhr.open("GET", "/api/xhr");
  xhr.onload = function () { done("xhr", JSON.parse(xhr.responseText).xhr); };
  xhr.send();
  var ws = new WebSocket("ws://" + location.host + "/ws");
  ws.onopen = function () { ws.send("ping"); };
  ws.onmessage = function (e) { done("ws", e.data); ws.close(); };
  var events = new EventSource("/events");
  var got = [];
  events.onmessage = function (e) {
    got.push(e.data);
    if (got.length === 2) { done("events", got.join(",")); events.close(); }
  };
  done("beacon", String(navigator.sendBeacon("/beacon", "hello")));
  var img = document.createElement("img");
  img.onload = function () { done("scriptImg", "loaded"); };
  img.src = "/static/d.png";
  document.body.appendChild(img);
  var script = document.createElement("script");
  script.setAttribute("src", "/static/late.js");
  document.head.appendChild(script);
  fetch("/go").then(function (r) { done("redirect", r.url); });
})();
"""

STYLE = """@import "/static/more.css";
body { background: url(/static/bg.png); }
"""


class Base(web.RequestHandler):
    def compressed(self, body: bytes, content_type: str) -> None:
        self.set_header("Content-Type", content_type)
        if self.application.settings["compress_pages"]:
            body = gzip.compress(body)
            self.set_header("Content-Encoding", "gzip")
        self.finish(body)


class Page(Base):
    def get(self):
        policy = self.application.settings["csp"]
        nonce = "abc" if policy else ""  # NONCE in --csp
        if policy:
            self.set_header("Content-Security-Policy", policy.replace("NONCE", nonce))
        attr = f' nonce="{nonce}"' if nonce else ""
        self.compressed(PAGE.format(nonce_attr=attr).encode(), "text/html; charset=utf-8")

    head = get


class BrotliPage(web.RequestHandler):
    def get(self):
        import brotli

        self.set_header("Content-Type", "text/html")
        self.set_header("Content-Encoding", "br")
        self.finish(
            brotli.compress(b'<html><head></head><body><img src="/static/a.png"></body></html>')
        )


class BigPage(web.RequestHandler):
    """`/big-page?mib=N`: an N MiB page of links and images, streamed in 64 KiB writes."""

    async def get(self):
        size = int(self.get_argument("mib", "50")) << 20
        self.set_header("Content-Type", "text/html")
        row = b'<p><a href="/item/1">item</a> <img src="/static/a.png" alt=""> text text</p>\n'
        block = row * (65536 // len(row))
        self.write(b"<!DOCTYPE html><html><head><title>big</title></head><body>\n")
        sent = 0
        while sent < size:
            self.write(block)
            sent += len(block)
            await self.flush()
        self.finish(b"</body></html>\n")


class BrokenGzip(web.RequestHandler):
    async def get(self):
        self.set_header("Content-Type", "text/html")
        self.set_header("Content-Encoding", "gzip")
        good = gzip.compress(b"<html><body>" + b"<p>x</p>" * 100000)
        self.write(good[:4000])
        await self.flush()
        self.finish(b"\xff" * 4000)


class Static(Base):
    def get(self, name):
        if name.endswith(".png"):
            self.set_header("Content-Type", "image/png")
            self.finish(PNG)
        elif name == "style.css":
            self.compressed(STYLE.encode(), "text/css")
        elif name == "more.css":
            self.compressed(b"a { color: green; }\n", "text/css")
        elif name == "app.js":
            self.set_header("Content-Type", "text/javascript")
            self.finish(APP_JS)
        elif name == "late.js":
            self.set_header("Content-Type", "text/javascript")
            self.finish('document.body.dataset.late = "ran";\n')
        else:
            raise web.HTTPError(404)


class ApiX(web.RequestHandler):
    def get(self):
        self.set_header("Set-Cookie", "seen=1; Path=/")
        self.finish({"ok": True})


class ApiCookie(web.RequestHandler):
    def get(self):
        self.finish({"seen": self.get_cookie("seen", "none")})


class ApiXhr(web.RequestHandler):
    def get(self):
        self.finish({"xhr": "ok"})


class Go(web.RequestHandler):
    def get(self):
        self.redirect("/page2")


class Page2(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html")
        self.finish('<!DOCTYPE html><html><head><title>page 2</title></head><body>'
                    '<p id="two">page two</p><a href="/">back</a></body></html>')  # fmt: skip


class HubLinks(web.RequestHandler):
    """Links to JupyterHub's own pages beside the app's: the hub's stay as they are."""

    def get(self):
        self.set_header("Content-Type", "text/html")
        self.finish('<!DOCTYPE html><html><head><title>hub links</title>'
                    '<style>i{background:url(/hub/logo)}</style></head><body>'
                    '<a id="hub" href="/hub/home">home</a><a id="app" href="/page2">2</a>'
                    '</body></html>')  # fmt: skip


class Submit(web.RequestHandler):
    def post(self):
        self.redirect("/page2", status=303)


class Events(web.RequestHandler):
    async def get(self):
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        for n in ("one", "two"):
            self.write(f"data: {n}\n\n")
            await self.flush()
        # The stream stays open until the client leaves.
        while not self.request.connection.stream.closed():
            await asyncio.sleep(0.5)


class Echo(websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message("echo:" + message)


class Beacon(web.RequestHandler):
    def post(self):
        self.application.settings["beacons"].append(self.request.body.decode())
        self.set_status(204)

    def get(self):
        self.finish({"beacons": self.application.settings["beacons"]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--csp", default="")
    args = parser.parse_args()
    app = web.Application(
        [
            (r"/", Page),
            (r"/static/(.*)", Static),
            (r"/api/x", ApiX),
            (r"/api/cookie", ApiCookie),
            (r"/api/xhr", ApiXhr),
            (r"/api/beacons", Beacon),
            (r"/go", Go),
            (r"/page2", Page2),
            (r"/hub-links", HubLinks),
            (r"/submit", Submit),
            (r"/events", Events),
            (r"/ws", Echo),
            (r"/beacon", Beacon),
            (r"/br-page", BrotliPage),
            (r"/big-page", BigPage),
            (r"/broken-gzip", BrokenGzip),
        ],
        compress_pages=args.gzip,
        csp=args.csp,
        beacons=[],
    )
    pidfile = os.environ.get("TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")

    async def serve() -> None:
        HTTPServer(app).listen(args.port, "127.0.0.1")
        print(f"root_absolute_app listening on {args.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
