"""Building one environment of the repository's packages: `uv` if the app's PATH has it, else
`python -m venv` and pip; the installer's lines to the progress log, scrubbed.

The environment is layered on the app's Python: a `.pth` file in it adds that Python's
site-packages (their own `.pth` files processed) after the environment's own, so a big
preinstalled Streamlit is used, not installed again, while what the environment installs comes
first. `--system-site-packages` would not do: when the app's Python is itself a venv (an image's
/opt/venv), it exposes the *base* interpreter's site-packages, not the venv's.

pip sees the layered packages (it asks the interpreter's sys.path) and installs only what is
missing. uv does not (it reads the environment's own site-packages only): it would install
Streamlit and its forty dependencies again. So with uv the requirements are resolved first,
with the app Python's versions as constraints (`uv pip compile -c`), and only the resolved
packages that the app's Python lacks at that very version are installed, without their
dependencies (they are in the resolution). When the constraints make the requirements
unsatisfiable (a requirement needs a newer version than the image's), they are resolved again
without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from .declared_requirements import Declared, include_target
from .process import signal_group
from .repo_url import redact_all, url_secrets
from .requirements_met import PythonInfo, installed_versions

# Seconds one environment's build may take in all (downloads included); then it is stopped and
# the start fails with the installer's last lines. Generous: a first install of a data-science
# stack over a slow mirror takes minutes.
INSTALL_TIMEOUT = 1200.0
ERROR_LINES = 15
LAYER_PTH = "_jhsnp_layer.pth"
REQUIREMENTS_IN = ".jhsnp-requirements.txt"
# What uv says when requirements cannot be satisfied (not when the index cannot be reached).
NO_SOLUTION = "No solution found"


class BuildError(Exception):
    """The installer failed; `lines` are its last lines (scrubbed)."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = lines


def scrubber(lines: Iterable[str]) -> Callable[[str], str]:
    """A function that hides credentials in a line: any URL's user info, and each secret of the
    declared lines' URLs wherever it shows up on its own (an installer may print it bare)."""
    secrets = sorted({s for line in lines for s in url_secrets(line)}, key=len, reverse=True)

    def scrub(text: str) -> str:
        return redact_all(text, secrets)

    return scrub


def find_uv(environ: Mapping[str, str]) -> str:
    """`uv` on the app's PATH, or ""."""
    return shutil.which("uv", path=environ.get("PATH") or os.defpath) or ""


def env_python(folder: str) -> str:
    return os.path.join(folder, "bin", "python")


def layer_lines(info: PythonInfo) -> str:
    """The .pth file that lays the app Python's packages under the environment's own."""
    return "".join(f"import site; site.addsitedir({path!r})\n" for path in info.site_packages)


def _site_packages(folder: str) -> str:
    lib = os.path.join(folder, "lib")
    for name in sorted(os.listdir(lib)):
        path = os.path.join(lib, name, "site-packages")
        if name.startswith("python") and os.path.isdir(path):
            return path
    raise BuildError("the new environment has no site-packages folder", [])


