"""Cold start and idle memory: the app alone against the app behind the proxy.

    python bench/startup.py [--runs 5]

Each run starts `python -m http.server` on a free loopback port, directly and then behind
`jhsingle-native-proxy --authtype none`, and measures the time from `exec` to the first
`200` (polling every 5 ms) and, for the proxy, its resident memory a second later. It prints
the medians as a table. Every process is ended by PID in a `finally`; every loop is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

APP = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_200(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_once(argv: list[str], port: int, path: str, env: dict) -> tuple[float, float]:
    """Seconds from exec to the first 200, and the RSS (MiB) of the started process after 1 s."""
    began = time.monotonic()
    process = subprocess.Popen(
        argv,
        env=env,
        cwd="/tmp",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not answers_200(port, path):
            if time.monotonic() - began > 30 or process.poll() is not None:
                raise RuntimeError(f"{argv[:4]} did not answer within 30 s")
            time.sleep(0.005)
        took = time.monotonic() - began
        time.sleep(1.0)
        return took, rss_mib(process.pid)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["JUPYTERHUB_SERVICE_PREFIX"] = "/"
    direct, proxied = [], []
    for _ in range(max(1, args.runs)):
        port = free_port()
        direct.append(start_once([*APP, str(port)], port, "/", env))
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "jhsingle_native_proxy",
            "--authtype",
            "none",
            "--port",
            str(port),
            "--",
            *APP,
            "{port}",
        ]
        proxied.append(start_once(argv, port, "/", env))
    print(f"cold start and idle memory, median of {len(direct)} runs, {os.cpu_count()} CPUs")
    print(f"{'':34} | {'direct':>8} | {'proxy':>8}")
    print(
        f"{'exec to first 200 (s)':34} | {statistics.median(t for t, _ in direct):8.2f} | "
        f"{statistics.median(t for t, _ in proxied):8.2f}"
    )
    print(
        f"{'RSS 1 s after start (MiB)':34} | {statistics.median(r for _, r in direct):8.1f} | "
        f"{statistics.median(r for _, r in proxied):8.1f}"
    )
    print("(proxy RSS: the proxy process alone, not its app)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
