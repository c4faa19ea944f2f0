"""The options of installing the repository's packages (`--install-requirements/--no-install`,
`--env-cache`) and their frozen `PackageSettings`, which `Settings.packages` carries.

Kept apart from cli.py and settings.py, as publish mode's options are: a click decorator adds
the options, `package_settings` takes their values out of the parsed options.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable)

# Under the user's cache folder ($XDG_CACHE_HOME, else ~/.cache).
CACHE_SUBFOLDER = os.path.join("jhsingle-native-proxy", "envs")


@dataclass(frozen=True)
class PackageSettings:
    """Whether and where the packages the repository declares are installed."""

    # None: with --repo, install only when the app's Python lacks something declared; True:
    # always build the environment (also for a local folder); False: never install.
    install: bool | None = None
    # Where the environments are kept ("" until build_settings fills in the default).
    env_cache: str = ""

    def wanted(self, repo: str) -> bool:
        """Whether the repository's packages are looked at: with `--repo` unless
        `--no-install`, else only with `--install-requirements`."""
        return self.install is True or (self.install is None and bool(repo))


def package_options(f: F) -> F:
    """The click options of installing the repository's packages."""
    options = [
        click.option(
            "--install-requirements/--no-install",
            "install_requirements",
            default=None,
            help="Install the packages the repository declares (its jhsnp.toml's list, "
            "requirements.txt, pyproject.toml or environment.yml) into a cached environment "
            "of the app's own before it starts; --no-install: never. [default: with --repo, "
            "only when the app's Python lacks something declared]",
        ),
        click.option(
            "--env-cache",
            default="",
            metavar="DIR",
            help="Where the environments of the repository's packages are kept (the last few "
            "used, across restarts); a folder of yours that others cannot write in. "
            "[default: $XDG_CACHE_HOME or ~/.cache, then jhsingle-native-proxy/envs]",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def default_env_cache(environ: Mapping[str, str]) -> str:
    """$XDG_CACHE_HOME (or ~/.cache) / jhsingle-native-proxy / envs, from `environ`'s HOME."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".cache")
    return os.path.join(base, CACHE_SUBFOLDER)


def package_settings(
    options: MutableMapping[str, object], environ: Mapping[str, str]
) -> PackageSettings:
    """Take the package options out of click's options (the rest become `Settings` fields)."""
    install = options.pop("install_requirements", None)
    cache = str(options.pop("env_cache", "") or "")
    cache = os.path.abspath(os.path.expanduser(cache)) if cache else default_env_cache(environ)
    return PackageSettings(install=None if install is None else bool(install), env_cache=cache)
