"""What the repository declares it needs: read from its files, in one order, the first found.

1. the manifest's own list (`Settings.app_requirements`, from jhsnp.toml);
2. `requirements.txt`;
3. `pyproject.toml`'s `[project].dependencies`, and the project itself only when
   `[tool.jhsnp] install-project = true` says so (an app's repository is rarely a package);
4. `environment.yml`: its `pip:` list; its conda packages need conda, mamba or micromamba
   (`conda_packages` says which were declared, for the caller to decide).

A framework pin (a Hugging Face Space's `sdk_version`) is added to whatever list was found.
Pure reading: nothing is installed or judged here. A file that cannot be read or parsed is a
`DeclarationError`, one line for the owner.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import sys
from dataclasses import dataclass

from .repo_url import url_secrets

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REQUIREMENTS_TXT = "requirements.txt"
PYPROJECT = "pyproject.toml"
ENVIRONMENT_FILES = ("environment.yml", "environment.yaml")
# A declaration larger than this is refused rather than read (a repository is untrusted input
# for our process: the owner's code runs in the app, not here).
MAX_FILE_BYTES = 1 << 20
# Files a declaration includes (`-r`, `-c`, recursively) read for the cache key: at most these.
MAX_INCLUDED = 32
# Distinct credentials in the declared URLs: each is searched for in every line the installer
# prints, so their number bounds that work (a real file has one or two).
MAX_SECRETS = 32
_INCLUDE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")


class DeclarationError(Exception):
    """A declaration file cannot be read; str(e) is one line for the owner."""


@dataclass(frozen=True)
class Declared:
    """What was declared, and where."""

    # Where it came from: "jhsnp.toml", "requirements.txt", "pyproject.toml", "environment.yml".
    source: str
    # The requirement lines, as written (comments and blank lines dropped, continuations joined).
    lines: tuple[str, ...]
    # The file given to the installer as `-r FILE` (requirements.txt, whose own `-r` and paths
    # are relative to it), or "" when the lines are written out for it.
    requirements_file: str = ""
    # Conda packages of environment.yml (installed only with a conda-like tool).
    conda_packages: tuple[str, ...] = ()
    # The repository's folder, for a project installed from it and for relative paths.
    folder: str = ""
    # The lines of the files the declaration includes (`-r`, `-c`, recursively), for the cache
    # key and the credentials to hide: a changed included file is a new environment.
    included: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many packages were declared (option lines such as --index-url not counted)."""
        return sum(1 for line in self.lines if not line.startswith("-") or _names_package(line))

    def digest(self, python: str) -> str:
        """The environment's cache key: what was declared, the framework pin included, and the
        Python it is for (its executable and version). A project installed from the folder
        makes the folder part of the key too."""
        h = hashlib.sha256()
        parts = (python, self.source, *self.lines, "|", *self.conda_packages, "|", *self.included)
        for part in parts:
            h.update(part.encode("utf-8", "surrogateescape") + b"\0")
        if any(line.startswith(("-e", "--editable", ".", "/")) for line in self.lines):
            h.update(self.folder.encode("utf-8", "surrogateescape"))
        return h.hexdigest()[:20]


def _names_package(line: str) -> bool:
    return line.startswith(("-e ", "--editable"))


def _read_text(path: str) -> str:
    try:
        return _read_regular(path)
    except (OSError, UnicodeDecodeError) as e:
        raise DeclarationError(f"cannot read {os.path.basename(path)}: {e}") from None


def _read_regular(path: str) -> str:
    """A regular file's text, at most MAX_FILE_BYTES: never a FIFO or device, which could make
    the read wait forever or never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DeclarationError(f"{os.path.basename(path)} is not a regular file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DeclarationError(f"{os.path.basename(path)} is larger than 1 MiB")
    return data.decode("utf-8")


def include_target(line: str) -> str:
    """The file a `-r`/`-c` line names (`-r x.txt`, `-rx.txt`, `--requirement=x.txt`), or ""."""
    for option in _INCLUDE_OPTIONS:
        if line == option or not line.startswith(option):
            continue
        rest = line[len(option) :]
        if option.startswith("--") and rest[:1] not in (" ", "="):
            continue
        return rest.lstrip(" =")
    return ""


def _included_lines(lines: tuple[str, ...], base: str) -> tuple[str, ...]:
    """The lines of the local files that `lines` include (relative to `base`), recursively and
    bounded; a file that cannot be read counts by its name (the installer will say why)."""
    found: list[str] = []
    seen: set[str] = set()
    pending = [(line, base) for line in lines]
    while pending:
        line, where = pending.pop(0)
        target = include_target(line)
        if not target or "://" in target:
            continue
        path = os.path.normpath(os.path.join(where, os.path.expanduser(target)))
        if path in seen:
            continue
        if len(seen) >= MAX_INCLUDED:
            raise DeclarationError(f"more than {MAX_INCLUDED} requirement files are included")
        seen.add(path)
        found.append(f"-r {path}")
        try:
            text = _read_regular(path)
        except (OSError, UnicodeDecodeError, DeclarationError):
            continue
        more = requirement_lines(text)
        found += more
        pending += [(m, os.path.dirname(path)) for m in more]
    return tuple(found)


def requirement_lines(text: str) -> list[str]:
    """requirements.txt's lines as pip reads them: `\\` continuations joined, comments (a `#`
    at the start or after whitespace) and blank lines dropped."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        joined.append(pending + raw)
        pending = ""
    if pending:
        joined.append(pending)
    lines = []
    for line in joined:
        if line.lstrip().startswith("#"):
            continue
        for mark in (" #", "\t#"):
            if mark in line:
                line = line.split(mark, 1)[0]
        line = " ".join(line.split())
        if line:
            lines.append(line)
    return lines


