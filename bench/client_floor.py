"""How much CPU does the upstream HTTP client itself cost per small proxied GET?

    python bench/client_floor.py [--seconds 10] [--rounds 2] [--quick] [--profile SECONDS]

Why this exists: issue 11 asks whether aiohttp's client is the floor of what the proxy pays to
talk to the app, or whether a lean keep-alive HTTP/1.1 client built on tornado's own
`HTTP1Connection` would be cheaper. This script answers that question, and only that one: it
does not touch the project's proxy. It runs one minimal tornado proxy (one catch-all GET handler
that streams the app's answer back with write + flush, as the project's relay does) in several
variants, each in a child process pinned to core 0:

  floor         no upstream at all: the handler answers a recorded copy of the app's response
                (same status, headers and body) itself. This is the server side's own cost.
  aiohttp       an aiohttp ClientSession on a keep-alive TCPConnector pool, the project's own
                new_app_session(); the body is read with resp.content.iter_any().
  aiohttp-task  the same, wrapped as the project wraps it: a task, a semaphore turn, then
                wait_for(shield(task)). The difference to "aiohttp" is the wrapping's cost.
  lean          a small keep-alive client: tornado.http1connection.HTTP1Connection over pooled
                IOStreams (TCPClient to connect), an HTTPMessageDelegate that relays headers and
                chunks to the handler as they come, one retry on a fresh connection when a reused
                one turns out closed before any answer.
  lean-timer    lean plus the timeout any real client needs (on the wait for the app's
                headers), as one loop.call_later per request, cancelled when they arrive.
  lean-hdr-tmo  lean with the same timeout left to HTTP1Connection's header_timeout, which
                wraps each header read in gen.with_timeout: the convenient way, at its price.
  simple        tornado's SimpleAsyncHTTPClient with header/streaming callbacks, for reference:
                it opens a new connection per request (no keep-alive), so expect it to be slower.

The app is tests/apps/echo_app.py (GET /echo answers a small JSON body) pinned to core 1, with
wrk (`-c 16 -t 1 --latency`) also on core 1. Each variant, and the app directly ("direct"), is
loaded for --seconds after a short warm-up, --rounds times, the variants interleaved so that
drift on a shared machine spreads over all of them.

How to read the table:

  req/s, p50, p99   as wrk reports them.
  proxy us/req      CPU time (utime + stime from /proc/PID/stat) the proxy process used during
                    the run, divided by the requests wrk completed: the cost of one request.
  proxy cpu%        that CPU time over the run's wall time: near 100% means the proxy was the
                    bottleneck (its core was saturated), below it means something else was.
  client us/req     proxy us/req minus the floor's, same round: what the upstream client and
                    its relaying cost on top of serving the request at all. This is the number
                    that compares clients.
  app us/req        the echo app's CPU per request (it shows, for example, the price the app
                    pays for a new connection per request with "simple").
  core0%, core1%    how busy each core was (any process) during the run. core0% well above
                    proxy cpu% means something else shared the proxy's core: that run's rates
                    are suspect, its CPU per request less so.
  errors            wrk's socket errors plus non-2xx answers; a row with errors is suspect.

The summary gives each variant's proxy CPU per request over the rounds (min and mean; noise
only ever adds CPU, so the min is the steadier estimate), the client's share against the floor,
and the difference to aiohttp, overall and round by round. CPU per request also depends on load:
a loop that is not saturated wakes up for fewer requests at a time and pays more per request,
so compare rows with similar proxy cpu%, or repeat with more --connections.

CPU time is counted in clock ticks (usually 10 ms), so runs of a few seconds at a few thousand
requests per second resolve a few microseconds per request; --quick is a smoke test, not a
measurement. With --profile SECONDS, the aiohttp and lean proxies are also sampled with py-spy
(if it is installed) under the same load and their top self-time functions are printed.

Linux only (it reads /proc and sets CPU affinity); everything listens on 127.0.0.1. Every process
started here is ended in a `finally` by PID (SIGTERM, then SIGKILL); every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The proxy's own list of headers never relayed either way.
from jhsingle_native_proxy.http_hygiene import HOP_BY_HOP

ROOT = Path(__file__).resolve().parent.parent
ECHO_APP = ROOT / "tests" / "apps" / "echo_app.py"
HOST = "127.0.0.1"
PATH = "/echo"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 20.0  # seconds for a process to answer on its port
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 5.0
CONNECT_TIMEOUT = 30.0
POOL_IDLE_MAX = 64  # idle connections the lean client keeps to the app
TURNS = 64  # the project's APP_TURNS

VARIANTS = {
    "floor": "no upstream: the handler answers a recorded copy of the app's response",
    "aiohttp": "aiohttp ClientSession, keep-alive TCPConnector pool, iter_any + write/flush",
    "aiohttp-task": "aiohttp as wrapped by the project: task + semaphore + wait_for(shield)",
    "lean": "tornado HTTP1Connection over pooled IOStreams (keep-alive)",
    "lean-timer": "lean + a timeout on the app's headers: one loop.call_later per request",
    "lean-hdr-tmo": "lean + the same timeout via HTTP1Connection's header_timeout",
    "simple": "tornado SimpleAsyncHTTPClient, streaming_callback (no keep-alive)",
}
PROFILED = ("aiohttp", "lean")


# --------------------------------------------------------------------------------------------
# The proxy under test (runs in the child process: --serve VARIANT)
# --------------------------------------------------------------------------------------------


def forwarded_request_headers(handler) -> list[tuple[str, str]]:
    """The client's request headers minus hop-by-hop ones and Host (the client sets its own)."""
    return [
        (name, value)
        for name, value in handler.request.headers.get_all()
        if name.lower() not in HOP_BY_HOP and name.lower() != "host"
    ]


