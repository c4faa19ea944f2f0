"""Sleeping apps (--idle-stop): the memory an idle app gives back, and what waking it costs.

    python bench/sleep.py [--hold-mib 200] [--wakes 5] [--idle-stop 2]

The app is a small HTTP server (below, run with `python -c`) that holds --hold-mib MiB of
written memory, as a dashboard's loaded data would. The proxy runs it with --idle-stop. Measured
with `process_tree.tree_usage` (the app's whole process tree, from /proc):

- the RSS of the app's tree while it is up, and of the proxy itself;
- the RSS of the app's tree while it sleeps (the old tree's pid, once its group has ended, at
  most a minute after "sleeping": nothing should be left);
- the time from a waking request (a plain GET, which waits as at a start) to its 200, for
  --wakes wakes: median, min and max.

Every process started here is ended by PID in a `finally`; only 127.0.0.1 is used.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: its process helpers)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jhsingle_native_proxy.process_tree import tree_usage  # noqa: E402

PREFIX = "/user/bench/"
TIMEOUT = 60.0
MiB = 1024 * 1024

# The app: HOLD_MIB MiB written (so resident), then a page on the port.
APP = """
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
held = bytearray(b"\\x01") * (int(os.environ["HOLD_MIB"]) * 1024 * 1024)
class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>the dashboard</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Page).serve_forever()
"""


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", PREFIX + path, headers={"Accept": "*/*"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def console(port: int) -> dict:
    try:
        status, body = get(port, "_jhsnp/console.json")
        return json.loads(body) if status == 200 else {}
    except (OSError, ValueError):
        return {}


def wait_state(port: int, proxy: subprocess.Popen, wanted: str) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            raise SystemExit(f"the proxy exited with {proxy.returncode}")
        view = console(port)
        if view.get("state") == wanted:
            return view
        time.sleep(0.05)
    raise SystemExit(f"the app was not {wanted} within {TIMEOUT:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hold-mib", type=int, default=200)
    parser.add_argument("--wakes", type=int, default=5)
    parser.add_argument("--idle-stop", default="2")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(JUPYTERHUB_SERVICE_PREFIX=PREFIX, PYTHONPATH=str(ROOT), HOLD_MIB=str(args.hold_mib))
    port = run.free_port()
    argv = [
        sys.executable, "-m", "jhsingle_native_proxy", "--authtype", "none",
        "--port", str(port), "--idle-stop", args.idle_stop,
        "--", sys.executable, "-c", APP, "{port}",
    ]  # fmt: skip
    awake_rss, asleep_rss, asleep_processes, wakes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="jhsnp-bench-sleep-") as tmp:
        log_path = Path(tmp) / "proxy.log"
        with open(log_path, "wb") as log:
            proxy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            view = wait_state(port, proxy, "ready")
            for _ in range(args.wakes):
                pid = int(view["pid"])
                awake_rss.append(tree_usage(pid).rss_bytes)
                proxy_rss = (run.proc_status_kib(proxy.pid, "VmRSS") or 0) * 1024
                wait_state(port, proxy, "sleeping")
                # Sleeping is said as the group's end begins: measure once it has ended.
                deadline = time.monotonic() + TIMEOUT
                while tree_usage(pid).processes and time.monotonic() < deadline:
                    time.sleep(0.05)
                usage = tree_usage(pid)
                asleep_rss.append(usage.rss_bytes)
                asleep_processes.append(usage.processes)
                began = time.monotonic()
                status, body = get(port, "", timeout=TIMEOUT)
                wakes.append(time.monotonic() - began)
                if status != 200 or b"the dashboard" not in body:
                    raise SystemExit(f"the waking request got {status}: see {log_path}")
                view = wait_state(port, proxy, "ready")
        finally:
            run.end_popen(proxy, grace=15)
    print(f"| app holding {args.hold_mib} MiB, --idle-stop {args.idle_stop} | value |")
    print("| --- | --- |")
    print(f"| app tree RSS awake (median) | {statistics.median(awake_rss) / MiB:.1f} MiB |")
    print(f"| app tree RSS asleep (max) | {max(asleep_rss) / MiB:.1f} MiB |")
    print(f"| app processes asleep (max) | {max(asleep_processes)} |")
    print(f"| proxy RSS (last) | {proxy_rss / MiB:.1f} MiB |")
    print(
        f"| waking request to its 200, median of {len(wakes)} (min–max) | "
        f"{statistics.median(wakes) * 1000:.0f} ms "
        f"({min(wakes) * 1000:.0f}–{max(wakes) * 1000:.0f}) |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
