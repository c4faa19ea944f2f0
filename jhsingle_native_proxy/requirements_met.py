"""Is what the repository declares already there, in the Python the app would run with?

The app's Python is asked (a tiny stdlib-only script: it may be a conda environment's or an
older Python) for its `sys.path` and its marker environment; the judging happens here, with
`packaging` and `importlib.metadata.distributions(path=...)`, so nothing of ours has to run in
the app's Python. A line that is no plain requirement (`-r`, `-e`, a URL, a path, an option)
cannot be judged without installing: it is unmet, and an environment is built (once: it is
cached).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# Seconds the app's Python may take to say where it looks for packages.
PROBE_TIMEOUT = 30.0
# What the app's Python prints: where it finds packages, and PEP 508's marker values.
PROBE_SCRIPT = r"""
import json, os, platform, sys
impl = sys.implementation
v = impl.version
iv = "%d.%d.%d" % (v.major, v.minor, v.micro)
if v.releaselevel != "final":
    iv += v.releaselevel[0] + str(v.serial)
print(json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "version": "%d.%d" % sys.version_info[:2],
    "path": [p for p in sys.path if p],
    "markers": {
        "implementation_name": impl.name,
        "implementation_version": iv,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}))
"""
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?$")


class ProbeError(Exception):
    """The app's Python could not be asked; str(e) is one line for the owner."""


@dataclass(frozen=True)
class PythonInfo:
    """What the app's Python said about itself."""

    executable: str
    prefix: str
    version: str
    path: tuple[str, ...]
    markers: Mapping[str, str]

    @property
    def key(self) -> str:
        """The interpreter, for an environment's cache key."""
        return f"{os.path.realpath(self.executable)} {self.markers.get('python_full_version')}"

    @property
    def site_packages(self) -> list[str]:
        """The folders of its installed packages (what an environment layered on it sees)."""
        return [p for p in self.path if os.path.basename(p) in ("site-packages", "dist-packages")]


def script_python(path: str) -> str:
    """The Python a console script runs with (`#!/…/python`), or "" for anything else."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    words = first[2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        words = words[1:]
    if words and _PYTHON_NAME.match(os.path.basename(words[0])):
        return words[0]
    return ""


def app_python(argv: Iterable[str], environ: Mapping[str, str]) -> str:
    """The Python the app's command runs with: its first word if that is a Python, the Python
    of a console script (`streamlit`), else the first python3/python on the app's PATH (a
    conda environment's, once activated), else ours."""
    path = environ.get("PATH") or os.defpath
    words = list(argv)
    if words:
        first = words[0] if "/" in words[0] else shutil.which(words[0], path=path)
        if first and _PYTHON_NAME.match(os.path.basename(first)):
            return first
        if first and (python := script_python(first)):
            return python if "/" in python else (shutil.which(python, path=path) or python)
    for name in ("python3", "python"):
        found = shutil.which(name, path=path)
        if found:
            return found
    return sys.executable


def probe_python(python: str, environ: Mapping[str, str]) -> PythonInfo:
    """Ask `python` (with the app's environment) for its path and markers."""
    env = {k: v for k, v in environ.items() if k not in ("PYTHONHOME",)}
    try:
        done = subprocess.run(
            # Not -I: PYTHONPATH and the user's site-packages count, the app sees them.
            [python, "-c", PROBE_SCRIPT],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            start_new_session=True,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeError(f"cannot ask the app's Python {python}: {e}") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise ProbeError(f"the app's Python {python} failed: {' '.join(tail)}")
    try:
        data = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        return PythonInfo(
            data["executable"] or python,
            data["prefix"],
            data["version"],
            tuple(data["path"]),
            dict(data["markers"]),
        )
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProbeError(f"the app's Python {python} did not answer as expected") from None


def _installed(path: Iterable[str]) -> dict[str, Distribution]:
    """The distributions found on `path`, the first of each name winning (as imports do)."""
    found: dict[str, Distribution] = {}
    for dist in distributions(path=list(path)):
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def unmet(lines: Iterable[str], info: PythonInfo) -> list[str]:
    """The lines the app's Python does not satisfy (all that cannot be judged among them)."""
    installed = _installed(info.path)
    markers = dict(info.markers)
    return [line for line in lines if not _line_met(line, installed, markers)]


def _line_met(line: str, installed: dict[str, Distribution], markers: dict[str, str]) -> bool:
    if line.startswith("-") or "://" in line or line.startswith((".", "/", "~")):
        return False
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return False
    return _requirement_met(req, installed, markers, set())


def _requirement_met(
    req: Requirement, installed: dict[str, Distribution], markers: dict[str, str], seen: set
) -> bool:
    if req.url:
        return False
    try:
        if req.marker is not None and not req.marker.evaluate({**markers, "extra": ""}):
            return True  # not for this Python
    except InvalidMarker:
        return False
    dist = installed.get(canonicalize_name(req.name))
    if dist is None or not req.specifier.contains(dist.version, prereleases=True):
        return False
    # An extra's own requirements must be there too (streamlit[snowflake]).
    for extra in sorted(req.extras):
        if (req.name, extra) in seen:
            continue
        seen.add((req.name, extra))
        for text in dist.requires or []:
            try:
                sub = Requirement(text)
            except InvalidRequirement:
                continue
            if sub.marker is None:
                continue
            try:
                wanted = sub.marker.evaluate({**markers, "extra": extra})
                base = sub.marker.evaluate({**markers, "extra": ""})
            except InvalidMarker:
                continue
            if wanted and not base:
                sub.marker = None
                if not _requirement_met(sub, installed, markers, seen):
                    return False
    return True


def installed_versions(info: PythonInfo) -> dict[str, str]:
    """Canonical name -> version of every distribution the app's Python has."""
    return {name: dist.version for name, dist in _installed(info.path).items()}
