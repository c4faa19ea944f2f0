"""The app of a `--repo` checkout: the repository's own description laid under the command line.

Precedence, key by key: the command line (`Settings.given_app`), then the repository's manifest
(`jhsnp.toml`; a Hugging Face Space's front matter in README.md only when there is no
jhsnp.toml), then inference (`--app auto` on the presentation path, `streamlit_app.py`, then
`app.py` by what it imports). `resolve` runs after every checkout (a first start, Pull and
restart, each published revision), so a push that changes the description takes effect.
Without `--repo` nothing changes: the command line alone decides, as before.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType

from .given_app import GivenApp
from .prepare import NotPrepared
from .presets import PresetError, apply_preset, infer_app
from .repository_manifest import MANIFEST, Description, ManifestError, read_description
from .settings import Settings

STREAMLIT_CONVENTION = "streamlit_app.py"
STREAMLIT_SOURCE = "streamlit_app.py (Streamlit Community Cloud)"
# Files that declare packages to install (app_packages.py): when one is there, the framework a
# preset needs may be installed after this step, so its absence is no error here.
PACKAGE_FILES = ("requirements.txt", "pyproject.toml", "environment.yml")
NOTHING_SAID = (
    "the repository does not say how to run its app: add a jhsnp.toml with 'app' or "
    "'command' (or a streamlit_app.py, or an app.py), or give the command after -- "
    "on the command line"
)
SOURCES = (
    "Where the app comes from, with --repo (first found wins, key by key):",
    "  1. the command line: the words after --, --app TYPE, and each option given",
    f"  2. {MANIFEST} at the repository's root (app, command, presentation_path, env, "
    "requirements, ready_check_path, ready_timeout, absolute_url, rewrite_urls, mappath, "
    "required_env)",
    "  3. README.md front matter of a Hugging Face Space (sdk: gradio, streamlit or static; "
    "app_file; sdk_version), only without a jhsnp.toml",
    "  4. streamlit_app.py at the root (streamlit), else app.py by what it imports",
)


class RepositoryAppError(NotPrepared):
    """The repository's description cannot be used: one line for the owner, with Try again."""


def resolve(settings: Settings, folder: str = "") -> Settings:
    """`settings` with the app the repository in `folder` (default: the checkout) describes,
    under what the command line gave. Raises RepositoryAppError saying why not."""
    folder = folder or settings.repofolder
    if not settings.repo or not folder:
        return settings
    given = settings.given_app
    try:
        found = read_description(folder)
        resolved = _laid(settings, given, found, folder)
    except (ManifestError, PresetError) as e:
        raise RepositoryAppError(str(e)) from None
    except OSError as e:
        raise RepositoryAppError(f"the repository's files could not be read: {e}") from None
    if resolved.starts_at_first_request and not settings.starts_at_first_request:
        # Whether a start waits for the owner's visit is decided before the checkout.
        raise RepositoryAppError(
            f"{resolved.app_source}: {{origin_host}} is known only from the owner's first "
            "visit, which a start decided by the repository does not wait for: give such a "
            "command on the command line"
        )
    return resolved


def _laid(settings: Settings, given: GivenApp, found: Description, folder: str) -> Settings:
    explicit = given.explicit
    values = {k: v for k, v in found.values.items() if k not in explicit}
    path = settings.presentation_path
    if "presentation_path" not in explicit and found.presentation_path:
        path = found.presentation_path
    env = {**found.env, **given.env}
    mappath = {**found.mappath, **settings.mappath}
    app_name, source = settings.app_name, settings.app_source
    command = settings.command
    if given.decided:
        # The command line chose the app (and its preset is laid already): the repository
        # adds the keys it did not give.
        env = {**settings.env, **found.env, **given.env}
    else:
        app, source, path = _choose(given, found, path, folder)
        if app:
            options = {
                "presentation_path": path,
                "working_dir": folder,
                "conda_env": settings.conda_env,
                "env": env,
                **values,
            }
            check = not (found.requirements or found.framework_pin or _declares_packages(folder))
            options, words = apply_preset(
                app,
                options,
                list(given.words),
                explicit | set(values),
                settings.environ,
                check_framework=check,
            )
            values = {k: options[k] for k in ("ready_check_path", "ready_timeout",
                                              "absolute_url", "rewrite_urls")
                      if k in options}  # fmt: skip
            env, app_name, command = options["env"], options["app_name"], tuple(words)
        else:
            app_name, command = "", found.command + given.words
    return dataclasses.replace(
        settings,
        command=tuple(command),
        presentation_path=path,
        env=MappingProxyType(env),
        mappath=MappingProxyType(mappath),
        app_name=app_name,
        app_source=source,
        app_requirements=found.requirements,
        framework_pin=found.framework_pin,
        secrets=dataclasses.replace(settings.secrets, required_env=found.required_env),
        **values,
    )


def _choose(given: GivenApp, found: Description, path: str, folder: str) -> tuple[str, str, str]:
    """The preset ("" for the manifest's command), the source that decided, and the path."""
    if given.app and given.app != "auto":
        return given.app, "command line", path or _conventional_file(folder)
    if found.command:
        return "", found.source, path
    if found.app and found.app != "auto":
        return found.app, found.source, path or _conventional_file(folder)
    # Inference: `auto` (the command line's or the manifest's) or nothing said.
    said_auto = given.app == "auto" or found.app == "auto"
    if path:
        source = found.source if found.app == "auto" else f"inferred from {path}"
        return infer_app(os.path.join(folder, path)), source, path
    if os.path.isfile(os.path.join(folder, STREAMLIT_CONVENTION)):
        return "streamlit", STREAMLIT_SOURCE, STREAMLIT_CONVENTION
    if os.path.isfile(os.path.join(folder, "app.py")):
        return infer_app(os.path.join(folder, "app.py")), "inferred from app.py", "app.py"
    if said_auto:
        raise RepositoryAppError(
            "--app auto found nothing to run: no presentation path, streamlit_app.py nor app.py"
        )
    raise RepositoryAppError(NOTHING_SAID)


def _conventional_file(folder: str) -> str:
    """streamlit_app.py or app.py when there, for a preset named without its file."""
    for name in (STREAMLIT_CONVENTION, "app.py"):
        if os.path.isfile(os.path.join(folder, name)):
            return name
    return ""


def _declares_packages(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in PACKAGE_FILES)


def describe(settings: Settings) -> str:
    """One line on the app and the source that decided: "streamlit, from jhsnp.toml"."""
    if not settings.command and settings.command_factory is None:
        return "read from the repository after the checkout"
    what = settings.app_name or "command"
    if not settings.app_source:
        return what
    return f"{what}, from {settings.app_source}"


def describe_sources(presentation_path: str, environ: Mapping[str, str]) -> list[str]:
    """--list-apps' lines on the sources; with a local folder, what it resolves to."""
    lines = list(SOURCES)
    folder = os.path.abspath(os.path.expanduser(presentation_path)) if presentation_path else ""
    if folder and os.path.isdir(folder):
        probe = Settings(
            command=(),
            repo="(local folder)",
            repofolder=folder,
            given_app=GivenApp(deferred=True),
            environ=MappingProxyType(dict(environ)),
        )
        try:
            resolved = resolve(probe)
            lines.append(f"{folder}: {describe(resolved)}: {' '.join(resolved.command)}")
        except NotPrepared as e:
            lines.append(f"{folder}: {e}")
    return lines
