"""Direct vs through-the-proxy benchmark for jhsingle-native-proxy.

    python bench/run.py [--quick]

Starts tests/apps/echo_app.py on a free loopback port (the "direct" target) and
`python -m jhsingle_native_proxy` in front of a second instance of the same app (the "proxy"
target), waits for both to be ready, measures the same things against each, and prints a table.
Every process started here is ended in a `finally` by PID (SIGTERM, then SIGKILL). Every loop is
bounded both in count and in time. Only 127.0.0.1 is used. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ECHO_APP = ROOT / "tests" / "apps" / "echo_app.py"
PREFIX = "/user/bench/"
HOST = "127.0.0.1"
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 30.0  # seconds for a process to become ready
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Plan:
    seq_requests: int
    seq_seconds: float
    conc_requests: int
    conc_clients: int
    conc_seconds: float
    transfer_bytes: int
    transfer_seconds: float
    transfer_repeats: int
    ws_messages: int
    ws_seconds: float
    warmup: int


# Counts are the targets; the *_seconds bound each measurement, so the full run stays under
# about two minutes and the quick one under 30 s even on a slow machine.
FULL = Plan(
    seq_requests=10000,
    seq_seconds=10,
    conc_requests=20000,
    conc_clients=32,
    conc_seconds=10,
    transfer_bytes=256 * MIB,
    transfer_seconds=6,
    transfer_repeats=3,
    ws_messages=2000,
    ws_seconds=5,
    warmup=200,
)
QUICK = Plan(
    seq_requests=2000,
    seq_seconds=3,
    conc_requests=3000,
    conc_clients=32,
    conc_seconds=3,
    transfer_bytes=64 * MIB,
    transfer_seconds=3,
    transfer_repeats=1,
    ws_messages=1000,
    ws_seconds=2,
    warmup=50,
)


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command name: field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
    return out


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def pid_is_ours(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False


def end_popen(proc: subprocess.Popen, grace: float = 8.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL: by PID, only our own child."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def end_orphan(pid: int, marker: str, grace: float = 3.0) -> None:
    """The app the proxy started, should it outlive the proxy: SIGTERM then SIGKILL, by PID."""
    if not (pid_alive(pid) and pid_is_ours(pid, marker)):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(POLL_INTERVAL)
    if pid_alive(pid) and pid_is_ours(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def poll_until(check: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path) -> None:
    """Call `check` until it is true; fail if `proc` exits or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            if check():
                return
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"{what} not ready within {READY_TIMEOUT:g} s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Target:
    name: str
    port: int
    prefix: str  # "" for the app itself, PREFIX without its final slash for the proxy
    server_pid: int  # the process that answers the client's TCP connection

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{HOST}:{self.port}{self.prefix}{path}"


# --------------------------------------------------------------------------------------------
# Measurements


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


@dataclass
class SeqResult:
    median_ms: float
    p90_ms: float
    rps: float
    cpu_us_per_req: float
    requests: int
    reconnects: int


def sequential_gets(target: Target, plan: Plan) -> SeqResult:
    """Small GETs one after the other over one keep-alive connection (http.client)."""
    path = target.prefix + "/echo"
    conn = http.client.HTTPConnection(HOST, target.port, timeout=10)
    reconnects = 0

    def one() -> None:
        nonlocal reconnects
        if conn.sock is None:
            reconnects += 1
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{target.name}: GET {path} answered {response.status}")

    try:
        for _ in range(plan.warmup):
            one()
        reconnects = 0
        timings: list[float] = []
        cpu_before = proc_cpu_seconds(target.server_pid)
        start = time.perf_counter()
        deadline = start + plan.seq_seconds
        for _ in range(plan.seq_requests):
            t0 = time.perf_counter_ns()
            one()
            timings.append((time.perf_counter_ns() - t0) / 1e6)
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - start
        cpu_after = proc_cpu_seconds(target.server_pid)
    finally:
        conn.close()
    timings.sort()
    n = len(timings)
    return SeqResult(
        median_ms=statistics.median(timings),
        p90_ms=percentile(timings, 90),
        rps=n / elapsed,
        cpu_us_per_req=(cpu_after - cpu_before) * 1e6 / n,
        requests=n,
        reconnects=reconnects,
    )


