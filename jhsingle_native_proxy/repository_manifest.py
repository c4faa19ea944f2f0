"""What a repository says about its app, read from its files: our `jhsnp.toml`, else a Hugging
Face Space's front matter in `README.md`. Pure: a folder in, a `Description` (or an error) out.

A repository is its owner's code, so it may say how its app runs (the command, the preset and
its file, the app's environment, what to install, when it is ready). It never says who may enter
nor where the server listens: those keys are refused with a sentence naming them, as is any key
we do not know (a misspelt key must not be quietly ignored).
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import command as command_templates
from .http_hygiene import target_problem
from .presets import PRESETS

MANIFEST = "jhsnp.toml"
SPACE_README = "README.md"
MANIFEST_SOURCE = MANIFEST
SPACE_SOURCE = "README.md front matter (Hugging Face Spaces)"
# Files larger than this are not read (a manifest is a few lines; a README's front matter is
# at its top): every buffer has a bound.
MANIFEST_MAX_BYTES = 64 * 1024
README_MAX_BYTES = 256 * 1024

MANIFEST_KEYS = (
    "app",
    "presentation_path",
    "command",
    "env",
    "requirements",
    "ready_check_path",
    "ready_timeout",
    "absolute_url",
    "rewrite_urls",
    "mappath",
    "required_env",
)
_WHO_MAY_ENTER = (
    "decides who may enter or what the app learns about its viewers, which is the server's "
    "admin's choice on the command line, never the repository's"
)
_WHERE = "says where the server listens or is reached, which the spawner decides"
_WHICH_CODE = "says which code runs, which the command line decides"
REFUSED_KEYS = {
    **dict.fromkeys(
        (
            "authtype",
            "allow_host",
            "allow_hosts",
            "frame_ancestors",
            "forward_user_info",
            "query_user_info",
            "forward_user_headers",
            "forward_user_jwt",
            "hide_hub_token",
            "request_header",
            "allow_origin",
            "webhook_secret_file",
        ),
        _WHO_MAY_ENTER,
    ),
    **dict.fromkeys(
        ("ip", "port", "prefix", "base_url", "destport", "unix_socket", "raw_socket_proxy"),
        _WHERE,
    ),
    **dict.fromkeys(
        ("repo", "repobranch", "repofolder", "repo_token_file", "follow", "conda_env", "config"),
        _WHICH_CODE,
    ),
}
# Words that mark a key about access or secrets, whatever else it is called.
_SECURITY_WORDS = ("auth", "token", "secret", "password", "cookie", "host", "user", "group",
                   "scope", "admin", "oauth", "frame", "origin", "ssl", "cert")  # fmt: skip
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]*$")
SPACE_SDKS = {"gradio": "gradio", "streamlit": "streamlit", "static": "static"}
DOCKER_REFUSED = (
    f"{SPACE_SOURCE}: sdk: docker is not supported: this server runs the app as a process "
    "beside it, not as a container image; give the app's command in jhsnp.toml "
    "(command = [...]) instead"
)


class ManifestError(ValueError):
    """The repository's description cannot be used; one line for the owner, naming the key."""


@dataclass(frozen=True)
class Description:
    """The repository's own description of its app ("" and empty: it said nothing)."""

    source: str = ""
    app: str = ""
    command: tuple[str, ...] = ()
    presentation_path: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    mappath: Mapping[str, str] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()
    # Variables the app needs (`required_env`, names only): a start without one stops.
    required_env: tuple[str, ...] = ()
    # ready_check_path, ready_timeout, absolute_url, rewrite_urls: laid over a preset's, under
    # the command line.
    values: Mapping[str, Any] = field(default_factory=dict)
    framework_pin: str = ""


def read_description(folder: str) -> Description:
    """jhsnp.toml if the folder has one, else a Space's front matter, else an empty one."""
    path = os.path.join(folder, MANIFEST)
    if os.path.isfile(path):
        # A link out of the checkout (to /proc/self/environ, another user's file) is not read.
        inside(MANIFEST, folder, "the file")
        return parse_manifest(_read_bounded(path, MANIFEST_MAX_BYTES, MANIFEST), folder)
    readme = os.path.join(folder, SPACE_README)
    if os.path.isfile(readme) and _stays_inside(SPACE_README, folder):
        front = front_matter(_read_bounded(readme, README_MAX_BYTES, SPACE_README, whole=False))
        if front is not None:
            return space_description(front, folder)
    return Description()