def start_response(handler, status: int, reason: str | None, pairs) -> None:
    """Copy the app's status and end-to-end headers onto the handler (nothing is sent yet)."""
    handler.set_status(status, reason or None)
    for name in ("Content-Type", "Server", "Date"):
        handler.clear_header(name)
    pairs = list(pairs)
    drop = HOP_BY_HOP
    tokens = [v for n, v in pairs if n.lower() == "connection"]
    if tokens:  # headers named in Connection are hop-by-hop too
        drop = drop | {t.strip().lower() for v in tokens for t in v.split(",")}
    for name, value in pairs:
        if name.lower() not in drop:
            handler.add_header(name, value)


async def send_chunk(handler, chunk: bytes) -> bool:
    """Write and flush one chunk to the client, as the project's relay does; False if it left."""
    from tornado.iostream import StreamClosedError

    handler.write(chunk)
    try:
        await handler.flush()
    except StreamClosedError:
        return False
    return True


def no_body(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def floor_answerer(app_port: int):
    """Record the app's answer to GET /echo once, then replay it for every request."""
    conn = http.client.HTTPConnection(HOST, app_port, timeout=10)
    try:
        conn.request("GET", PATH)
        resp = conn.getresponse()
        status, reason = resp.status, resp.reason
        pairs = list(resp.getheaders())
        body = resp.read()
    finally:
        conn.close()

    async def answer(handler) -> None:
        start_response(handler, status, reason, pairs)
        if await send_chunk(handler, body):
            handler.finish()

    return answer


def aiohttp_answerer(app_port: int, wrapped: bool):
    """The project's client: a pooled aiohttp session, optionally wrapped as the project does."""
    import aiohttp
    from tornado.iostream import StreamClosedError
    from yarl import URL

    from jhsingle_native_proxy.proxy.http import new_app_session

    base = f"http://{HOST}:{app_port}"
    # The proxy's own pooled session, exactly as it talks to the app.
    session = new_app_session()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
    turns = asyncio.Semaphore(TURNS)

    async def in_turn(sending):
        await turns.acquire()
        try:
            return await sending
        finally:
            turns.release()

    async def answer(handler) -> None:
        headers = forwarded_request_headers(handler)
        present = {name.lower() for name, _ in headers}
        skip = frozenset(
            name
            for name in ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
            if name.lower() not in present
        )
        sending = session.request(
            "GET",
            URL(base + handler.request.uri, encoded=True),
            headers=headers,
            allow_redirects=False,
            skip_auto_headers=skip,
            timeout=timeout,
        )
        try:
            if wrapped:
                task = asyncio.ensure_future(in_turn(sending))
                response = await asyncio.wait_for(asyncio.shield(task), CONNECT_TIMEOUT)
            else:
                response = await sending
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            handler.send_error(502)
            return
        try:
            start_response(handler, response.status, response.reason, response.headers.items())
            if no_body(handler.request.method, response.status):
                handler.finish()
                return
            if "Content-Length" not in response.headers:
                await handler.flush()  # a stream: headers at once
            async for chunk in response.content.iter_any():
                if not await send_chunk(handler, chunk):
                    response.close()  # the client left: stop reading from the app
                    return
        except StreamClosedError:
            response.close()
            return
        except (aiohttp.ClientError, asyncio.TimeoutError):
            response.close()
            handler.request.connection.close()  # the app broke off: truncate, don't finish
            return
        finally:
            response.release()
        handler.finish()

    return answer


class _ReusedStreamClosed(Exception):
    """A pooled connection turned out closed before the app answered anything."""


def lean_answerer(app_port: int, timeout: str = ""):
    """A lean keep-alive client on tornado's HTTP1Connection.

    timeout: "" none; "timer" gives up on an answer whose headers take longer than
    CONNECT_TIMEOUT with one loop.call_later per request, cancelled when the headers arrive;
    "header" lets HTTP1Connection do it (its header_timeout: gen.with_timeout per request)."""
    from tornado import httputil
    from tornado.http1connection import (
        HTTP1Connection,
        HTTP1ConnectionParameters,
        is_transfer_encoding_chunked,
    )
    from tornado.iostream import StreamClosedError
    from tornado.tcpclient import TCPClient

    class Relay(httputil.HTTPMessageDelegate):
        """Relays one response to the handler as it arrives, and judges keep-alive."""

        def __init__(self, handler, stream) -> None:
            self.handler = handler
            self.stream = stream
            self.started = False
            self.keep_alive = False
            self.client_gone = False
            self.timer: asyncio.TimerHandle | None = None
            self.timed_out = False

        def give_up(self) -> None:
            # No headers in time: closing the stream ends read_response with an error.
            if not self.started:
                self.timed_out = True
                self.stream.close()

        def headers_received(self, start_line, headers):
            self.started = True
            if self.timer is not None:
                self.timer.cancel()  # the timeout covers the wait for the headers only
            code = start_line.code
            framed = (
                "Content-Length" in headers
                or is_transfer_encoding_chunked(headers)
                or no_body(self.handler.request.method, code)
            )
            tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
            self.keep_alive = start_line.version == "HTTP/1.1" and "close" not in tokens and framed
            if 100 <= code < 200:
                return None  # an interim answer; the real one follows on this connection
            start_response(self.handler, code, start_line.reason, headers.get_all())
            if "Content-Length" not in headers and not no_body(self.handler.request.method, code):
                return self._flush_headers()  # a stream: headers at once
            return None

        async def _flush_headers(self) -> None:
            try:
                await self.handler.flush()
            except StreamClosedError:
                self._client_left()

        async def data_received(self, chunk: bytes) -> None:
            if self.client_gone:
                return
            if not await send_chunk(self.handler, chunk):
                self._client_left()

        def _client_left(self) -> None:
            # Stop reading from the app: closing the upstream ends read_response with an error.
            self.client_gone = True
            self.keep_alive = False
            self.stream.close()

        def finish(self) -> None:
            pass

        def on_connection_close(self) -> None:
            self.keep_alive = False

    class Pool:
        def __init__(self, host: str, port: int) -> None:
            self.host = host
            self.port = port
            self.idle: list = []
            self.tcp = TCPClient()
            self.params = HTTP1ConnectionParameters(
                decompress=False,
                chunk_size=65536,
                max_header_size=65536,
                header_timeout=CONNECT_TIMEOUT if timeout == "header" else None,
            )
            self.host_header = f"{host}:{port}"

        async def _stream(self, fresh: bool):
            if not fresh:
                # Bounded: each turn removes one idle stream.
                while self.idle:
                    stream = self.idle.pop()
                    if not stream.closed():
                        return stream, True
            stream = await self.tcp.connect(self.host, self.port, timeout=CONNECT_TIMEOUT)
            stream.set_nodelay(True)
            return stream, False

        def _put_back(self, stream) -> None:
            if stream.closed():
                return
            if len(self.idle) >= POOL_IDLE_MAX:
                stream.close()
                return
            self.idle.append(stream)

        async def get(self, handler) -> Relay:
            headers = httputil.HTTPHeaders()
            headers["Host"] = self.host_header
            for name, value in forwarded_request_headers(handler):
                headers.add(name, value)
            start = httputil.RequestStartLine("GET", handler.request.uri, "HTTP/1.1")
            for attempt in range(2):  # a second try only when a reused connection was stale
                stream, reused = await self._stream(fresh=attempt > 0)
                relay = Relay(handler, stream)
                if timeout == "timer":
                    relay.timer = asyncio.get_running_loop().call_later(
                        CONNECT_TIMEOUT, relay.give_up
                    )
                conn = HTTP1Connection(stream, True, self.params)
                try:
                    conn.write_headers(start, headers)
                    conn.finish()
                    still_open = await conn.read_response(relay)
                except StreamClosedError:
                    stream.close()
                    if reused and not relay.started and not relay.timed_out and attempt == 0:
                        continue
                    raise
                finally:
                    if relay.timer is not None:
                        relay.timer.cancel()
                if still_open and relay.keep_alive:
                    self._put_back(stream)
                else:
                    stream.close()
                return relay
            raise _ReusedStreamClosed()  # not reached: the second attempt returns or raises

    pool = Pool(HOST, app_port)

    async def answer(handler) -> None:
        try:
            relay = await pool.get(handler)
        except (OSError, _ReusedStreamClosed, httputil.HTTPInputError):
            # StreamClosedError is an OSError. Nothing sent yet: a 502; else truncate.
            if handler._headers_written:
                handler.request.connection.close()
            elif not handler._finished:
                handler.send_error(502)
            return
        if not relay.client_gone:
            handler.finish()

    return answer


def simple_answerer(app_port: int):
    """tornado's SimpleAsyncHTTPClient (one connection per request), for reference."""
    from tornado import httputil
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.iostream import StreamClosedError
    from tornado.simple_httpclient import SimpleAsyncHTTPClient

    base = f"http://{HOST}:{app_port}"
    client = SimpleAsyncHTTPClient(force_instance=True, max_clients=TURNS)

    async def answer(handler) -> None:
        state = {"status": 502, "reason": None, "headers": httputil.HTTPHeaders()}

        def header_line(line: str) -> None:
            if line.startswith("HTTP/"):
                start = httputil.parse_response_start_line(line.strip())
                state["status"], state["reason"] = start.code, start.reason
                state["headers"] = httputil.HTTPHeaders()
            elif line.strip():
                state["headers"].parse_line(line)
            else:
                start_response(
                    handler, state["status"], state["reason"], state["headers"].get_all()
                )

        request = HTTPRequest(
            base + handler.request.uri,
            method="GET",
            headers=httputil.HTTPHeaders(forwarded_request_headers(handler)),
            header_callback=header_line,
            streaming_callback=handler.write,
            follow_redirects=False,
            decompress_response=False,
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=0,
        )
        try:
            await client.fetch(request, raise_error=False)
        except (HTTPClientError, OSError):
            handler.send_error(502)
            return
        try:
            await handler.flush()
        except StreamClosedError:
            return
        handler.finish()

    return answer


def serve(variant: str, port: int, app_port: int) -> None:
    from tornado import web
    from tornado.httpserver import HTTPServer

    async def main() -> None:
        if variant == "floor":
            answer = floor_answerer(app_port)
        elif variant in ("aiohttp", "aiohttp-task"):
            answer = aiohttp_answerer(app_port, wrapped=variant == "aiohttp-task")
        elif variant == "lean":
            answer = lean_answerer(app_port)
        elif variant == "lean-timer":
            answer = lean_answerer(app_port, timeout="timer")
        elif variant == "lean-hdr-tmo":
            answer = lean_answerer(app_port, timeout="header")
        elif variant == "simple":
            answer = simple_answerer(app_port)
        else:
            raise SystemExit(f"unknown variant {variant!r}")

        class Relay(web.RequestHandler):
            async def get(self, *args: str) -> None:
                await answer(self)

        app = web.Application([(r"/.*", Relay)], log_function=lambda handler: None)
        server = HTTPServer(app)
        server.listen(port, HOST)
        print(f"serving {variant} on {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# The harness (parent process)
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    variant: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    seconds: float
    proxy_cpu_s: float | None
    app_cpu_s: float
    core0_pct: float | None = None
    core1_pct: float | None = None

    @property
    def proxy_us(self) -> float | None:
        if self.proxy_cpu_s is None or not self.requests:
            return None
        return self.proxy_cpu_s / self.requests * 1e6

    @property
    def app_us(self) -> float | None:
        return self.app_cpu_s / self.requests * 1e6 if self.requests else None

    @property
    def proxy_pct(self) -> float | None:
        if self.proxy_cpu_s is None or not self.seconds:
            return None
        return 100.0 * self.proxy_cpu_s / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_times() -> dict[int, tuple[int, int]]:
    """Per core, (busy, total) jiffies from /proc/stat."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                times[int(m.group(1))] = (sum(v[:8]) - idle, sum(v[:8]))
    return times


def busy_pct(before: dict, after: dict, core: int | None) -> float | None:
    if core is None or core not in before or core not in after:
        return None
    busy = after[core][0] - before[core][0]
    total = after[core][1] - before[core][1]
    return 100.0 * busy / total if total else None


def pinning(core: int | None):
    if core is None:
        return None
    return functools.partial(os.sched_setaffinity, 0, {core})


def start(cmd: list[str], core: int | None, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            preexec_fn=pinning(core),
            cwd=ROOT,
        )


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT; by PID only."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)


def tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    """Poll until GET /echo on the port answers 200; bounded by READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{tail(log)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return
            last = f"status {resp.status}"
        except OSError as e:
            last = str(e)
        finally:
            conn.close()
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"port {port} did not answer within {READY_TIMEOUT}s ({last}):\n{tail(log)}")


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_wrk(text: str) -> dict:
    def number(pattern: str, default: str = "0") -> str:
        m = re.search(pattern, text, re.MULTILINE)
        return m.group(1) if m else default

    latency = {}
    for m in re.finditer(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE):
        latency[m.group(1)] = float(m.group(2)) * _UNIT_MS[m.group(3)]
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = sum(int(x) for x in socket_errors.groups()) if socket_errors else 0
    errors += int(number(r"Non-2xx or 3xx responses: (\d+)"))
    return {
        "requests": int(number(r"^\s*(\d+) requests in")),
        "rps": float(number(r"Requests/sec:\s+([\d.]+)")),
        "p50": latency.get("50", float("nan")),
        "p99": latency.get("99", float("nan")),
        "errors": errors,
    }


def wrk_cmd(port: int, seconds: float, connections: int) -> list[str]:
    return [
        "wrk",
        "-c",
        str(connections),
        "-t",
        "1",
        "-d",
        f"{max(1, round(seconds))}s",
        "--latency",
        f"http://{HOST}:{port}{PATH}",
    ]


def run_wrk(port: int, seconds: float, connections: int, core: int | None) -> str:
    done = subprocess.run(
        wrk_cmd(port, seconds, connections),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=pinning(core),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Cores:
    proxy: int | None
    load: int | None


def measure(
    variant: str,
    rnd: int,
    port: int,
    proxy_pid: int | None,
    app_pid: int,
    args: argparse.Namespace,
    cores: Cores,
) -> Result:
    if args.warmup > 0:
        run_wrk(port, args.warmup, args.connections, cores.load)
    proxy_before = cpu_seconds(proxy_pid) if proxy_pid else None
    app_before = cpu_seconds(app_pid)
    cores_before = core_times()
    t0 = time.monotonic()
    out = run_wrk(port, args.seconds, args.connections, cores.load)
    wall = time.monotonic() - t0
    cores_after = core_times()
    app_cpu = cpu_seconds(app_pid) - app_before
    proxy_cpu = cpu_seconds(proxy_pid) - proxy_before if proxy_pid else None
    w = parse_wrk(out)
    return Result(
        variant, rnd, w["rps"], w["p50"], w["p99"], w["requests"], w["errors"], wall,
        proxy_cpu, app_cpu,
        busy_pct(cores_before, cores_after, cores.proxy),
        busy_pct(cores_before, cores_after, cores.load),
    )  # fmt: skip


def start_proxy(variant: str, app_port: int, cores: Cores, tmp: Path):
    port = free_port()
    log = tmp / f"proxy-{variant}.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        variant,
        "--port",
        str(port),
        "--app-port",
        str(app_port),
    ]
    proc = start(cmd, cores.proxy, log)
    try:
        wait_ready(proc, port, log)
    except BaseException:
        stop(proc)
        raise
    return proc, port


def profile(
    variant: str, app_port: int, app_pid: int, args: argparse.Namespace, cores: Cores, tmp: Path
) -> list[tuple[str, float]] | str:
    """Sample the proxy with py-spy under load; top self-time functions as (name, share)."""
    pyspy = shutil.which("py-spy")
    if not pyspy:
        return "py-spy not installed"
    proxy = wrk = spy = None
    raw = tmp / f"profile-{variant}.txt"
    try:
        proxy, port = start_proxy(variant, app_port, cores, tmp)
        if args.warmup > 0:
            run_wrk(port, args.warmup, args.connections, cores.load)
        wrk = subprocess.Popen(
            wrk_cmd(port, args.profile + 3, args.connections),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pinning(cores.load),
        )
        spy_cmd = [pyspy, "record", "-p", str(proxy.pid), "-d", str(round(args.profile))]
        spy_cmd += ["-f", "raw", "--function", "-r", "250", "-o", str(raw)]
        with open(tmp / f"py-spy-{variant}.log", "wb") as log:
            spy = subprocess.Popen(
                spy_cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                preexec_fn=pinning(cores.load),
            )  # fmt: skip
            spy.wait(timeout=args.profile + 60)
        wrk.wait(timeout=args.profile + 60)
        if spy.returncode != 0 or not raw.exists():
            return f"py-spy failed: {tail(tmp / f'py-spy-{variant}.log', 5)}"
        return self_times(raw.read_text(errors="replace"))
    finally:
        stop(spy)
        stop(wrk)
        stop(proxy)


def self_times(raw: str) -> list[tuple[str, float]]:
    """From py-spy's raw (folded) output: each function's share of the main thread's samples
    as the leaf (self time). Only stacks rooted in this script's <module> count: py-spy cannot
    always tell that a helper thread blocked in C is idle."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        if "client_floor" not in stack.split(";", 1)[0]:
            continue  # another thread (a resolver's pool, pycares): idle, not the event loop
        leaf = stack.rsplit(";", 1)[-1]
        # "func (path/to/module.py:123)" -> "func (module.py)"
        m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", leaf)
        if m:
            leaf = f"{m.group(1)} ({short_path(m.group(2))})"
        counts[leaf] += int(n)
    total = sum(counts.values()) or 1
    return [(name, 100.0 * n / total) for name, n in counts.most_common()]


def short_path(path: str) -> str:
    """py-spy already names modules by import path (tornado/iostream.py); shorten the rest."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker.startswith("/lib/") else rest
    return os.path.basename(path) if path.startswith("/") else path


def package_of(name: str) -> str:
    """tornado, aiohttp, asyncio, ... for a package's module; "stdlib/other" for the rest."""
    m = re.search(r"\((.*)\)$", name)
    path = m.group(1) if m else ""
    if "/" in path:
        return path.split("/", 1)[0]
    if path.startswith("client_floor"):
        return "this script"
    return "stdlib/other"


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def print_table(results: list[Result]) -> None:
    floors = {r.round: r.proxy_us for r in results if r.variant == "floor"}
    head = (
        f"{'variant':<13}{'rnd':>4}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'proxy us/req':>14}{'proxy cpu%':>11}{'client us/req':>15}{'app us/req':>12}"
        f"{'core0%':>7}{'core1%':>7}{'errors':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        floor = floors.get(r.round)
        client = (
            r.proxy_us - floor
            if r.proxy_us is not None and floor is not None and r.variant != "floor"
            else None
        )
        print(
            f"{r.variant:<13}{r.round:>4}{r.rps:>9.0f}{fmt(r.p50_ms, '.2f'):>8}"
            f"{fmt(r.p99_ms, '.2f'):>8}{fmt(r.proxy_us, '.1f'):>14}{fmt(r.proxy_pct, '.0f'):>11}"
            f"{fmt(client, '.1f'):>15}{fmt(r.app_us, '.1f'):>12}"
            f"{fmt(r.core0_pct, '.0f'):>7}{fmt(r.core1_pct, '.0f'):>7}{r.errors:>7}"
        )


def print_summary(results: list[Result], variants: list[str]) -> None:
    """Per variant over the rounds: proxy CPU per request (min and mean), the client's share
    (against the floor's min and mean), and the difference to aiohttp, also round by round
    (paired runs, a few seconds apart, share most of any drift on a busy machine)."""
    by: dict[str, list[Result]] = collections.defaultdict(list)
    for r in results:
        by[r.variant].append(r)

    def us_of(variant: str) -> list[float]:
        return [r.proxy_us for r in by.get(variant, []) if r.proxy_us is not None]

    def mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    def minimum(values: list[float]) -> float | None:
        return min(values) if values else None

    def minus(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    floor, aio = us_of("floor"), us_of("aiohttp")
    aio_by_round = {r.round: r.proxy_us for r in by.get("aiohttp", [])}
    print()
    head = (
        f"{'variant':<13}{'runs':>5}{'req/s':>9}{'us/req min':>12}{'mean':>8}"
        f"{'client min':>12}{'mean':>8}{'vs aiohttp min':>16}{'mean':>8}  per round vs aiohttp"
    )
    print(head)
    print("-" * len(head))
    for variant in ["direct", *variants]:
        runs = by.get(variant, [])
        if not runs:
            continue
        us = us_of(variant)
        is_floor = variant == "floor"
        client_min = None if is_floor else minus(minimum(us), minimum(floor))
        client_mean = None if is_floor else minus(mean(us), mean(floor))
        vs_min = None if is_floor else minus(minimum(us), minimum(aio))
        vs_mean = None if is_floor else minus(mean(us), mean(aio))
        paired = []
        if variant not in ("floor", "aiohttp", "direct"):
            for r in runs:
                d = minus(r.proxy_us, aio_by_round.get(r.round))
                if d is not None:
                    paired.append(f"{d:+.1f}")
        rps = statistics.fmean(r.rps for r in runs)
        print(
            f"{variant:<13}{len(runs):>5}{rps:>9.0f}{fmt(minimum(us), '.1f'):>12}"
            f"{fmt(mean(us), '.1f'):>8}{fmt(client_min, '.1f'):>12}{fmt(client_mean, '.1f'):>8}"
            f"{fmt(vs_min, '+.1f'):>16}{fmt(vs_mean, '+.1f'):>8}  {' '.join(paired)}"
        )


def print_profile(variant: str, result: list[tuple[str, float]] | str, top: int) -> None:
    print(f"\npy-spy, {variant}: self time (share of busy main-thread samples)")
    if isinstance(result, str):
        print(f"  {result}")
        return
    for name, pct in result[:top]:
        print(f"  {pct:5.1f}%  {name}")
    groups: collections.Counter[str] = collections.Counter()
    for name, pct in result:
        groups[package_of(name)] += pct
    parts = ", ".join(f"{g} {p:.0f}%" for g, p in groups.most_common(8))
    print(f"  by package: {parts}")


def run(args: argparse.Namespace) -> int:
    if not sys.platform.startswith("linux"):
        print("Linux only (reads /proc, sets CPU affinity)", file=sys.stderr)
        return 2
    if not shutil.which("wrk"):
        print("needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    allowed = sorted(os.sched_getaffinity(0))
    cores = Cores(allowed[0], allowed[1]) if len(allowed) >= 2 else Cores(None, None)

    import aiohttp
    import tornado

    print(
        f"python {sys.version.split()[0]}, tornado {tornado.version}, aiohttp {aiohttp.__version__}"
        f"; {args.seconds:g}s per run after {args.warmup:g}s warm-up, {args.rounds} round(s),"
        f" wrk -c {args.connections} -t 1, GET {PATH}"
    )
    if cores.proxy is None:
        print("fewer than 2 cores: nothing pinned, numbers are less trustworthy")
    else:
        print(f"proxy pinned to core {cores.proxy}; app and wrk to core {cores.load}")
    for name in variants:
        print(f"  {name:<13}{VARIANTS[name]}")
    print()

    results: list[Result] = []
    app = None
    with tempfile.TemporaryDirectory(prefix="client-floor-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            app_port = free_port()
            app_log = tmp / "app.log"
            app = start([sys.executable, str(ECHO_APP), str(app_port)], cores.load, app_log)
            wait_ready(app, app_port, app_log)
            for rnd in range(1, args.rounds + 1):
                r = measure("direct", rnd, app_port, None, app.pid, args, cores)
                results.append(r)
                print(f"round {rnd}: direct {r.rps:.0f} req/s", flush=True)
                for variant in variants:
                    proxy = None
                    try:
                        proxy, port = start_proxy(variant, app_port, cores, tmp)
                        r = measure(variant, rnd, port, proxy.pid, app.pid, args, cores)
                    finally:
                        stop(proxy)
                    results.append(r)
                    print(
                        f"round {rnd}: {variant} {r.rps:.0f} req/s, "
                        f"{fmt(r.proxy_us, '.1f')} us/req",
                        flush=True,
                    )
            print()
            print_table(results)
            print_summary(results, variants)
            if args.profile > 0:
                for variant in PROFILED:
                    found = profile(variant, app_port, app.pid, args, cores, tmp)
                    print_profile(variant, found, args.top)
        finally:
            stop(app)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 round: a smoke test")
    parser.add_argument(
        "--profile", type=float, default=0, help="py-spy the aiohttp and lean proxies this long"
    )
    parser.add_argument("--top", type=int, default=15, help="functions shown per profile")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--app-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.app_port)
        return 0
    if args.quick:
        args.seconds, args.rounds, args.warmup = 3.0, 1, 1.0
    if args.seconds < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--seconds, --rounds and --connections must be at least 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
