"""Load and fault tools for the reliability suite: wrk for HTTP, asyncio clients for websockets,
and what /proc says about a process. Loopback only; every loop is bounded in count and time.

`MODE` is "quick" (CI) unless JHSNP_RELIABILITY=full; `scale(quick, full)` picks a figure.
The figures each test records are printed as one table at the end of the run and written to
test-artifacts/reliability.json (see conftest's `pytest_terminal_summary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

MODE = "full" if os.environ.get("JHSNP_RELIABILITY", "").lower() == "full" else "quick"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
# name -> {figure: value}; filled by the tests, printed and saved at the end of the session.
FIGURES: dict[str, dict[str, object]] = {}


def scale(quick, full):
    return full if MODE == "full" else quick


def record(section: str, **figures) -> None:
    FIGURES.setdefault(section, {}).update(figures)


def save_figures() -> Path | None:
    if not FIGURES:
        return None
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "reliability.json"
    path.write_text(json.dumps({"mode": MODE, "figures": FIGURES}, indent=2, default=str))
    return path


def figures_table() -> list[str]:
    lines = [f"reliability figures ({MODE} mode)", f"{'section':<14} {'figure':<34} value"]
    for section, figures in FIGURES.items():
        for name, value in figures.items():
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            lines.append(f"{section:<14} {name:<34} {shown}")
    return lines


# -- a process, seen from /proc -------------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def process_tree(pid: int) -> list[int]:
    """Every descendant of `pid` (not `pid` itself), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone meanwhile
        return inodes
    for name in names:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> str:
    """/proc/net/tcp's address (32-bit words in host order) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on, from /proc/net/tcp{,6}."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids)) if pids else set()
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A: LISTEN
                    address, port = local.split(":")
                    found.add((_address(address), int(port, 16)))
    return found


LOOPBACK = ("127.", "::1", "::ffff:127.")


def is_loopback(address: str) -> bool:
    return address.startswith(LOOPBACK)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- HTTP load with wrk -------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def start_wrk(url: str, connections: int, seconds: float, threads: int = 2) -> subprocess.Popen:
    wrk = shutil.which("wrk")
    assert wrk, "wrk is needed (Debian's package wrk; .ci/run installs it)"
    return subprocess.Popen(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wrk_result(process: subprocess.Popen, timeout: float) -> dict:
    """wrk's figures: requests, errors (socket errors and non-2xx/3xx), p50 and p99 in ms."""
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    return {
        "requests": requests_done,
        "errors": errors,
        "p50_ms": _ms(latency["50"]) if "50" in latency else float("nan"),
        "p99_ms": _ms(latency["99"]) if "99" in latency else float("nan"),
        "output": out,
    }


# -- websockets ---------------------------------------------------------------------------------


async def websocket_echoers(url: str, count: int, interval: float, seconds: float) -> dict:
    """`count` websockets, each sending a numbered message every `interval` s for `seconds`
    and checking that each echo comes back, in order and unchanged."""
    stats = {"sent": 0, "echoed": 0, "mismatched": 0, "dropped": 0, "failed_to_open": 0}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        try:
            ws = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            stats["failed_to_open"] += 1
            return
        try:
            i = 0
            while time.monotonic() < deadline:
                text = f"{n}:{i}"
                sent_at = time.monotonic()
                await ws.send_str(text)
                stats["sent"] += 1
                msg = await ws.receive(timeout=30)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    stats["dropped"] += 1
                    return
                latencies.append((time.monotonic() - sent_at) * 1000)
                if msg.data == text:
                    stats["echoed"] += 1
                else:
                    stats["mismatched"] += 1
                i += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent_at)))
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            stats["dropped"] += 1
        finally:
            await ws.close()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.wait_for(
            asyncio.gather(*(one(session, n) for n in range(count))), seconds + 60
        )
    stats["p50_ms"] = percentile(latencies, 50)
    stats["p99_ms"] = percentile(latencies, 99)
    return stats