class EnvBuilder:
    """One build; `stop()` ends the installer running now (its whole process group)."""

    def __init__(
        self,
        declared: Declared,
        info: PythonInfo,
        environ: Mapping[str, str],
        progress_add: Callable[[str], None],
    ):
        self.declared = declared
        self.info = info
        self.uv = find_uv(environ)
        # The installer's environment: the app's, without an active venv or Python home that
        # would point it elsewhere, and without asking anyone anything.
        self.environ = {k: v for k, v in environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        self.environ.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        self.add = progress_add
        self.scrub = scrubber((*declared.lines, *declared.included))
        self.tail: deque[str] = deque(maxlen=ERROR_LINES)
        self._pid: int | None = None
        self._stopped = False
        self._deadline = 0.0

    @property
    def installer(self) -> str:
        return "uv" if self.uv else "pip"

    def stop(self) -> None:
        self._stopped = True
        if self._pid is not None:
            signal_group(self._pid, signal.SIGKILL)

    async def build(self, folder: str) -> None:
        """Make the environment in `folder` (which does not exist) or raise BuildError."""
        self._deadline = time.monotonic() + INSTALL_TIMEOUT
        python = self.info.executable
        if self.uv:
            await self._run([self.uv, "venv", "--quiet", "--python", python, folder])
        else:
            await self._run([python, "-m", "venv", "--without-pip", folder])
        # Ours alone: the files written into it hold the declared lines, credentials included,
        # whatever the cache folder's own mode.
        os.chmod(folder, 0o700)
        with open(os.path.join(_site_packages(folder), LAYER_PTH), "w", encoding="utf-8") as f:
            f.write(layer_lines(self.info))
        requirements = self._requirements_file(folder)
        if self.uv:
            await self._uv_install(folder, requirements)
        else:
            await self._pip_install(folder, requirements)

    def _requirements_file(self, folder: str) -> str:
        if self.declared.requirements_file:
            return self.declared.requirements_file
        path = os.path.join(folder, REQUIREMENTS_IN)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(self._anchored(line) + "\n" for line in self.declared.lines))
        return path

    def _anchored(self, line: str) -> str:
        """A `-r`/`-c` line of the repository's, written into the environment's folder: its
        relative path made the repository's (the installer reads it relative to the file)."""
        target = include_target(line)
        if not target or "://" in target or os.path.isabs(os.path.expanduser(target)):
            return line
        option = line[: len(line) - len(target)].rstrip(" =")
        return f"{option} {os.path.join(self.declared.folder, target)}"

    async def _pip_install(self, folder: str, requirements: str) -> None:
        python = env_python(folder)
        if "pip" not in installed_versions(self.info):
            # The app's Python has no pip to lend through the layer: the environment gets one.
            await self._run([python, "-m", "ensurepip", "--default-pip"])
        await self._run(
            [python, "-m", "pip", "install", "--progress-bar", "off", "-r", requirements]
        )

    async def _uv_install(self, folder: str, requirements: str) -> None:
        python = env_python(folder)
        base = installed_versions(self.info)
        constraints = os.path.join(folder, ".jhsnp-image.txt")
        with open(constraints, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}=={version}\n" for name, version in sorted(base.items())))
        resolved = os.path.join(folder, ".jhsnp-resolved.txt")
        compile_argv = [
            self.uv, "pip", "compile", "--quiet", "--python", python, "--no-header",
            "--no-annotate", "--emit-index-url", "--emit-find-links", "-o", resolved,
            requirements,
        ]  # fmt: skip
        try:
            await self._run([*compile_argv, "-c", constraints])
        except BuildError:
            if self._stopped or not any(NO_SOLUTION in line for line in self.tail):
                raise
            self.add("The image's versions do not fit these requirements: resolving without them")
            await self._run(compile_argv)
        wanted = []
        with open(resolved, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, sep, version = line.partition("==")
                if sep and base.get(_canonical(name)) == version.split(";")[0].strip():
                    continue  # the image's own, at the resolved version
                wanted.append(line)
        if not any(not line.startswith("-") or line.startswith("-e") for line in wanted):
            self.add("Everything resolved is in the image already")
            return
        install = os.path.join(folder, ".jhsnp-install.txt")
        with open(install, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in wanted))
        await self._run([self.uv, "pip", "install", "--python", python, "--no-deps", "-r", install])

    async def _run(self, argv: list[str]) -> None:
        """Run one installer step in its own process group, its lines to the progress."""
        if self._stopped:
            raise BuildError("the install was stopped", list(self.tail))
        remaining = self._deadline - time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            cwd=self.declared.folder or None,
            env=self.environ,
        )
        self._pid = process.pid

        async def finished() -> int:
            await self._pump(process)
            return await process.wait()  # an installer that closed its output is waited for too

        try:
            code = await asyncio.wait_for(finished(), max(remaining, 0.1))
        except asyncio.TimeoutError:
            raise BuildError(
                f"the install took longer than {INSTALL_TIMEOUT:g} seconds", list(self.tail)
            ) from None
        finally:
            signal_group(process.pid, signal.SIGKILL)  # whatever it left behind
            with contextlib.suppress(ProcessLookupError):
                if process.returncode is None:
                    await process.wait()
            self._pid = None
        if self._stopped:
            raise BuildError("the install was stopped", list(self.tail))
        if code != 0:
            what = "uv" if argv[0] == self.uv else os.path.basename(argv[0])
            raise BuildError(f"{what} failed (status {code})", list(self.tail))

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # a line longer than the stream's limit: skip it
                continue
            if not raw:
                return
            for part in raw.decode("utf-8", "replace").replace("\r", "\n").split("\n"):
                line = self.scrub(part.rstrip())
                if line.strip():
                    self.tail.append(line)
                    self.add(line)


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name.strip())
