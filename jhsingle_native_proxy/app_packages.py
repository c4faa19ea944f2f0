"""The repository's packages, installed when the app's Python lacks them, in a cached
environment of the app's own; then the app runs with that environment.

The decision, in order:

- `--no-install`: nothing. Without `--repo`, nothing unless `--install-requirements`.
- Nothing declared (declared_requirements.py): nothing.
- By default (with `--repo`), the app's Python is asked (requirements_met.py): everything met
  means nothing is installed and the network is not touched, as in 0.8.3's days of images
  that have everything. `--install-requirements` builds (or reuses) the environment anyway.
- The environment is the cached one with the same key (env_cache.py), else built
  (env_build.py), under the cache's locks; a build that fails leaves nothing behind.

The app then starts with the environment's `bin` first on PATH and VIRTUAL_ENV set, and
`launch.py` runs its command's Python words and Python console scripts with the environment's
Python (`command_in_env`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Mapping

from . import env_cache, metrics
from .declared_requirements import DeclarationError, Declared, read_declared
from .env_build import INSTALL_TIMEOUT, BuildError, EnvBuilder, env_python, scrubber
from .prepare import NotPrepared, ProgressLog
from .requirements_met import ProbeError, PythonInfo, app_python, probe_python, script_python
from .requirements_met import unmet as unmet_lines
from .settings import Settings

log = logging.getLogger("jhsingle_native_proxy")


def repository_folder(settings: Settings) -> str:
    """Where the declarations are: the checkout, else the presentation's folder."""
    if settings.repofolder:
        return settings.repofolder
    path = settings.presentation_abspath
    if path and os.path.isdir(path):
        return path
    if path:
        return os.path.dirname(path)
    return settings.app_dir


