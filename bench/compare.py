"""Side by side in one run: the app directly, this proxy, and (with --anchors) the two tools it
replaces, jhsingle-native-proxy 0.8.3 and jupyter-server-proxy 4.6's `jupyter standaloneproxy`.

    python bench/compare.py [--anchors] [--seconds 10] [--results bench/RESULTS.md]

Every column runs the same echo app (tests/apps/echo_app.py) and the same clients. On a machine
with two or more cores the proxy under test is pinned to core 0 and the app, wrk and this
script's own clients to core 1 (taskset), so the proxy's CPU is its own. `--anchors` installs the
two older tools from PyPI into venvs of their own under ~/.cache/jhsnp-bench (a column whose
install fails is left out, with a note). Loopback only; every process is ended by process group
in a `finally`; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
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
    return {
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "errors": float(bool(re.search(r"Socket errors|Non-2xx", out))),
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


async def ws_round_trips(column: Column, clients: int, seconds: float) -> float:
    """Round trips per second, summed over `clients` websockets each sending the next message
    as soon as the echo of the last one is back."""
    url = column.url("ws").replace("http://", "ws://")
    done = 0
    deadline = time.monotonic() + seconds

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal done
        async with session.ws_connect(url) as ws:
            while time.monotonic() < deadline:
                await ws.send_str("x" * 64)
                await ws.receive(timeout=10)
                done += 1

    began = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.wait_for(
            asyncio.gather(*(one(session) for _ in range(clients))), seconds + 30
        )
    return done / (time.monotonic() - began)


def measure(column: Column, seconds: float) -> None:
    r = column.results
    r["cold start, exec to first 200 (s)"] = f"{column.started_in:.2f}"
    r["idle RSS (MiB)"] = f"{column.idle_rss:.1f}"
    wrk(column, 2)  # warm up
    cpu_before = cpu_seconds(column.process.pid)
    small = wrk(column, seconds)
    cpu = cpu_seconds(column.process.pid) - cpu_before
    r["small GET req/s, c=16"] = f"{small['rps']:.0f}"
    r["small GET p50 / p99 (ms)"] = f"{small['p50']:.2f} / {small['p99']:.1f}"
    # The app's CPU for the direct column, the proxy process's (its app excluded) for the others.
    r["CPU per small GET (us)"] = f"{cpu / small['requests'] * 1e6:.0f}"
    for clients in (1, 50):
        rate = asyncio.run(ws_round_trips(column, clients, seconds / 2))
        r[f"websocket round trips/s, {clients} client{'s' * (clients > 1)}"] = f"{rate:.0f}"
    for name, direction, length in (
        ("256 MiB GET, length (MiB/s)", "get", True),
        ("256 MiB GET, chunked (MiB/s)", "get", False),
        ("256 MiB POST (MiB/s)", "post", True),
    ):
        rate = transfer(column, direction, 256 * MiB, length)
        r[name] = "fails" if rate != rate else f"{rate:.0f}"


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
    notes: list[str] = []
    cols = columns(args.anchors, notes)
    for column in cols:
        print(f"measuring {column.name} ...", file=sys.stderr)
        try:
            column.start()
            measure(column, args.seconds)
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