def _from_pyproject(folder: str, path: str) -> Declared | None:
    try:
        data = tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as e:
        raise DeclarationError(f"pyproject.toml is not valid TOML: {e}") from None
    project = data.get("project")
    deps = project.get("dependencies") if isinstance(project, dict) else None
    tool = data.get("tool", {})
    ours = tool.get("jhsnp", {}) if isinstance(tool, dict) else {}
    install_project = isinstance(ours, dict) and ours.get("install-project") is True
    if deps is None and not install_project:
        return None  # a pyproject.toml for tools only (ruff, black) declares nothing
    if not isinstance(deps or [], list) or not all(isinstance(d, str) for d in deps or []):
        raise DeclarationError("pyproject.toml: [project].dependencies must be a list of strings")
    lines = [" ".join(d.split()) for d in deps or [] if d.strip()]
    if install_project:
        # Editable: the code the app runs is the checkout's, and a project without
        # dependencies of its own is installed in a second.
        lines.append(f"-e {folder}")
    return Declared(PYPROJECT, tuple(lines), folder=folder)


def _from_environment_yml(folder: str, path: str) -> Declared:
    import yaml

    try:
        data = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise DeclarationError(f"{os.path.basename(path)} is not valid YAML{at}") from None
    deps = data.get("dependencies") if isinstance(data, dict) else None
    if deps is None:
        deps = []
    if not isinstance(deps, list):
        raise DeclarationError(f"{os.path.basename(path)}: dependencies must be a list")
    pip_lines: list[str] = []
    conda: list[str] = []
    for item in deps:
        if isinstance(item, dict) and isinstance(item.get("pip"), list):
            pip_lines += [" ".join(str(p).split()) for p in item["pip"] if str(p).strip()]
        elif isinstance(item, (str, int, float)):
            conda.append(str(item).strip())
        else:
            raise DeclarationError(
                f"{os.path.basename(path)}: a dependency that is neither a package nor a pip list"
            )
    # Python itself, and pip, are what any environment of ours has.
    conda = [c for c in conda if c.split("=")[0].split("<")[0].split(">")[0].strip()
             not in ("python", "pip")]  # fmt: skip
    return Declared(
        os.path.basename(path), tuple(pip_lines), conda_packages=tuple(conda), folder=folder
    )


def read_declared(folder: str, manifest: tuple[str, ...] = (), pin: str = "") -> Declared | None:
    """What the repository at `folder` declares, from the first source found; None: nothing.

    `manifest` is the manifest's own list (first if not empty); `pin` a framework requirement
    added to what was found (or alone, when nothing else is declared).
    """
    declared = _first_declared(folder, manifest)
    if declared is not None and pin:
        # Given as lines of our own: a requirements.txt is then read for its lines (its own -r
        # and paths are relative to its folder, which is the installer's working directory).
        declared = Declared(
            declared.source, (*declared.lines, pin), "", declared.conda_packages, folder
        )
    elif pin:
        declared = Declared("the framework's version", (pin,), folder=folder)
    if declared is None:
        return None
    included = _included_lines(declared.lines, folder)
    secrets = {s for line in (*declared.lines, *included) for s in url_secrets(line)}
    if len(secrets) > MAX_SECRETS:
        raise DeclarationError(
            f"{declared.source}: more than {MAX_SECRETS} credentials in its URLs: not read"
        )
    return dataclasses.replace(declared, included=included)


def _declaration_file(folder: str, name: str) -> str:
    """`folder/name` if it is a file there, else ""; a link that leads out of the checkout is
    refused, as jhsnp.toml's are (what the installer reads is the repository's)."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return ""
    root = os.path.realpath(folder)
    if not os.path.realpath(path).startswith(root + os.sep):
        raise DeclarationError(f"{name} leads out of the repository (a link): not read")
    return path


def _first_declared(folder: str, manifest: tuple[str, ...]) -> Declared | None:
    if manifest:
        lines = tuple(" ".join(line.split()) for line in manifest if line.strip())
        return Declared("jhsnp.toml", lines, folder=folder)
    path = _declaration_file(folder, REQUIREMENTS_TXT)
    if path:
        lines = tuple(requirement_lines(_read_text(path)))
        return Declared(REQUIREMENTS_TXT, lines, requirements_file=path, folder=folder)
    path = _declaration_file(folder, PYPROJECT)
    if path and (found := _from_pyproject(folder, path)) is not None:
        return found
    for name in ENVIRONMENT_FILES:
        path = _declaration_file(folder, name)
        if path:
            return _from_environment_yml(folder, path)
    return None
