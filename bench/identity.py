"""What telling the app who is viewing costs: the proxy's CPU per GET behind a real JupyterHub,
without and with `--forward-user-headers --forward-user-jwt`.

    python bench/identity.py [--requests 2000] [--rounds 3]

bench/compare.py runs with `--authtype none`, where there is no viewer and so nothing to sign;
this one logs alice in through tests/hub.py's hub and asks two of her servers (the echo app,
one with both options, one without) for `/echo` in turns, from one keep-alive session through
the hub's proxy. Only the proxy's own CPU is counted (/proc/PID/stat of the server's process,
its app excluded); the best round of each is kept. Loopback only; the hub and its servers are
stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from compare import cpu_seconds  # noqa: E402 (bench/compare.py, beside this file)

from hub import start_hub, stop_hub  # noqa: E402 (tests/hub.py: the real hub of the tests)

SERVERS = {"plain": [], "identity": ["--forward-user-headers", "--forward-user-jwt"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = start_hub(Path(tmp) / "hub", extra={n: {"proxy": a} for n, a in SERVERS.items()})
        try:
            for name in SERVERS:
                hub.start_server("alice", name)
            session = hub.login("alice")
            best = {name: float("inf") for name in SERVERS}
            for _ in range(args.rounds):
                for name in SERVERS:
                    url = f"{hub.url}/user/alice/{name}/echo"
                    answer = hub.get_as(session, url)  # the login, then warm
                    assert answer.status_code == 200, answer.text[:300]
                    pid = hub.server_pid("alice", name)
                    before = cpu_seconds(pid)
                    for _ in range(args.requests):
                        session.get(url, timeout=30).raise_for_status()
                    per_get = (cpu_seconds(pid) - before) / args.requests * 1e6
                    best[name] = min(best[name], per_get)
            for name, micros in best.items():
                print(f"{name:>9}: {micros:.0f} us of the proxy's CPU per GET")
            print(f"difference: {best['identity'] - best['plain']:+.0f} us per GET")
        finally:
            stop_hub(hub)


if __name__ == "__main__":
    main()