def environ_with_env(folder: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The app's environment with `folder`'s venv active: its bin first, VIRTUAL_ENV set."""
    env = {k: v for k, v in environ.items() if k != "PYTHONHOME"}
    bin_dir = os.path.join(folder, "bin")
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    env["VIRTUAL_ENV"] = folder
    return env


def command_in_env(argv: list[str], environ: Mapping[str, str], python: str) -> list[str]:
    """`argv` run with the environment's `python`: our own interpreter's path (a preset's) and
    a bare `python`/`python3` become it; a Python console script found outside the environment
    (the image's `streamlit`) runs under it, or the packages only the environment has would be
    invisible to it. Anything else is left as it is."""
    if not argv or not python:
        return list(argv)
    first = argv[0]
    if first in (sys.executable, "python", "python3") or (
        "/" not in first and first.startswith("python3.")
    ):
        return [python, *argv[1:]]
    import shutil

    env_bin = os.path.dirname(python)
    found = first if "/" in first else shutil.which(first, path=environ.get("PATH") or os.defpath)
    if not found or os.path.dirname(os.path.abspath(found)) == env_bin:
        return list(argv)
    if script_python(found):
        return [python, found, *argv[1:]]
    return list(argv)


class PackageInstall:
    """One preparation's packages; `stop()` ends an install under way."""

    def __init__(self, settings: Settings, progress: ProgressLog, set_phase: Callable[[str], None]):
        self.settings = settings
        self.progress = progress
        self.set_phase = set_phase
        self._builder: EnvBuilder | None = None
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        if self._builder is not None:
            self._builder.stop()

    def wanted(self) -> bool:
        return self.settings.packages.wanted(self.settings.repo)

    async def run(self, environ: dict[str, str]) -> tuple[Settings, dict[str, str]]:
        s = self.settings
        if not self.wanted():
            return s, environ
        folder = repository_folder(s)
        try:
            declared = read_declared(folder, tuple(s.app_requirements), s.framework_pin)
        except DeclarationError as e:
            raise NotPrepared(str(e)) from None
        if declared is None:
            return s, environ
        python = app_python(s.command, environ)
        try:
            info = await asyncio.to_thread(probe_python, python, environ)
        except ProbeError as e:
            raise NotPrepared(str(e)) from None
        if declared.conda_packages:
            self._warn_conda(declared, environ)
        if s.packages.install is None:
            missing = await asyncio.to_thread(unmet_lines, declared.lines, info)
            if not missing:
                self.progress.add(
                    f"The {declared.count} packages {declared.source} declares are installed"
                )
                return s, environ
            self.progress.add(f"Not installed yet: {len(missing)} of {declared.source}'s lines")
        env_folder = await self._environment(declared, info, environ)
        settings = dataclasses.replace(s, env_python=env_python(env_folder))
        return settings, environ_with_env(env_folder, environ)

    def _warn_conda(self, declared: Declared, environ: Mapping[str, str]) -> None:
        from .conda import conda_executables

        tools = conda_executables(environ)
        # A channel's URL may hold credentials: hidden as the installer's lines hide them.
        names = scrubber(declared.conda_packages)(", ".join(declared.conda_packages))
        why = (
            "only its pip: list is installed here (give the app a conda environment with "
            "--conda-env for the rest)"
            if tools
            else "no conda, mamba or micromamba was found: its pip: list is installed alone"
        )
        line = f"{declared.source} also names conda packages ({names}): {why}"
        log.warning("%s", line)
        self.progress.add(line)

    async def _environment(
        self, declared: Declared, info: PythonInfo, environ: Mapping[str, str]
    ) -> str:
        """The folder of the environment for `declared` on `info`'s Python: cached, or built."""
        cache = self.settings.packages.env_cache
        key = declared.digest(info.key)
        folder = env_cache.env_folder(cache, key)
        try:
            fd = await env_cache.lock(cache, key, exclusive=False, timeout=INSTALL_TIMEOUT)
            if not env_cache.is_complete(folder):
                env_cache.unlock(fd)
                fd = await env_cache.lock(cache, key, exclusive=True, timeout=INSTALL_TIMEOUT)
        except env_cache.EnvCacheError as e:
            raise NotPrepared(str(e)) from None
        try:
            if env_cache.is_complete(folder):
                env_cache.touch(folder)
                self.progress.add(f"Using the environment {key} (built before)")
                log.info("The app's packages: the environment %s, built before", folder)
            else:
                await self._build(declared, info, environ, folder, key)
                env_cache.share(fd)
                for old in env_cache.evict(cache, key):
                    log.info("Removed the least recently used environment %s", old)
        except BaseException:
            env_cache.unlock(fd)
            raise
        env_cache.lease(folder, fd)
        return folder

    async def _build(
        self,
        declared: Declared,
        info: PythonInfo,
        environ: Mapping[str, str],
        folder: str,
        key: str,
    ) -> None:
        env_cache.remove_incomplete(folder)
        builder = EnvBuilder(declared, info, environ, self.progress.add)
        self._builder = builder
        if self._stopped:
            builder.stop()
        count = declared.count
        self.set_phase(f"Installing {count} package{'s' if count != 1 else ''}")
        self.progress.add(f"Building the environment {key} with {builder.installer}")
        log.info("Installing the app's packages (%s) into %s", declared.source, folder)
        try:
            with metrics.step("install"):
                await builder.build(folder)
            env_cache.mark_complete(
                folder,
                {"source": declared.source, "python": info.key, "installer": builder.installer},
            )
        except (BuildError, OSError) as e:
            env_cache.remove_incomplete(folder)
            lines = getattr(e, "lines", [])
            self.set_phase("Installing the app's packages failed")
            message = f"installing the app's packages failed: {builder.scrub(str(e))}"
            log.error("%s", message)
            for line in lines:
                log.error("  %s", line)
            said = [line for line in lines if "error" in line.lower()] or lines
            if said:  # the installer's own reason, on the failure page's first line too
                message += f": {said[-1].strip()}"
            raise NotPrepared(message) from None
        except BaseException:
            env_cache.remove_incomplete(folder)
            raise
        finally:
            self._builder = None
        self.progress.add("The app's packages are installed")
