"""What `--rewrite-urls` costs (issue 22): the proxy with the option off and on, in front of
tests/apps/root_absolute_app.py, one after the other.

    python bench/rewrite.py            # 3 rounds; about a minute
    python bench/rewrite.py --rounds 1 --mib 10

Rows (medians over the rounds), for each of off / on:
- CPU per small HTML GET (us): the proxy's utime + stime over N sequential `GET /` (the app's
  1.4 KB page, asked as a browser asks: Accept text/html, Accept-Encoding gzip) on one
  keep-alive connection, divided by N;
- 50 MiB page (MiB/s): `GET /big-page?mib=50` (links and images, streamed by the app), read
  and dropped, the app's bytes divided by the time to the last byte; once as a client without
  gzip, once with (the proxy then compresses the rewritten body);
- the proxy's peak RSS (VmHWM, MiB) at the end of its column, the transfers included.

Loopback only; every process started is ended by PID in a `finally` (run.py's helpers).
"""

from __future__ import annotations

import argparse
import http.client
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
APP = ROOT / "tests" / "apps" / "root_absolute_app.py"
PREFIX = "/user/bench/"
PAGE_HEADERS = {"Accept": "text/html,*/*;q=0.8", "Accept-Encoding": "gzip"}


def small_gets(port: int, pid: int, count: int) -> float:
    """CPU microseconds of the proxy per small HTML GET."""
    conn = http.client.HTTPConnection(run.HOST, port, timeout=30)
    try:
        for _ in range(50):  # warm-up
            conn.request("GET", PREFIX, headers=PAGE_HEADERS)
            conn.getresponse().read()
        before = run.proc_cpu_seconds(pid)
        for _ in range(count):
            conn.request("GET", PREFIX, headers=PAGE_HEADERS)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        return (run.proc_cpu_seconds(pid) - before) / count * 1e6
    finally:
        conn.close()


def big_page(port: int, mib: int, gzip: bool) -> float:
    """MiB/s of the app's page (the time to its last byte), read into a reused buffer."""
    conn = http.client.HTTPConnection(run.HOST, port, timeout=120)
    headers = {"Accept": "text/html", "Accept-Encoding": "gzip" if gzip else "identity"}
    buffer = bytearray(1 << 20)
    try:
        start = time.perf_counter()
        conn.request("GET", f"{PREFIX}big-page?mib={mib}", headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.status
        while response.readinto(buffer):
            pass
        return mib / (time.perf_counter() - start)
    finally:
        conn.close()


def column(rewrite: bool, args, workdir: Path) -> dict[str, float]:
    port = run.free_port()
    log = workdir / f"proxy-{'on' if rewrite else 'off'}.log"
    argv = [sys.executable, "-m", "jhsingle_native_proxy", "--authtype", "none", "--port",
            str(port), "--no-logs", *(["--rewrite-urls"] if rewrite else []),
            "--", sys.executable, str(APP), "{port}"]  # fmt: skip
    env = {**os.environ, "JUPYTERHUB_SERVICE_PREFIX": PREFIX, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("JUPYTERHUB_") or k.endswith("PREFIX")}
    with open(log, "wb") as out:
        proxy = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL)  # fmt: skip
    apps: list[int] = []
    try:

        def ready() -> bool:
            conn = http.client.HTTPConnection(run.HOST, port, timeout=2)
            try:
                conn.request("GET", PREFIX + "_jhsnp/status")
                return b'"ready"' in conn.getresponse().read()
            finally:
                conn.close()

        run.poll_until(ready, proxy, "the proxy", log)
        apps = run.proc_children(proxy.pid)
        cpu = [small_gets(port, proxy.pid, args.count) for _ in range(args.rounds)]
        plain = [big_page(port, args.mib, gzip=False) for _ in range(args.rounds)]
        zipped = [big_page(port, args.mib, gzip=True) for _ in range(args.rounds)]
        return {
            "CPU per small HTML GET (us)": statistics.median(cpu),
            f"{args.mib} MiB page, no gzip (MiB/s)": statistics.median(plain),
            f"{args.mib} MiB page, gzip accepted (MiB/s)": statistics.median(zipped),
            "proxy peak RSS, VmHWM (MiB)": (run.proc_status_kib(proxy.pid, "VmHWM") or 0) / 1024,
        }
    finally:
        run.end_popen(proxy)
        for pid in apps:
            run.end_orphan(pid, str(APP))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000, help="small GETs per round")
    parser.add_argument("--mib", type=int, default=50, help="size of the big page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jhsnp-rewrite-bench-") as tmp:
        results = {name: column(name == "on", args, Path(tmp)) for name in ("off", "on")}
    print(f"--rewrite-urls, {args.rounds} round(s), medians; Python {sys.version.split()[0]}")
    width = max(map(len, results["off"]))
    print(f"{'metric':<{width}} | {'off':>8} | {'on':>8}")
    print(f"{'-' * width}-+-{'-' * 8}-+-{'-' * 8}")
    for name in results["off"]:
        print(f"{name:<{width}} | {results['off'][name]:8.1f} | {results['on'][name]:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