async def concurrent_gets(target: Target, plan: Plan) -> tuple[float, int]:
    """`conc_clients` clients sharing `conc_requests` small GETs (aiohttp). Returns (rps, n)."""
    url = target.url("/echo")
    connector = aiohttp.TCPConnector(limit=plan.conc_clients)
    done = 0
    failures: list[str] = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def warm() -> None:
            async with session.get(url) as r:
                await r.read()

        await asyncio.gather(*(warm() for _ in range(plan.conc_clients)))
        started = 0
        start = time.perf_counter()
        deadline = start + plan.conc_seconds

        async def client() -> None:
            nonlocal started, done
            while started < plan.conc_requests and time.perf_counter() < deadline:
                started += 1
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        failures.append(f"status {r.status}")
                        return
                done += 1

        await asyncio.wait_for(
            asyncio.gather(*(client() for _ in range(plan.conc_clients))),
            plan.conc_seconds + 30,
        )
        elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{target.name}: concurrent GETs failed: {failures[0]}")
    return done / elapsed, done


def download(target: Target, plan: Plan) -> tuple[float, int]:
    """Stream /download?n=N into one reused buffer. Returns (MB/s, bytes read)."""
    n = plan.transfer_bytes
    path = f"{target.prefix}/download?n={n}"
    conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
    buf = bytearray(MIB)
    got = 0
    try:
        start = time.perf_counter()
        deadline = start + plan.transfer_seconds
        conn.request("GET", path)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{target.name}: download answered {response.status}")
        while time.perf_counter() < deadline:
            k = response.readinto(buf)
            if not k:
                break
            got += k
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return got / MIB / elapsed, got


def upload(target: Target, plan: Plan) -> tuple[float, int]:
    """POST N bytes to /upload with Content-Length, sent from one reused 1 MiB buffer."""
    n = plan.transfer_bytes
    chunk = memoryview(bytes(range(256)) * (MIB // 256))
    conn = http.client.HTTPConnection(HOST, target.port, timeout=30)
    sent = 0
    try:
        start = time.perf_counter()
        deadline = start + plan.transfer_seconds
        conn.putrequest("POST", target.prefix + "/upload")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(n))
        conn.endheaders()
        while sent < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{target.name}: upload took over {plan.transfer_seconds} s")
            piece = chunk[: min(len(chunk), n - sent)]
            conn.send(piece)
            sent += len(piece)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{target.name}: upload answered {response.status}")
    received = json.loads(body)["bytes"]
    if received != n:
        raise RuntimeError(f"{target.name}: app received {received} of {n} bytes")
    return n / MIB / elapsed, n


async def websocket_round_trips(target: Target, plan: Plan) -> tuple[float, int]:
    """Send a message, wait for its echo, repeat. Returns (round trips/s, count)."""
    message = "x" * 64
    count = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(target.url("/ws", "ws"), timeout=aiohttp.ClientWSTimeout(5)) as ws,
    ):
        for _ in range(min(plan.warmup, 20)):
            await ws.send_str(message)
            await asyncio.wait_for(ws.receive(), 5)
        start = time.perf_counter()
        deadline = start + plan.ws_seconds
        while count < plan.ws_messages and time.perf_counter() < deadline:
            await ws.send_str(message)
            reply = await asyncio.wait_for(ws.receive(), 5)
            if reply.type is not aiohttp.WSMsgType.TEXT or reply.data != message:
                raise RuntimeError(f"{target.name}: websocket answered {reply.type} {reply.data}")
            count += 1
        elapsed = time.perf_counter() - start
    return count / elapsed, count


# --------------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    metric: str
    direct: float | str | None
    proxy: float | str | None
    fmt: str = "{:.1f}"
    ratio: bool = True


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args, **kwargs) -> None:
        self.rows.append(Row(*args, **kwargs))

    def render(self) -> str:
        def cell(value: float | str | None, fmt: str) -> str:
            if value is None:
                return "n/a"
            if isinstance(value, str):
                return value
            return fmt.format(value)

        table = [("metric", "direct", "proxy", "ratio (proxy/direct)")]
        for row in self.rows:
            ratio = "-"
            if row.ratio and isinstance(row.direct, float | int) and isinstance(row.proxy, float):
                ratio = f"{row.proxy / row.direct:.2f}" if row.direct else "-"
            elif row.ratio and (row.direct is None or row.proxy is None):
                ratio = "n/a"
            table.append((row.metric, cell(row.direct, row.fmt), cell(row.proxy, row.fmt), ratio))
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        lines = []
        for i, r in enumerate(table):
            lines.append(
                " | ".join(
                    r[c].ljust(widths[c]) if c == 0 else r[c].rjust(widths[c]) for c in range(4)
                )
            )
            if i == 0:
                lines.append("-+-".join("-" * w for w in widths))
        return "\n".join(lines)


