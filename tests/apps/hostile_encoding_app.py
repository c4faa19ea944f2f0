"""A test app for the review of --rewrite-urls (tests/test_security_review_22.py): answers whose
encoding, charset or headers a rewriting proxy could get wrong, some echoing what the viewer
sent (as an app echoes a search term, escaped for HTML).

Usage: python hostile_encoding_app.py PORT

Routes:
  /trailing?enc=deflate|gzip&mib=N&fill=x|nul
                  a small page, compressed, then N MiB of bytes after the compressed stream's
                  end (streamed in 256 KiB writes)
  /members?mib=N  a gzip page of one real member, then N MiB of empty gzip members
  /utf16?q=TEXT&charset=CS&bom=1
                  a UTF-16LE page echoing TEXT (HTML-escaped) in its body; Content-Type
                  `text/html; charset=CS` (none without `charset`), a BOM with `bom=1`
  /encoded?ce=VALUE&body=plain|gzip|gzip2
                  a page with `Content-Encoding: VALUE`; its body plain, gzipped, or gzipped
                  twice
  /csp?policy=P   a page with Content-Security-Policy P
"""

from __future__ import annotations

import asyncio
import gzip
import html
import os
import sys
import zlib

from tornado import web
from tornado.httpserver import HTTPServer

PAGE = b'<!DOCTYPE html><html><head><title>t</title></head><body><a href="/x">x</a></body></html>'
STEP = 256 * 1024


class Trailing(web.RequestHandler):
    async def get(self):
        encoding = self.get_argument("enc", "deflate")
        size = int(self.get_argument("mib", "1")) << 20
        fill = b"\0" if self.get_argument("fill", "x") == "nul" else b"x"
        self.set_header("Content-Type", "text/html")
        self.set_header("Content-Encoding", encoding)
        self.write(gzip.compress(PAGE) if encoding == "gzip" else zlib.compress(PAGE))
        await self.flush()
        block = fill * STEP
        for _ in range(size // STEP):
            self.write(block)
            await self.flush()
        self.finish()


class Members(web.RequestHandler):
    async def get(self):
        size = int(self.get_argument("mib", "1")) << 20
        self.set_header("Content-Type", "text/html")
        self.set_header("Content-Encoding", "gzip")
        self.write(gzip.compress(PAGE, mtime=0))
        empty = gzip.compress(b"", mtime=0)
        block = empty * (STEP // len(empty))
        for _ in range(size // len(block)):
            self.write(block)
            await self.flush()
        self.finish()


class Utf16(web.RequestHandler):
    def get(self):
        text = html.escape(self.get_argument("q", ""))
        charset = self.get_argument("charset", "")
        self.set_header("Content-Type", "text/html" + (f"; charset={charset}" if charset else ""))
        page = f"<html><head><title>t</title></head><body><p>{text}</p></body></html>"
        bom = b"\xff\xfe" if self.get_argument("bom", "") else b""
        self.finish(bom + page.encode("utf-16-le"))


class Encoded(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html")
        self.set_header("Content-Encoding", self.get_argument("ce"))
        self.set_header("ETag", '"v1"')
        body = self.get_argument("body", "plain")
        if body == "plain":
            self.finish(PAGE)
        elif body == "gzip":
            self.finish(gzip.compress(PAGE))
        else:
            self.finish(gzip.compress(gzip.compress(PAGE)))

    head = get


class Csp(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html")
        self.set_header("Content-Security-Policy", self.get_argument("policy"))
        self.finish(PAGE)


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application(
        [
            (r"/trailing", Trailing),
            (r"/members", Members),
            (r"/utf16", Utf16),
            (r"/encoded", Encoded),
            (r"/csp", Csp),
        ]
    )
    pidfile = os.environ.get("TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")

    async def serve() -> None:
        HTTPServer(app).listen(port, "127.0.0.1")
        print(f"hostile_encoding_app listening on {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
