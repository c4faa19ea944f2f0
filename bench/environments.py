"""Time to the first 200 of an app whose repository declares packages: cold and warm, uv and pip.

    python bench/environments.py [--packages inflection termcolor xmltodict] [--repeats 3]

A git repository in a temporary folder holds tests/apps/imports_app.py and a requirements.txt
naming the packages (small pure-Python ones the image lacks). For each installer (uv: the app's
PATH has it; pip: it does not) the proxy is started with `--repo` and the time from its start to
the first 200 of the app is measured:

- cold: an empty --env-cache, and empty download caches of uv and pip (UV_CACHE_DIR and
  PIP_CACHE_DIR point at fresh folders): everything comes from the package index;
- warm: the same --env-cache again (the environment is reused, nothing installed);
- none: a repository that declares nothing, for reference (the proxy and app alone).

Each row is the median of --repeats runs. Every process started here is ended by PID in a
`finally`; only 127.0.0.1 is used, besides the package index. See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: its process helpers)

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "imports_app.py"
PREFIX = "/user/bench/"
TIMEOUT = 300.0
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_repository(path: Path, requirements: list[str]) -> str:
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    shutil.copy(APP, path / "app.py")
    if requirements:
        (path / "requirements.txt").write_text("".join(r + "\n" for r in requirements))
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", "the app")
    return path.as_uri()


def first_200(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", PREFIX, headers={"Accept": "*/*"})
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def one_start(url: str, work: Path, cache: Path, modules: list[str], env: dict) -> float:
    """Seconds from the proxy's start to the app's first 200 through it."""
    port = run.free_port()
    folder = work / f"checkout-{port}"
    argv = [
        sys.executable, "-m", "jhsingle_native_proxy", "--authtype", "none",
        "--port", str(port), "--repo", url, "--repofolder", str(folder),
        "--env-cache", str(cache), "--ready-timeout", "60",
        "--", sys.executable, "{repofolder}/app.py", "{port}", *modules,
    ]  # fmt: skip
    with open(work / f"proxy-{port}.log", "wb") as log:
        started = time.monotonic()
        proxy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while not first_200(port):
                if proxy.poll() is not None or time.monotonic() - started > TIMEOUT:
                    raise SystemExit(f"no 200 from the app: see {log.name}")
                time.sleep(0.02)
            return time.monotonic() - started
        finally:
            run.end_popen(proxy, grace=15)
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", nargs="+", default=["inflection", "termcolor", "xmltodict"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    venv_bin = os.path.dirname(sys.executable)
    if not shutil.which("uv", path=venv_bin):
        raise SystemExit(f"uv is not in {venv_bin}: pip install uv")
    base = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    base["JUPYTERHUB_SERVICE_PREFIX"] = PREFIX
    base["PYTHONPATH"] = str(ROOT)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="jhsnp-bench-envs-") as tmp:
        work = Path(tmp)
        url = make_repository(work / "repo", args.packages)
        plain = make_repository(work / "plain", [])
        modules = [p.replace("-", "_") for p in args.packages]
        for installer in ("uv", "pip"):
            path = f"{venv_bin}:{SYSTEM_PATH}" if installer == "uv" else SYSTEM_PATH
            for n in range(args.repeats):
                fresh = work / f"{installer}-{n}"
                env = dict(base, PATH=path, UV_CACHE_DIR=str(fresh / "uv-cache"))
                env["PIP_CACHE_DIR"] = str(fresh / "pip-cache")
                cache = fresh / "envs"
                print(f"{installer} run {n + 1}: cold, warm", file=sys.stderr)
                rows.setdefault(f"{installer} cold", []).append(
                    one_start(url, work, cache, modules, env)
                )
                rows.setdefault(f"{installer} warm", []).append(
                    one_start(url, work, cache, modules, env)
                )
        for _ in range(args.repeats):
            env = dict(base, PATH=f"{venv_bin}:{SYSTEM_PATH}")
            rows.setdefault("nothing declared", []).append(
                one_start(plain, work, work / "none-envs", [], env)
            )
    print(f"Time to the first 200, median of {args.repeats} ({', '.join(args.packages)}):\n")
    print("| start | seconds | runs |")
    print("| --- | --- | --- |")
    for name, values in rows.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {statistics.median(values):.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
