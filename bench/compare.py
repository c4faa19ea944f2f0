"""Side by side in one run: the app directly, this proxy, and (with --anchors) the two tools it
replaces, jhsingle-native-proxy 0.8.3 and jupyter-server-proxy 4.6's `jupyter standaloneproxy`.

    python bench/compare.py [--anchors] [--seconds 10] [--results bench/RESULTS.md]

Every column runs the same echo app (tests/apps/echo_app.py) and the same clients. On a machine
with two or more cores the proxy under test is pinned to core 0 and the app, wrk and this
script's own clients to core 1 (taskset, and sched_setaffinity for this script itself), so the
proxy's CPU is its own. bench/README.md says what each row measures. `--anchors` installs the
two older tools from PyPI into venvs of their own under ~/.cache/jhsnp-bench (a column whose
install fails is left out, with a note). Loopback only; every process is ended by process group
in a `finally`; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ECHO_APP = str(ROOT / "tests" / "apps" / "echo_app.py")
PREFIX = "/user/bench/"
CACHE = Path.home() / ".cache" / "jhsnp-bench"
MiB = 1 << 20
ANCHORS = {
    "0.8.3": ["jhsingle-native-proxy==0.8.3"],
    "jsp 4.6": ["jupyter-server-proxy==4.6.*", "jupyterhub"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *argv]
    return argv


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def get(port: int, path: str, timeout: float = 5) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


@dataclass
class Column:
    name: str
    # The command, with {listen} (its port) and {app} (the app's command, with {port});
    # None for the app itself.
    argv: list[str] | None
    prefix: str = PREFIX
    # False for the anchors: a PYTHONPATH that names this checkout (to measure a worktree) would
    # make their venvs import this package in place of their own.
    keeps_pythonpath: bool = True
    process: subprocess.Popen | None = None
    port: int = 0
    started_in: float = float("nan")
    idle_rss: float = float("nan")
    results: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.port = free_port()
        app = pinned(1, [sys.executable, ECHO_APP])
        if self.argv is None:  # the app itself
            argv = [*app, str(self.port)]
            self.prefix = "/"
        else:
            argv = []
            for word in self.argv:
                if word == "{app}":
                    argv += [*app, "{port}"]
                elif word == "{app-dashes}":  # 0.8.3 has no `--`: the app's dashes as {-}
                    argv += [w.replace("-", "{-}", 1) if w.startswith("-") else w for w in app]
                    argv.append("{port}")
                else:
                    argv.append(word.replace("{listen}", str(self.port)))
            argv = pinned(0, argv)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        env["JUPYTERHUB_SERVICE_PREFIX"] = PREFIX
        if not self.keeps_pythonpath:
            env.pop("PYTHONPATH", None)
        began = time.monotonic()
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd="/tmp",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while get(self.port, self.prefix + "echo", 2) != 200:
            if time.monotonic() - began > 60 or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} did not answer within 60 s")
            time.sleep(0.01)
        self.started_in = time.monotonic() - began
        time.sleep(1.0)
        self.idle_rss = rss_mib(self.process.pid)

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{path}"


def wrk(column: Column, seconds: float, connections: int = 16) -> dict[str, float]:
    out = subprocess.run(
        pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                   column.url("echo")]),
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    units = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

    def ms(text: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(number) * units[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    requests = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if requests is None or rate is None:
        raise RuntimeError(f"wrk printed no result for {column.url('echo')}")
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": float(requests.group(1)),
        "rps": float(rate.group(1)),
        "p50": ms(latency["50"]) if "50" in latency else float("nan"),
        "p99": ms(latency["99"]) if "99" in latency else float("nan"),
        "errors": float(bool(re.search(r"Socket errors|Non-2xx", out))),
        "timeouts": float(timeouts.group(1)) if timeouts else 0.0,
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def transfer(column: Column, direction: str, size: int, length: bool) -> float:
    """MiB/s for one body of `size` bytes, from or to the app, through one reused buffer."""
    conn = http.client.HTTPConnection("127.0.0.1", column.port, timeout=120)
    buffer = bytearray(MiB)
    began = time.monotonic()
    try:
        if direction == "get":
            conn.request("GET", f"{column.prefix}download?n={size}{'&length=1' if length else ''}")
            response = conn.getresponse()
            got = 0
            while n := response.readinto(buffer):
                got += n
            if got != size or response.status != 200:
                return float("nan")
        else:
            conn.putrequest("POST", f"{column.prefix}upload")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            left = size
            while left > 0:
                conn.send(memoryview(buffer)[: min(left, MiB)])
                left -= min(left, MiB)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                return float("nan")
    except OSError:
        return float("nan")
    finally:
        conn.close()
    return size / MiB / (time.monotonic() - began)


def percentile(values: list[float], q: float) -> float:
    """The value below which a fraction q of `values` lies (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ws_round_trips(column: Column, clients: int, seconds: float) -> dict[str, float]:
    """Round trips per second, summed over `clients` websockets each sending the next message
    as soon as the echo of the last one is back, and the p50 / p99 of one round trip (ms)."""
    url = column.url("ws").replace("http://", "ws://")
    times: list[float] = []  # one entry per round trip, all clients together
    deadline = time.monotonic() + seconds

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(url) as ws:
            for _ in range(2_000_000):  # far more than fit in `seconds`; time ends the loop
                if time.monotonic() >= deadline:
                    break
                sent = time.perf_counter()
                await ws.send_str("x" * 64)
                message = await ws.receive(timeout=10)
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"websocket through {column.name} ended: {message.type}")
                times.append(time.perf_counter() - sent)

    began = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.wait_for(
            asyncio.gather(*(one(session) for _ in range(clients))), seconds + 30
        )
    return {
        "rate": len(times) / (time.monotonic() - began),
        "p50": percentile(times, 0.50) * 1000,
        "p99": percentile(times, 0.99) * 1000,
    }