def _read_bounded(path: str, limit: int, name: str, whole: bool = True) -> str:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit and whole:
        raise ManifestError(f"{name} is larger than {limit // 1024} KiB: not read")
    return data[:limit].decode("utf-8", "replace")


def _stays_inside(name: str, folder: str) -> bool:
    try:
        inside(name, folder, name)
    except ManifestError:
        return False
    return True


def refusal(key: str) -> str:
    """Why a key of jhsnp.toml is refused."""
    name = key.replace("-", "_").lower()
    if name in REFUSED_KEYS:
        return f"{MANIFEST}: {key!r} is refused: it {REFUSED_KEYS[name]}"
    if any(word in name for word in _SECURITY_WORDS):
        return f"{MANIFEST}: {key!r} is refused: it {_WHO_MAY_ENTER}"
    return f"{MANIFEST}: {key!r} is not a key of jhsnp.toml (its keys: {', '.join(MANIFEST_KEYS)})"


def parse_manifest(text: str, folder: str) -> Description:
    """jhsnp.toml's text, checked as the command line checks the same options."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{MANIFEST} is not valid TOML: {e}") from None
    except RecursionError:  # the parser recurses into nested arrays and tables
        raise ManifestError(f"{MANIFEST} is nested too deeply to be read") from None
    for key in data:
        if key not in MANIFEST_KEYS:
            raise ManifestError(refusal(key))
    app = _string(data, "app")
    if app and app != "auto" and app not in PRESETS:
        raise ManifestError(
            f"{MANIFEST}: app = {app!r} is not known (known: {', '.join(PRESETS)}, auto)"
        )
    command = _command(data.get("command"))
    if app and command:
        raise ManifestError(f"{MANIFEST}: give 'app' or 'command', not both")
    values: dict[str, Any] = {}
    if "ready_check_path" in data:
        values["ready_check_path"] = _ready_check_path(_string(data, "ready_check_path"))
    if "ready_timeout" in data:
        values["ready_timeout"] = _seconds(data["ready_timeout"])
    for flag in ("absolute_url", "rewrite_urls"):
        if flag in data:
            if not isinstance(data[flag], bool):
                raise ManifestError(f"{MANIFEST}: {flag} must be true or false")
            values[flag] = data[flag]
    return Description(
        source=MANIFEST_SOURCE,
        app=app,
        command=command,
        presentation_path=inside(_string(data, "presentation_path"), folder, "presentation_path"),
        env=_table(data, "env", env_names=True),
        mappath=_mappath(_table(data, "mappath")),
        requirements=_requirements(data.get("requirements")),
        required_env=_required_env(data.get("required_env")),
        values=values,
    )


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ManifestError(f"{MANIFEST}: {key} must be a string, not {type(value).__name__}")
    _no_control(value, key)
    return value


def _no_control(value: str, key: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ManifestError(f"{MANIFEST}: {key} holds a control character (a line break?)")


def _command(value: object) -> tuple[str, ...]:
    """A list of words, or one string split as a shell would (no shell runs it)."""
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise ManifestError(f"{MANIFEST}: command {value!r}: {e}") from None
    elif isinstance(value, list) and all(isinstance(w, str) for w in value):
        words = list(value)
    else:
        raise ManifestError(f"{MANIFEST}: command must be a list of strings, or a string")
    if not words:
        raise ManifestError(f"{MANIFEST}: command is empty")
    for word in words:
        if "\0" in word:
            raise ManifestError(f"{MANIFEST}: command holds a NUL character")
    try:
        command_templates.placeholders(words)
    except command_templates.TemplateError as e:
        raise ManifestError(f"{MANIFEST}: command: {e}") from None
    return tuple(words)


def _table(data: Mapping[str, Any], key: str, env_names: bool = False) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"{MANIFEST}: {key} must be a table of strings ([{key}])")
    for name, text in value.items():
        if not isinstance(text, str):
            raise ManifestError(f"{MANIFEST}: {key}.{name} must be a string")
        if "\0" in text or (env_names and not _ENV_NAME.match(name)):
            raise ManifestError(f"{MANIFEST}: {key}: {name!r} is not a valid variable name")
    try:
        command_templates.placeholders(value.values())
    except command_templates.TemplateError as e:
        raise ManifestError(f"{MANIFEST}: {key}: {e}") from None
    return dict(value)


def _mappath(table: dict[str, str]) -> dict[str, str]:
    """Each side a path on the app (`/...`, visible ASCII): the proxy writes the value after the
    app's `http://127.0.0.1:PORT`, where `@host/` or `.host/` would name another server."""
    for name, value in table.items():
        for path in (name, value):
            problem = target_problem(path) or ("" if path.startswith("/") else "no leading /")
            if problem:
                raise ManifestError(f"{MANIFEST}: mappath {path!r} is not a path on the app")
    return table