def guarded(report: Report, label: str, func: Callable[[], object]) -> object | None:
    """Run one measurement; a failure becomes n/a plus a note instead of ending the run."""
    try:
        return func()
    except Exception as e:  # noqa: BLE001 - any failure of one measurement is reported, not fatal
        report.notes.append(f"{label}: {type(e).__name__}: {e}".strip())
        return None


def measure(direct: Target, proxy: Target, plan: Plan, report: Report) -> None:
    mb = plan.transfer_bytes // MIB
    seq: dict[str, SeqResult | None] = {}
    conc: dict[str, tuple[float, int] | None] = {}
    down: dict[str, tuple[float, int] | None] = {}
    up: dict[str, tuple[float, int] | None] = {}
    ws: dict[str, tuple[float, int] | None] = {}
    for t in (direct, proxy):
        print(f"  {t.name}: sequential GETs", file=sys.stderr, flush=True)
        seq[t.name] = guarded(report, f"{t.name} sequential", lambda t=t: sequential_gets(t, plan))
    for t in (direct, proxy):
        print(f"  {t.name}: concurrent GETs", file=sys.stderr, flush=True)
        conc[t.name] = guarded(
            report, f"{t.name} concurrent", lambda t=t: asyncio.run(concurrent_gets(t, plan))
        )
    for label, func, results in (("download", download, down), ("upload", upload, up)):
        runs: dict[str, list[tuple[float, int]]] = {direct.name: [], proxy.name: []}
        failed: set[str] = set()
        # Alternate the targets so that a burst of other load on the machine hits both.
        for i in range(plan.transfer_repeats):
            for t in (direct, proxy):
                if t.name in failed:
                    continue
                print(f"  {t.name}: {mb} MiB {label} {i + 1}", file=sys.stderr, flush=True)
                result = guarded(report, f"{t.name} {label}", lambda t=t, f=func: f(t, plan))
                if result is None:
                    failed.add(t.name)
                else:
                    runs[t.name].append(result)
        for name, done in runs.items():
            # The median run by rate (the middle of 3, the better of 2).
            ordered = sorted(done)
            results[name] = ordered[len(ordered) // 2] if ordered and name not in failed else None
    for t in (direct, proxy):
        print(f"  {t.name}: websocket round trips", file=sys.stderr, flush=True)
        ws[t.name] = guarded(
            report, f"{t.name} websocket", lambda t=t: asyncio.run(websocket_round_trips(t, plan))
        )

    def pick(results: dict, name: str, get: Callable[[object], float]) -> float | None:
        value = results.get(name)
        return None if value is None else get(value)

    def both(results: dict, get: Callable[[object], float]) -> tuple[float | None, float | None]:
        return pick(results, "direct", get), pick(results, "proxy", get)

    report.add("small GET median latency (ms)", *both(seq, lambda r: r.median_ms), fmt="{:.3f}")
    report.add("small GET p90 latency (ms)", *both(seq, lambda r: r.p90_ms), fmt="{:.3f}")
    report.add("small GET sequential (req/s)", *both(seq, lambda r: r.rps), fmt="{:.0f}")
    report.add(
        f"small GET, {plan.conc_clients} concurrent clients (req/s)",
        *both(conc, lambda r: r[0]),
        fmt="{:.0f}",
    )
    each = "" if plan.transfer_repeats == 1 else f", median of {plan.transfer_repeats}"
    report.add(f"download {mb} MiB{each} (MB/s)", *both(down, lambda r: r[0]), fmt="{:.0f}")
    report.add(f"upload {mb} MiB{each} (MB/s)", *both(up, lambda r: r[0]), fmt="{:.0f}")
    report.add(
        "server CPU per small GET (us)",
        *both(seq, lambda r: r.cpu_us_per_req),
        fmt="{:.0f}",
    )
    report.add(
        "server peak RSS, VmHWM (MiB)",
        *(
            None if kib is None else kib / 1024
            for kib in (
                proc_status_kib(direct.server_pid, "VmHWM"),
                proc_status_kib(proxy.server_pid, "VmHWM"),
            )
        ),
        fmt="{:.1f}",
    )
    report.add("websocket round trips (msg/s)", *both(ws, lambda r: r[0]), fmt="{:.0f}")

    for name, result in seq.items():
        if result is not None and result.reconnects:
            report.notes.append(
                f"{name}: the keep-alive connection was closed and reopened "
                f"{result.reconnects} times in {result.requests} requests"
            )
    for name, result in down.items():
        if result is not None and result[1] != plan.transfer_bytes:
            report.notes.append(
                f"{name} download: read {result[1]} of {plan.transfer_bytes} bytes "
                f"within {plan.transfer_seconds:g} s"
            )
    for label, results, target in (
        ("sequential GETs", {k: v and v.requests for k, v in seq.items()}, plan.seq_requests),
        ("concurrent GETs", {k: v and v[1] for k, v in conc.items()}, plan.conc_requests),
        ("websocket messages", {k: v and v[1] for k, v in ws.items()}, plan.ws_messages),
    ):
        for name, count in results.items():
            if count is not None and count < target:
                report.notes.append(f"{name}: {label} stopped at the time limit: {count}")


# --------------------------------------------------------------------------------------------
# Main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (< 30 s)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL

    # A SIGTERM to the benchmark still runs the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    began = time.monotonic()
    procs: list[subprocess.Popen] = []
    orphans: list[int] = []  # the proxy's app, ended by PID if it outlives the proxy
    marker = str(ECHO_APP)
    with tempfile.TemporaryDirectory(prefix="jhsnp-bench-") as tmp:
        direct_log = Path(tmp, "direct.log")
        proxy_log = Path(tmp, "proxy.log")
        try:
            direct_port = free_port()
            with open(direct_log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(ECHO_APP), str(direct_port)],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )
            direct_proc = procs[-1]

            proxy_port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
            env["JUPYTERHUB_SERVICE_PREFIX"] = PREFIX
            with open(proxy_log, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "jhsingle_native_proxy",
                            "--authtype",
                            "none",
                            "--ip",
                            HOST,
                            "--port",
                            str(proxy_port),
                            "--",
                            sys.executable,
                            str(ECHO_APP),
                            "{port}",
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                        env=env,
                    )
                )
            proxy_proc = procs[-1]

            poll_until(
                lambda: http_get(direct_port, "/echo")[0] == 200,
                direct_proc,
                "echo app",
                direct_log,
            )

            def proxy_ready() -> bool:
                for pid in proc_children(proxy_proc.pid):
                    if pid not in orphans and pid_is_ours(pid, marker):
                        orphans.append(pid)
                status, body = http_get(proxy_port, PREFIX + "_jhsnp/status")
                return status == 200 and json.loads(body).get("state") == "ready"

            poll_until(proxy_ready, proxy_proc, "proxy", proxy_log)
            match = re.search(r"The app is ready on port \d+ \(pid (\d+)\)", tail(proxy_log, 200))
            if match and int(match.group(1)) not in orphans:
                orphans.append(int(match.group(1)))
            print(
                f"ready after {time.monotonic() - began:.1f} s "
                f"(direct app pid {direct_proc.pid}, proxy pid {proxy_proc.pid}, "
                f"proxied app pid {', '.join(map(str, orphans)) or '?'})",
                file=sys.stderr,
                flush=True,
            )

            direct = Target("direct", direct_port, "", direct_proc.pid)
            proxy = Target("proxy", proxy_port, PREFIX.rstrip("/"), proxy_proc.pid)
            report = Report()
            measure(direct, proxy, plan, report)
            for name, proc in (("echo app", direct_proc), ("proxy", proxy_proc)):
                if proc.poll() is not None:
                    report.notes.append(f"the {name} exited during the run ({proc.returncode})")
            warnings = [
                line
                for line in tail(proxy_log, 100000).splitlines()
                if line.startswith(("[W", "[E"))
            ]
            if warnings:
                report.notes.append(
                    f"the proxy logged {len(warnings)} warnings/errors, first: {warnings[0]}"
                )

            print()
            print(
                f"jhsingle-native-proxy benchmark ({'quick' if args.quick else 'full'}), "
                f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
                f"aiohttp {aiohttp.__version__}, {time.monotonic() - began:.0f} s"
            )
            print(report.render())
            if report.notes:
                print("\nnotes:")
                for note in report.notes:
                    print(f"  - {note}")
            print(
                "\nCPU row: direct = the echo app process, proxy = the proxy process alone "
                "(its app excluded).\nRSS row: the same processes, peak over the whole run."
            )
            return 0
        finally:
            for proc in reversed(procs):
                end_popen(proc)
            for pid in orphans:
                end_orphan(pid, marker)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