async def small_get_with_streams(
    column: Column, seconds: float, streams: int, notes: list[str]
) -> dict[str, float]:
    """The small-GET wrk run while `streams` server-sent-event streams (one event every 0.1 s,
    enough of them to outlast the run) are open through the target and read by this process.
    The streams are opened first (at most 10 s for their first events) and closed afterwards
    (at most 10 s); the app ends each one by itself once the run is over, even if the target
    never passes the hang-up on."""
    url = column.url(f"sse?n={int((seconds + 20) / 0.1)}&gap=0.1")
    events = [0] * streams
    first = [asyncio.Event() for _ in range(streams)]
    statuses: list[int] = []

    async def reader(i: int, session: aiohttp.ClientSession) -> None:
        async with session.get(url) as response:
            statuses.append(response.status)
            for _ in range(10_000_000):  # bounded; the run's end cancels it long before
                line = await response.content.readline()
                if not line:
                    return
                if line.startswith(b"data:"):
                    events[i] += 1
                    first[i].set()

    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=None)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)
    tasks = [asyncio.create_task(reader(i, session)) for i in range(streams)]
    try:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(f.wait() for f in first)), 10)
        opened = sum(f.is_set() for f in first)
        if opened < streams:
            notes.append(
                f"{column.name}: only {opened} of {streams} SSE streams delivered an event within "
                f"10 s (answers: {sorted(set(statuses)) or 'none'}); wrk ran anyway"
            )
        before = list(events)
        small = await asyncio.to_thread(wrk, column, seconds)
        stalled = sum(e == b for e, b in zip(events, before, strict=True))
        if opened == streams and stalled:
            notes.append(
                f"{column.name}: {stalled} of {streams} SSE streams delivered no event "
                "while wrk ran"
            )
        return small
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=10)
        await asyncio.wait_for(session.close(), 10)


