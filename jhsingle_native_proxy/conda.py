"""Run the app inside a conda environment (`--conda-env NAME_OR_PATH`) without a shell's conda init.

A server started by JupyterHub has no interactive shell that ran `conda init`, so `conda activate`
is not available. Instead:

- `find_env` turns a name into a prefix by asking the conda-like executables the admin has
  (conda, mamba, micromamba), the same tools that would answer `conda activate NAME`;
- `activated_environ` builds the environment `conda activate` would leave: the prefix's `bin`
  first on PATH, the CONDA_* variables, the env's own variables (`conda env config vars`), and the
  effect of its `etc/conda/activate.d/*.sh` scripts, which packages such as compilers, GDAL or
  Java rely on;
- `resolve_command` looks the app's command up on the activated PATH, because the proxy execs the
  app with the proxy's own PATH lookup otherwise, and `python` must mean the env's python.

Nothing here reads `os.environ`: the caller passes the environment the app should start from.
Every problem is a `CondaError` whose text is one line for the admin.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

log = logging.getLogger("jhsingle_native_proxy")

# Seconds allowed for `conda env list` (conda itself can be slow to start) and for the scripts.
TIMEOUT = 30.0
# Looked for on PATH, in this order, after $CONDA_EXE and $MAMBA_EXE.
EXECUTABLES = ("conda", "mamba", "micromamba")
BASE_NAMES = ("base", "root")  # "root" is what conda called the base environment before 4.4
# Variables the activation shell sets for itself; they must not leak into the app's environment.
SHELL_OWN = ("_", "SHLVL", "PWD", "OLDPWD")
# Variables that make a non-interactive shell read a file first; the scripts run without them.
SHELL_STARTUP = ("BASH_ENV", "ENV")


class CondaError(Exception):
    """The environment cannot be found or used; str(e) is one clear line for the admin."""


def _one_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a tool's output, short enough for a log line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _search_path(environ: Mapping[str, str]) -> str:
    # Without PATH, exec uses the system default; shutil.which(path=None) would read os.environ.
    return environ.get("PATH") or os.defpath


def _expand_user(path: str, environ: Mapping[str, str]) -> str:
    """os.path.expanduser, but with HOME taken from `environ` rather than os.environ."""
    if not path.startswith("~"):
        return path
    head, sep, rest = path[1:].partition("/")
    try:
        if head:
            home = pwd.getpwnam(head).pw_dir
        else:
            home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return path
    return home.rstrip("/") + sep + rest if rest or sep else home


def _is_env(prefix: str) -> bool:
    return os.path.isdir(os.path.join(prefix, "conda-meta"))


def _run(argv: Sequence[str], env: Mapping[str, str], what: str) -> tuple[int, bytes, bytes]:
    """Run a helper process to its end; its exit status, stdout and stderr.

    Output goes to temporary files, not pipes, so a background process left behind (an activation
    script may start one) cannot keep us waiting for an end-of-file. On timeout the helper's whole
    process group is killed.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as e:
            raise CondaError(f"{what}: cannot run {argv[0]}: {e.strerror or e}") from None
        try:
            code = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise CondaError(f"{what}: did not finish within {TIMEOUT:g} seconds") from None
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()


# -- finding the environment ----------------------------------------------------------------------


def conda_executables(environ: Mapping[str, str]) -> list[str]:
    """The conda-like executables to ask, in order, each once."""
    search = _search_path(environ)
    found: list[str] = []
    for var in ("CONDA_EXE", "MAMBA_EXE"):
        value = environ.get(var, "")
        if not value:
            continue
        exe = value if "/" in value else shutil.which(value, path=search)
        if exe and os.path.isfile(exe) and os.access(exe, os.X_OK):
            found.append(os.path.abspath(exe))
        else:
            log.warning("Ignoring %s=%s: not an executable file", var, value)
    for name in EXECUTABLES:
        exe = shutil.which(name, path=search)
        if exe:
            found.append(os.path.abspath(exe))
    unique: dict[str, str] = {}
    for exe in found:
        unique.setdefault(os.path.realpath(exe), exe)
    return list(unique.values())


