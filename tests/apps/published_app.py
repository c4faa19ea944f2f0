"""The app a publish-mode test commits to its repository: it answers with version.txt.

Usage: python published_app.py PORT   (run from the revision's folder, which holds version.txt)

Routes: /           the text of version.txt, read at start (which revision this is)
        /slow?s=S   answers after S seconds (a request in flight across a switch); prints
                    `app got URI` when it arrives
        /ws         websocket echo, each message answered as "<version>:<message>"
Behaviour from files in its folder: `crash` present: exit with status 3 at start; `hang`
present: never listen (never ready). Writes its PID to $TEST_PIDFILE, so the test ends it.
"""

from __future__ import annotations

import asyncio
import os
import sys

from tornado import web, websocket

with open("version.txt") as version_file:
    VERSION = version_file.read().strip()


class Root(web.RequestHandler):
    def get(self) -> None:
        self.finish(VERSION)


class Slow(web.RequestHandler):
    async def get(self) -> None:
        print(f"app got {self.request.uri}", flush=True)
        await asyncio.sleep(float(self.get_argument("s", "1")))
        self.finish(VERSION)


class Echo(websocket.WebSocketHandler):
    def on_message(self, message) -> None:
        self.write_message(f"{VERSION}:{message}")


async def main() -> None:
    if os.environ.get("TEST_PIDFILE"):
        with open(os.environ["TEST_PIDFILE"], "a") as f:
            f.write(f"{os.getpid()}\n")
    if os.path.exists("crash"):
        sys.exit(3)
    if not os.path.exists("hang"):
        web.Application([("/", Root), ("/slow", Slow), ("/ws", Echo)]).listen(
            int(sys.argv[1]), "127.0.0.1"
        )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