def slow_reader_growth(column: Column, size: int, seconds: float) -> dict:
    """One client asks for `size` bytes but reads them slowly (a 64 KiB receive buffer, at most
    64 KiB every 5 ms) for `seconds`, then hangs up. Returns the target's peak VmRSS while it
    read minus its VmRSS just before ("growth", MiB), whether the last sample was still at the
    peak ("rising"), the bytes read ("got") and the response's status line ("status")."""
    pid = column.process.pid
    before = peak = last = rss_mib(pid)
    got = 0
    head = b""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", column.port))
        sock.sendall(
            f"GET {column.prefix}download?n={size} HTTP/1.1\r\nHost: 127.0.0.1:{column.port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        sock.settimeout(0.01)
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds / 0.005) + 1):  # each turn sleeps 5 ms: time ends it first
            if time.monotonic() >= deadline:
                break
            try:
                data = sock.recv(64 * 1024)
            except TimeoutError:
                data = None
            if data == b"":  # the target hung up (finished, or gave up)
                break
            if data:
                got += len(data)
                if len(head) < 4096:
                    head += data[:4096]
            last = rss_mib(pid)
            peak = max(peak, last)
            time.sleep(0.005)
    finally:
        sock.close()
    time.sleep(1.0)  # let the target notice the hang-up before the next measurement
    status = head.split(b"\r\n", 1)[0].decode("latin-1") if head else "no answer"
    return {"growth": peak - before, "rising": last >= peak - 0.5, "got": got, "status": status}


def measure(column: Column, seconds: float, notes: list[str]) -> None:
    r = column.results
    r["cold start, exec to first 200 (s)"] = f"{column.started_in:.2f}"
    r["idle RSS (MiB)"] = f"{column.idle_rss:.1f}"
    wrk(column, 2)  # warm up
    cpu_before = cpu_seconds(column.process.pid)
    small = wrk(column, seconds)
    cpu = cpu_seconds(column.process.pid) - cpu_before
    r["small GET req/s, c=16"] = f"{small['rps']:.0f}"
    r["small GET p50 / p99 (ms)"] = f"{small['p50']:.2f} / {small['p99']:.1f}"
    # Measured last (below), because a target that holds on to streams could stall whatever
    # came after them; the rows are placed here, next to the plain small GET ones.
    busy_rps = "small GET req/s, c=16, 12 SSE streams open"
    busy_latency = "small GET p50 / p99 (ms), 12 SSE streams open"
    r[busy_rps] = r[busy_latency] = "n/a"
    # The app's CPU for the direct column, the proxy process's (its app excluded) for the others.
    r["CPU per small GET (us)"] = f"{cpu / small['requests'] * 1e6:.0f}"
    for clients in (1, 50):
        ws = asyncio.run(ws_round_trips(column, clients, seconds / 2))
        plural = "s" * (clients > 1)
        r[f"websocket round trips/s, {clients} client{plural}"] = f"{ws['rate']:.0f}"
        r[f"websocket p50 / p99 (ms), {clients} client{plural}"] = (
            f"{ws['p50']:.2f} / {ws['p99']:.2f}"
        )
    # Before the big transfers, so that memory they leave behind cannot hide a buffering target.
    slow = slow_reader_growth(column, 256 * MiB, seconds)
    r["slow reader of 256 MiB: RSS growth (MiB)"] = f"{slow['growth']:.1f}"
    if not slow["status"].startswith("HTTP/1.1 200"):
        notes.append(
            f"{column.name}, slow reader: {slow['status']!r} after reading {slow['got']} bytes"
        )
    if slow["growth"] >= 8 and slow["rising"]:
        notes.append(
            f"{column.name}, slow reader: RSS still at its peak when the reader hung up after "
            f"{seconds:g} s, so it may have grown further"
        )
    for name, direction, length in (
        ("256 MiB GET, length (MiB/s)", "get", True),
        ("256 MiB GET, chunked (MiB/s)", "get", False),
        ("256 MiB POST (MiB/s)", "post", True),
    ):
        rate = transfer(column, direction, 256 * MiB, length)
        r[name] = "fails" if rate != rate else f"{rate:.0f}"
    busy = asyncio.run(small_get_with_streams(column, seconds, 12, notes))
    if busy["requests"] == 0:
        r[busy_rps] = "fails"
        notes.append(f"{column.name}: no small GET answered while 12 SSE streams were open")
    else:
        r[busy_rps] = f"{busy['rps']:.0f}"
        r[busy_latency] = f"{busy['p50']:.2f} / {busy['p99']:.1f}"
    if busy["timeouts"] or busy["non_2xx"]:
        notes.append(
            f"{column.name}, small GETs with 12 SSE streams open: {busy['timeouts']:.0f} timed "
            f"out (wrk's 2 s), {busy['non_2xx']:.0f} answered with an error"
        )