def _requirements(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(r, str) and r.strip() for r in value):
        raise ManifestError(f"{MANIFEST}: requirements must be a list of requirement strings")
    for requirement in value:
        _no_control(requirement, "requirements")
    return tuple(r.strip() for r in value)


def _required_env(value: object) -> tuple[str, ...]:
    """The names of variables the app needs; their values come from the server (--env-file)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise ManifestError(f"{MANIFEST}: required_env must be a list of variable names")
    for name in value:
        if not _ENV_NAME.fullmatch(name):
            raise ManifestError(f"{MANIFEST}: required_env: {name!r} is not a variable name")
    return tuple(value)


def _ready_check_path(path: str) -> str:
    if any(c.isspace() for c in path):
        raise ManifestError(f"{MANIFEST}: ready_check_path {path!r} holds a space")
    return path if path.startswith("/") else "/" + path


def _seconds(value: object) -> float:
    """As --ready-timeout: a finite number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{MANIFEST}: ready_timeout must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise ManifestError(f"{MANIFEST}: ready_timeout {value!r} must be finite and above 0")
    return float(value)


def inside(path: str, folder: str, what: str, source: str = MANIFEST) -> str:
    """`path` relative to the repository's root, refused if it leads out of it (`..`, an
    absolute path, a link pointing elsewhere)."""
    if not path:
        return ""
    if os.path.isabs(path) or path.startswith("~"):
        raise ManifestError(f"{source}: {what} {path!r} must be relative to the repository")
    normal = os.path.normpath(path)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise ManifestError(f"{source}: {what} {path!r} leads out of the repository")
    root = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(root, normal))
    if real != root and not real.startswith(root + os.sep):
        raise ManifestError(f"{source}: {what} {path!r} leads out of the repository (a link)")
    return normal


def front_matter(text: str) -> dict[str, Any] | None:
    """A Space's YAML front matter (between `---` lines at the top), or None when there is
    none. A README that only starts with a rule is no Space: broken YAML is an error only when
    it has an `sdk:` line."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(n for n, line in enumerate(lines[1:], 1) if line.strip() in ("---", "..."))
    except StopIteration:
        return None
    block = "\n".join(lines[1:end])
    import yaml  # only for a README that has front matter

    try:
        data = yaml.safe_load(block)
    except (yaml.YAMLError, RecursionError) as e:
        if re.search(r"^sdk\s*:", block, re.MULTILINE):
            problem = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            problem = problem.splitlines()[0]
            raise ManifestError(f"{SPACE_SOURCE} is not valid YAML: {problem}") from None
        return None
    if not isinstance(data, dict) or "sdk" not in data:
        return None
    return data


def _space_word(front: Mapping[str, Any], key: str) -> str:
    """A front matter value that must be one word (`1.40` may come as a number). Anything else
    is refused before str() expands it: YAML aliases make a few hundred bytes a list of
    millions of strings, shared in memory until something writes them out."""
    value = front.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ManifestError(f"{SPACE_SOURCE}: {key} must be a word, not a {type(value).__name__}")
    return str(value).strip()


def space_description(front: Mapping[str, Any], folder: str) -> Description:
    """A Space's `sdk`, `app_file` and `sdk_version` as our preset, its file and a pin."""
    sdk = _space_word(front, "sdk").lower()
    if sdk == "docker":
        raise ManifestError(DOCKER_REFUSED)
    if sdk not in SPACE_SDKS:
        raise ManifestError(
            f"{SPACE_SOURCE}: sdk: {sdk!r} is not one we run (gradio, streamlit or static)"
        )
    app_file = front.get("app_file") or ("index.html" if sdk == "static" else "app.py")
    if not isinstance(app_file, str):
        raise ManifestError(f"{SPACE_SOURCE}: app_file must be a path")
    app_file = inside(app_file, folder, "app_file", SPACE_SOURCE)
    # A static Space serves the folder that holds its page.
    path = (os.path.dirname(app_file) or ".") if sdk == "static" else app_file
    pin = ""
    version = _space_word(front, "sdk_version")
    if version and sdk != "static":
        if not _VERSION.match(version):
            raise ManifestError(f"{SPACE_SOURCE}: sdk_version {version!r} is not a version")
        pin = f"{sdk}=={version}"
    return Description(
        source=SPACE_SOURCE, app=SPACE_SDKS[sdk], presentation_path=path, framework_pin=pin
    )