def _known_roots(environ: Mapping[str, str], exe: str = "") -> list[str]:
    """Root prefixes (base environments) that the environment variables point at."""
    roots = [environ.get("CONDA_ROOT", ""), environ.get("MAMBA_ROOT_PREFIX", "")]
    for tool in (exe, environ.get("CONDA_EXE", "")):
        if tool and os.path.isabs(tool):
            # <root>/bin/conda or <root>/condabin/conda
            roots.append(os.path.dirname(os.path.dirname(tool)))
    prefix = environ.get("CONDA_PREFIX", "")
    if prefix:
        parent = os.path.dirname(os.path.normpath(prefix))
        if os.path.basename(parent) == "envs":
            roots.append(os.path.dirname(parent))
        elif os.path.isdir(os.path.join(prefix, "condabin")):
            roots.append(prefix)  # an active base; an env activated by path is not a root
    return list(dict.fromkeys(os.path.normpath(r) for r in roots if r and _is_env(r)))


def _list_envs(exe: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Ask `exe env list --json`: the root prefix (or '') and every environment's prefix."""
    what = f"{exe} env list --json"
    code, out, err = _run([exe, "env", "list", "--json"], environ, what)
    if code != 0:
        reason = _one_line(os.fsdecode(err)) or _one_line(os.fsdecode(out))
        raise CondaError(f"{what} exited with status {code}: {reason}")
    text = os.fsdecode(out)
    try:
        # A conda that prints a warning first still ends with the JSON object.
        data = json.loads(text[text.find("{") :] if "{" in text else text)
        envs = [os.path.normpath(p) for p in data.get("envs", []) if isinstance(p, str) and p]
    except (ValueError, AttributeError, TypeError):
        raise CondaError(f"{what} did not print the expected JSON") from None

    # conda lists the root prefix first; say so where conda says so explicitly.
    root = data.get("root_prefix") or ""
    details = data.get("envs_details")
    if not root and isinstance(details, dict):
        root = next((p for p, d in details.items() if isinstance(d, dict) and d.get("base")), "")
    if not root:
        root = next((r for r in _known_roots(environ, exe) if r in envs), "")
    if not root and envs:
        root = envs[0]
    return (os.path.normpath(root) if root else ""), envs


def _pick(name: str, root: str, envs: list[str]) -> str:
    """The environment called `name`: preferably one in an envs directory, as conda does."""
    if name in BASE_NAMES:
        return root if root and os.path.isdir(root) else ""
    matches = [p for p in envs if p != root and os.path.basename(p) == name and os.path.isdir(p)]
    matches.sort(key=lambda p: os.path.basename(os.path.dirname(p)) != "envs")  # stable
    return matches[0] if matches else ""


def _envs_dirs(environ: Mapping[str, str], roots: list[str]) -> list[str]:
    """Directories holding environments by name, as conda's envs_dirs would list them."""
    dirs: list[str] = []
    for var in ("CONDA_ENVS_DIRS", "CONDA_ENVS_PATH"):
        dirs += [d for d in environ.get(var, "").split(os.pathsep) if d]
    dirs += [os.path.join(root, "envs") for root in roots]
    home = environ.get("HOME")
    if home:
        dirs.append(os.path.join(home, ".conda", "envs"))
    unique = dict.fromkeys(os.path.normpath(_expand_user(d, environ)) for d in dirs)
    return [d for d in unique if os.path.isdir(d)]


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.startswith(("~", "."))


def find_env(name_or_path: str, environ: Mapping[str, str]) -> str:
    """The absolute prefix of the environment `--conda-env` names.

    A path (it contains a slash, or starts with ~ or .) must be a directory holding `conda-meta/`.
    A name is looked up by asking `env list --json` of $CONDA_EXE, $MAMBA_EXE, then conda, mamba
    and micromamba on PATH, in that order: the env whose last path component is the name, or the
    root prefix for "base". If none of them knows it, the envs directories of the roots that the
    variables point at (CONDA_ROOT, MAMBA_ROOT_PREFIX, CONDA_PREFIX, CONDA_ENVS_DIRS) are looked
    in too.
    """
    value = name_or_path.strip()
    if not value:
        raise CondaError("--conda-env is empty: give an environment's name or path")
    if _looks_like_path(value):
        prefix = os.path.abspath(_expand_user(value, environ))
        if not os.path.isdir(prefix):
            raise CondaError(f"--conda-env {value}: {prefix} is not a directory")
        if not _is_env(prefix):
            raise CondaError(
                f"--conda-env {value}: {prefix} is not a conda environment "
                "(it has no conda-meta directory)"
            )
        return prefix

    exes = conda_executables(environ)
    asked: list[str] = []
    names: set[str] = set()
    roots = _known_roots(environ)
    for exe in exes:
        try:
            root, envs = _list_envs(exe, environ)
        except CondaError as e:
            log.warning("Could not list conda environments: %s", e)
            asked.append(f"{exe} (failed: {e})")
            continue
        prefix = _pick(value, root, envs)
        if prefix:
            log.info("Conda environment %r is %s (according to %s)", value, prefix, exe)
            return prefix
        asked.append(exe)
        names.update(os.path.basename(p) for p in envs if p != root)
        if root:
            names.add("base")
            roots.append(root)

    dirs = _envs_dirs(environ, list(dict.fromkeys(roots)))
    if value in BASE_NAMES and roots:
        log.info("Conda environment %r is %s", value, roots[0])
        return roots[0]
    for envs_dir in dirs:
        prefix = os.path.join(envs_dir, value)
        if _is_env(prefix):
            log.info("Conda environment %r is %s (found in %s)", value, prefix, envs_dir)
            return prefix

    if not exes:
        raise CondaError(
            "--conda-env NAME needs conda, mamba or micromamba on PATH (or CONDA_EXE), "
            "and none was found; give the environment's path instead"
        )
    where = "asked " + ", ".join(asked)
    if dirs:
        where += "; looked in " + ", ".join(dirs)
    known = ", ".join(sorted(names)) or "none"
    raise CondaError(
        f"conda environment {value!r} not found ({where}; environments known: {known})"
    )


# -- activating it --------------------------------------------------------------------------------


def _env_name(prefix: str, environ: Mapping[str, str]) -> str:
    """What `conda activate` calls the environment in CONDA_DEFAULT_ENV: 'base' for a root."""
    if os.path.isdir(os.path.join(prefix, "condabin")) or prefix in _known_roots(environ):
        return "base"
    return os.path.basename(prefix)


def _config_vars(prefix: str) -> dict[str, str]:
    """Variables set with `conda env config vars set`, kept in conda-meta/state."""
    try:
        with open(os.path.join(prefix, "conda-meta", "state"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    env_vars = state.get("env_vars") if isinstance(state, dict) else None
    if not isinstance(env_vars, dict):
        return {}
    return {str(k): str(v) for k, v in env_vars.items()}


def _activation_shell(environ: Mapping[str, str]) -> str:
    """bash if there is one (activation scripts are written for the user's shell, often bash)."""
    for candidate in (shutil.which("bash", path=_search_path(environ)), "/bin/bash"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return "/bin/sh"


def _run_scripts(scripts: list[str], env: dict[str, str]) -> dict[str, str]:
    """Source each script in one shell and return the environment it leaves behind.

    The scripts' own stdout goes to stderr, so stdout carries only NUL-separated records of ours:
    `run N` before script N, `failed STATUS N` if it returned non-zero, then `env` and the
    variables (`env -0`). A script that returns non-zero is logged and activation goes on, as
    `conda activate` does (many scripts end on a test that fails harmlessly); a script that ends
    the shell is an error, and is the last one that ran. A NUL on stderr before each script lets
    a message quote what that script said, not what an earlier one did.
    """
    lines = []
    for i, script in enumerate(scripts):
        lines.append(f"printf 'run\\000%s\\000' {i}")
        lines.append("printf '\\000' >&2")  # so the error shows this script's stderr only
        lines.append(
            f". {shlex.quote(script)} >&2 || printf 'failed\\000%s\\000%s\\000' \"$?\" {i}"
        )
    lines.append("printf 'env\\000'")
    # By path: the app's PATH (the environment's, after activation) need not hold coreutils.
    env_program = shutil.which("env") or "/usr/bin/env"
    lines.append(f"exec {shlex.quote(env_program)} -0")
    shell = _activation_shell(env)
    run_env = {k: v for k, v in env.items() if k not in SHELL_STARTUP}
    code, out, err = _run(
        [shell, "-c", "\n".join(lines)], run_env, f"running the activation scripts with {shell}"
    )

    records = out.split(b"\0")
    last_run = None
    i = 0
    while i < len(records):
        record = records[i]
        if record == b"run" and i + 1 < len(records):
            last_run = int(records[i + 1])
            i += 2
        elif record == b"failed" and i + 2 < len(records):
            status, index = records[i + 1].decode(), int(records[i + 2])
            log.warning(
                "The activation script %s returned status %s; going on, as conda does",
                scripts[index],
                status,
            )
            i += 3
        elif record == b"env" and code == 0:
            result: dict[str, str] = {}
            for entry in records[i + 1 :]:
                key, sep, val = os.fsdecode(entry).partition("=")
                if sep and key:
                    result[key] = val
            break
        else:
            i += 1
    else:
        culprit = (
            f"the activation script {scripts[last_run]}"
            if last_run is not None
            else f"the activation shell {shell}"
        )
        reason = _one_line(os.fsdecode(err.rsplit(b"\0", 1)[-1]))
        raise CondaError(
            f"{culprit} ended the shell (status {code})" + (f": {reason}" if reason else "")
        )

    for key in (*SHELL_OWN, *SHELL_STARTUP):
        if key in env:
            result[key] = env[key]
        else:
            result.pop(key, None)
    return result


def activated_environ(prefix: str, environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of `environ` as `conda activate PREFIX` would leave it, for the app to start with.

    PATH gets `PREFIX/bin` first (and loses the previously active env's `bin`); CONDA_PREFIX,
    CONDA_DEFAULT_ENV (the env's name, "base" for a root), CONDA_SHLVL and CONDA_PROMPT_MODIFIER
    are set, and CONDA_PREFIX_N keeps the previous env as conda does. Then the env's config vars
    and its `etc/conda/activate.d/*.sh` scripts are applied: sourced in sorted order in one
    bash (or /bin/sh), whose resulting variables are taken. A script that returns non-zero is
    logged and activation goes on, as `conda activate` does; one that ends the shell (`exit`),
    or a shell that cannot run or times out, is a CondaError. The previous env's deactivate.d
    scripts are not run. `environ` is not modified.
    """
    prefix = os.path.abspath(prefix)
    env = dict(environ)
    bin_dir = os.path.join(prefix, "bin")

    old_prefix = os.path.normpath(environ["CONDA_PREFIX"]) if environ.get("CONDA_PREFIX") else ""
    try:
        shlvl = max(int(environ.get("CONDA_SHLVL") or 0), 0)
    except ValueError:
        shlvl = 0
    drop = {bin_dir}
    if old_prefix and old_prefix != prefix:
        drop.add(os.path.join(old_prefix, "bin"))
        if shlvl > 0:
            env[f"CONDA_PREFIX_{shlvl}"] = old_prefix
    path = environ.get("PATH", os.defpath)
    entries = [p for p in path.split(os.pathsep) if p and os.path.normpath(p) not in drop]
    env["PATH"] = os.pathsep.join([bin_dir, *entries])

    name = _env_name(prefix, environ)
    env["CONDA_PREFIX"] = prefix
    env["CONDA_DEFAULT_ENV"] = name
    env["CONDA_SHLVL"] = str(shlvl if old_prefix == prefix and shlvl > 0 else shlvl + 1)
    env["CONDA_PROMPT_MODIFIER"] = f"({name}) "
    env.update(_config_vars(prefix))

    pattern = os.path.join(glob.escape(prefix), "etc", "conda", "activate.d", "*.sh")
    scripts = sorted(glob.glob(pattern))
    if scripts:
        log.debug("Running the activation scripts of %s: %s", prefix, " ".join(scripts))
        env = _run_scripts(scripts, env)
    return env


def resolve_command(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """`argv` with its program looked up on `environ`'s PATH (the activated one).

    The proxy runs from its own Python, and the app is exec'd with the proxy's lookup, so
    `python` would otherwise mean whatever comes first on the proxy's PATH. A program given with
    a slash, or not found, is left as it is (the start then fails with 'command not found').
    """
    if not argv or "/" in argv[0]:
        return list(argv)
    found = shutil.which(argv[0], path=_search_path(environ))
    return [found, *argv[1:]] if found else list(argv)