def anchor_python(name: str, notes: list[str]) -> Path | None:
    venv = CACHE / re.sub(r"\W", "_", name)
    python = venv / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", *ANCHORS[name]],
                check=True, timeout=900, capture_output=True,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError) as e:
            notes.append(f"{name}: could not be installed ({type(e).__name__}); column left out")
            shutil.rmtree(venv, ignore_errors=True)
            return None
    return venv / "bin"


def columns(with_anchors: bool, notes: list[str]) -> list[Column]:
    ours = [sys.executable, "-m", "jhsingle_native_proxy", "--authtype", "none", "--port",
            "{listen}", "--no-logs", "--", "{app}"]  # fmt: skip
    found = [Column("direct", None), Column("this proxy", ours)]
    if with_anchors:
        if (bin_083 := anchor_python("0.8.3", notes)) is not None:
            found.append(
                Column(
                    "0.8.3",
                    [
                        str(bin_083 / "jhsingle-native-proxy"),
                        "--authtype",
                        "none",
                        "--port",
                        "{listen}",
                        "--no-logs",
                        "{app-dashes}",
                    ],
                    keeps_pythonpath=False,
                )
            )
        if (bin_jsp := anchor_python("jsp 4.6", notes)) is not None:
            found.append(
                Column(
                    "jsp 4.6",
                    [
                        str(bin_jsp / "jupyter-standaloneproxy"),
                        "--no-authentication",
                        "--address=127.0.0.1",
                        "--port={listen}",
                        f"--base-url={PREFIX}",
                        "--",
                        "{app}",
                    ],
                    keeps_pythonpath=False,
                )
            )
    return found


def table(cols: list[Column]) -> list[str]:
    rows = list(dict.fromkeys(k for c in cols for k in c.results))
    width = max(len(r) for r in rows)
    head = f"| {'measure':<{width}} | " + " | ".join(c.name for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for row in rows:
        cells = " | ".join(c.results.get(row, "n/a") for c in cols)
        lines.append(f"| {row:<{width}} | {cells} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", action="store_true", help="add 0.8.3 and jsp 4.6 columns")
    parser.add_argument("--seconds", type=float, default=10.0, help="per load measurement")
    parser.add_argument("--results", default="", help="also write the table to this file")
    args = parser.parse_args()
    assert shutil.which("wrk"), "wrk is needed (Debian's package wrk)"
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        # This script's own clients (websockets, SSE readers, the slow reader) share core 1 with
        # the app and wrk; the proxies under test are pinned to core 0 (taskset overrides this).
        os.sched_setaffinity(0, {1})
    notes: list[str] = []
    cols = columns(args.anchors, notes)
    for column in cols:
        print(f"measuring {column.name} ...", file=sys.stderr)
        try:
            column.start()
            measure(column, args.seconds, notes)
        except (RuntimeError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as e:
            notes.append(f"{column.name}: {e}")
        finally:
            column.stop()
    import aiohttp as client_lib
    import tornado

    header = (
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs ({platform.machine()}), "
        f"Python {platform.python_version()}, tornado {tornado.version}, "
        f"aiohttp {client_lib.__version__}, {args.seconds:g} s per load"
    )
    lines = [header, "", *table(cols)]
    if notes:
        lines += ["", "notes:", *(f"- {n}" for n in notes)]
    print("\n".join(lines))
    if args.results:
        Path(args.results).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
