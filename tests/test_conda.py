"""--conda-env, with real directories and processes.

Most tests use a conda-style environment laid out by hand in a temp dir, and stand-in
`conda`/`mamba`/`micromamba` executables (small shell scripts) that answer `env list --json` as the
real ones do and write down that they were asked. No real conda, mamba or micromamba executable can
be installed here (PyPI, Debian and npm have none that works offline), so the last tests use a real
conda installer instead: rattler (PyPI's py-rattler, the engine of pixi), which makes a real
environment, offline, from a channel the test builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import ECHO_APP
from jhsingle_native_proxy.conda import (
    CondaError,
    activated_environ,
    find_env,
    resolve_command,
)

SYSTEM_PATH = "/usr/bin:/bin"

ENV_PYTHON = """\
#!/bin/sh
echo "env python: MY_ENV_VAR=$MY_ENV_VAR CONDA_PREFIX=$CONDA_PREFIX args=$*"
"""

SET_VAR = """\
export MY_ENV_VAR=activated
export MY_LIBS="$CONDA_PREFIX/lib${MY_LIBS:+:$MY_LIBS}"
echo "activation scripts may talk on stdout"
"""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def make_env(prefix: Path, scripts: dict[str, str] | None = None) -> Path:
    """A conda-style environment: conda-meta/history, bin/python, etc/conda/activate.d/*.sh."""
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "history").write_text("==> 2024-01-01 00:00:00 <==\n")
    executable(prefix / "bin" / "python", ENV_PYTHON)
    activate = prefix / "etc" / "conda" / "activate.d"
    activate.mkdir(parents=True)
    for name, text in (scripts if scripts is not None else {"set_var.sh": SET_VAR}).items():
        (activate / name).write_text(text)
    return prefix


@pytest.fixture
def root(tmp_path) -> Path:
    """A base installation with one named environment, envs/myenv."""
    base = make_env(tmp_path / "miniforge", scripts={})
    (base / "condabin").mkdir()
    make_env(base / "envs" / "myenv")
    return base


def fake_tool(bindir: Path, name: str, envs: list[Path], fail: bool = False) -> Path:
    """A conda-like executable answering `env list --json`; it appends its name to bindir/asked."""
    answer = json.dumps({"envs": [str(p) for p in envs]}, indent=2)
    body = (
        'echo "cannot read its configuration" >&2\nexit 1\n'
        if fail
        else f"cat <<'EOF'\n{answer}\nEOF\n"
    )
    return executable(
        bindir / name,
        f"#!/bin/sh\n"
        f'echo "{name} $*" >> "{bindir}/asked"\n'
        f'if [ "$*" != "env list --json" ]; then echo "unexpected: $*" >&2; exit 2; fi\n' + body,
    )


def asked(bindir: Path) -> list[str]:
    log = bindir / "asked"
    return log.read_text().splitlines() if log.exists() else []


def environ_with(*dirs: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([*(str(d) for d in dirs), SYSTEM_PATH])
    return {"PATH": path, "HOME": "/nonexistent-home", **extra}


# -- find_env -------------------------------------------------------------------------------------


def test_find_by_absolute_path(root):
    env = root / "envs" / "myenv"
    assert find_env(str(env), {}) == str(env)
    assert find_env(str(env) + "/", {}) == str(env)


def test_find_by_relative_and_home_paths(root, monkeypatch):
    monkeypatch.chdir(root)
    assert find_env("./envs/myenv", {}) == str(root / "envs" / "myenv")
    assert find_env("envs/myenv", {}) == str(root / "envs" / "myenv")
    # ~ is the HOME of the environment given, not of the proxy's own.
    assert find_env("~/envs/myenv", {"HOME": str(root)}) == str(root / "envs" / "myenv")


def test_a_path_that_is_not_an_environment_is_a_clear_error(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CondaError, match=r"is not a conda environment \(it has no conda-meta"):
        find_env(str(tmp_path / "plain"), {})
    with pytest.raises(CondaError, match="is not a directory"):
        find_env(str(tmp_path / "missing"), {})


def test_find_by_name_through_conda_on_path(root, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "conda", [root, root / "envs" / "myenv"])
    assert find_env("myenv", environ_with(bindir)) == str(root / "envs" / "myenv")
    assert asked(bindir) == ["conda env list --json"]


def test_base_is_the_root_prefix(root, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "conda", [root, root / "envs" / "myenv"])
    assert find_env("base", environ_with(bindir)) == str(root)


def test_find_by_name_through_conda_exe(root, tmp_path):
    tool = fake_tool(tmp_path / "elsewhere", "conda", [root, root / "envs" / "myenv"])
    environ = environ_with(tmp_path / "empty", CONDA_EXE=str(tool))
    assert find_env("myenv", environ) == str(root / "envs" / "myenv")
    assert asked(tmp_path / "elsewhere") == ["conda env list --json"]


def test_conda_exe_is_asked_before_path(root, tmp_path):
    other = make_env(tmp_path / "other" / "envs" / "myenv")
    on_path = tmp_path / "bin"
    fake_tool(on_path, "conda", [other])
    tool = fake_tool(tmp_path / "elsewhere", "conda", [root, root / "envs" / "myenv"])
    environ = environ_with(on_path, CONDA_EXE=str(tool))
    assert find_env("myenv", environ) == str(root / "envs" / "myenv")
    assert asked(on_path) == []


def test_micromamba_is_used_when_it_is_the_only_one(root, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "micromamba", [root, root / "envs" / "myenv"])
    assert find_env("myenv", environ_with(bindir)) == str(root / "envs" / "myenv")
    assert asked(bindir) == ["micromamba env list --json"]


def test_a_failing_conda_falls_through_to_mamba(root, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "conda", [], fail=True)
    fake_tool(bindir, "mamba", [root, root / "envs" / "myenv"])
    assert find_env("myenv", environ_with(bindir)) == str(root / "envs" / "myenv")
    assert asked(bindir) == ["conda env list --json", "mamba env list --json"]


def test_no_conda_at_all_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CondaError) as e:
        find_env("myenv", {"PATH": str(tmp_path / "empty")})
    assert str(e.value) == (
        "--conda-env NAME needs conda, mamba or micromamba on PATH (or CONDA_EXE), and none was "
        "found; give the environment's path instead"
    )


def test_a_missing_environment_is_a_clear_error(root, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "conda", [root, root / "envs" / "myenv"])
    with pytest.raises(CondaError) as e:
        find_env("nope", environ_with(bindir))
    message = str(e.value)
    assert "\n" not in message
    assert "'nope' not found" in message
    assert f"asked {bindir}/conda" in message
    assert "environments known: base, myenv" in message


def test_a_conda_that_fails_is_named_in_the_error(tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "conda", [], fail=True)
    with pytest.raises(CondaError, match="exited with status 1: cannot read its configuration"):
        find_env("myenv", environ_with(bindir))


def test_envs_dir_of_mamba_root_prefix_without_any_executable(root, tmp_path):
    (tmp_path / "empty").mkdir()
    environ = {"PATH": str(tmp_path / "empty"), "MAMBA_ROOT_PREFIX": str(root)}
    assert find_env("myenv", environ) == str(root / "envs" / "myenv")


def test_only_the_given_environment_is_used(root, tmp_path, monkeypatch):
    """The proxy's own os.environ (PATH, CONDA_EXE) is never consulted."""
    decoy = tmp_path / "decoy"
    fake_tool(decoy, "conda", [])
    monkeypatch.setenv("PATH", f"{decoy}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CONDA_EXE", str(decoy / "conda"))
    bindir = tmp_path / "bin"
    fake_tool(bindir, "micromamba", [root, root / "envs" / "myenv"])
    assert find_env("myenv", environ_with(bindir)) == str(root / "envs" / "myenv")
    assert asked(decoy) == []


# -- activated_environ ----------------------------------------------------------------------------


def test_activated_environ_sets_the_conda_variables_and_runs_activate_d(root, tmp_path):
    env = root / "envs" / "myenv"
    environ = environ_with(tmp_path / "tools", MY_LIBS="/opt/lib", MULTI="two\nlines")
    before = dict(environ)
    result = activated_environ(str(env), environ)
    assert environ == before
    assert result["PATH"] == f"{env}/bin{os.pathsep}{environ['PATH']}"
    assert result["CONDA_PREFIX"] == str(env)
    assert result["CONDA_DEFAULT_ENV"] == "myenv"
    assert result["CONDA_SHLVL"] == "1"
    assert result["MY_ENV_VAR"] == "activated"
    assert result["MY_LIBS"] == f"{env}/lib:/opt/lib"
    assert result["MULTI"] == "two\nlines"
    assert result["HOME"] == environ["HOME"]
    # The shell's own bookkeeping does not leak into the app's environment.
    for own in ("_", "SHLVL", "PWD", "OLDPWD"):
        assert own not in result


def test_activation_scripts_run_in_sorted_order(tmp_path):
    env = make_env(
        tmp_path / "env",
        scripts={
            "20-second.sh": 'export ORDER="$ORDER second"\n',
            "10-first.sh": "export ORDER=first\nexport GONE=\n unset GONE\n",
            "README.txt": "export ORDER=not-a-script\n",
        },
    )
    result = activated_environ(str(env), environ_with(GONE="here"))
    assert result["ORDER"] == "first second"
    assert "GONE" not in result


def test_base_activates_as_base_and_replaces_the_active_env(root):
    old = root / "envs" / "myenv"
    environ = {
        "PATH": f"{old}/bin{os.pathsep}{SYSTEM_PATH}",
        "CONDA_PREFIX": str(old),
        "CONDA_SHLVL": "1",
    }
    result = activated_environ(str(root), environ)
    assert result["PATH"] == f"{root}/bin{os.pathsep}{SYSTEM_PATH}"
    assert result["CONDA_DEFAULT_ENV"] == "base"
    assert result["CONDA_SHLVL"] == "2"
    assert result["CONDA_PREFIX_1"] == str(old)


def test_config_vars_of_the_environment_are_set(tmp_path):
    env = make_env(tmp_path / "env", scripts={})
    state = {"env_vars": {"FROM_STATE": "yes"}}
    (env / "conda-meta" / "state").write_text(json.dumps(state))
    assert activated_environ(str(env), environ_with())["FROM_STATE"] == "yes"


def test_a_script_returning_non_zero_is_logged_and_activation_goes_on(tmp_path, caplog):
    """As with `conda activate`: a script ending on a harmless failed test does not stop it."""
    scripts = {
        "a.sh": 'export BEFORE=1\n[ -n "$UNSET_VAR" ] && export NEVER=1\n',
        "b.sh": "export AFTER=1\n",
    }
    env = make_env(tmp_path / "env", scripts=scripts)
    with caplog.at_level("WARNING", logger="jhsingle_native_proxy"):
        result = activated_environ(str(env), environ_with())
    assert result["BEFORE"] == "1" and result["AFTER"] == "1" and "NEVER" not in result
    assert "a.sh returned status 1" in caplog.text


@pytest.mark.parametrize("script, says", [("exit 3\n", r"ended the shell \(status 3\)")])
def test_a_failing_activation_script_is_a_clear_error(tmp_path, script, says):
    scripts = {"a-ok.sh": "echo earlier script talking\n", "broken.sh": script}
    env = make_env(tmp_path / "env", scripts=scripts)
    with pytest.raises(CondaError, match=says) as e:
        activated_environ(str(env), environ_with())
    assert str(env / "etc" / "conda" / "activate.d" / "broken.sh") in str(e.value)
    assert "earlier script" not in str(e.value)
    assert "\n" not in str(e.value)


def test_a_background_process_started_by_a_script_does_not_hold_activation_up(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    script = f'sleep 60 &\necho $! > "{pidfile}"\nexport DAEMON=started\n'
    env = make_env(tmp_path / "env", scripts={"daemon.sh": script})
    started = time.monotonic()
    try:
        result = activated_environ(str(env), environ_with())
        assert result["DAEMON"] == "started"
        assert time.monotonic() - started < 5
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


# -- resolve_command and the whole way --------------------------------------------------------


def test_resolve_command_prefers_the_envs_python(root, tmp_path):
    env = root / "envs" / "myenv"
    other = executable(tmp_path / "system" / "python", "#!/bin/sh\necho wrong python\n")
    environ = environ_with(other.parent)
    assert resolve_command(["python", "-V"], environ) == [str(other), "-V"]
    activated = activated_environ(str(env), environ)
    assert resolve_command(["python", "-V"], activated) == [str(env / "bin" / "python"), "-V"]
    # Explicit paths and unknown programs are left alone.
    assert resolve_command(["/bin/echo", "x"], activated) == ["/bin/echo", "x"]
    assert resolve_command(["no-such-program"], activated) == ["no-such-program"]
    assert resolve_command([], activated) == []


def test_resolve_command_keeps_a_symlinked_python_in_the_env(tmp_path):
    env = make_env(tmp_path / "env", scripts={})
    (env / "bin" / "python").unlink()
    (env / "bin" / "python").symlink_to(sys.executable)
    activated = activated_environ(str(env), environ_with())
    argv = resolve_command(["python", "-c", "import sys; print(sys.prefix)"], activated)
    assert argv[0] == str(env / "bin" / "python")


def test_found_activated_and_resolved_python_is_the_envs_own(root, tmp_path):
    """The three steps together, with the stand-in conda and the hand-made environment: `python`
    runs the environment's bin/python (not the one later on PATH), with the activated variables.
    An environment made by a real installer, and the real CLI, are the tests below."""
    bindir = tmp_path / "bin"
    fake_tool(bindir, "conda", [root, root / "envs" / "myenv"])
    executable(tmp_path / "system" / "python", "#!/bin/sh\necho wrong python\n")
    environ = environ_with(bindir, tmp_path / "system")

    prefix = find_env("myenv", environ)
    activated = activated_environ(prefix, environ)
    argv = resolve_command(["python", "app.py"], activated)
    result = subprocess.run(
        argv, env=activated, capture_output=True, text=True, timeout=10, check=True
    )
    assert result.stdout.strip() == (
        f"env python: MY_ENV_VAR=activated CONDA_PREFIX={prefix} args=app.py"
    )


# -- a real environment, made by a real conda installer -------------------------------------------

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # conda-build's prefix placeholder


def conda_package(channel: Path, name: str, files: dict[str, tuple[str, int]]) -> None:
    """A noarch conda package laid out as conda-build makes one: the files, info/index.json, and
    info/paths.json naming the files that hold the prefix placeholder, for the installer to
    rewrite to the environment's prefix."""
    index = {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "depends": [],
        "noarch": "generic",
        "subdir": "noarch",
        "license": "BSD-3-Clause",
        "timestamp": int(time.time() * 1000),
    }
    paths = []
    for rel, (text, _mode) in files.items():
        data = text.encode()
        entry = {
            "_path": rel,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        if PLACEHOLDER in text:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
        paths.append(entry)
    info = {
        "info/index.json": json.dumps(index),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{rel}\n" for rel in files),
    }
    members = [*files.items(), *((rel, (text, 0o644)) for rel, text in info.items())]
    (channel / "noarch").mkdir(parents=True)
    with tarfile.open(channel / "noarch" / f"{name}-1.0-0.tar.bz2", "w:bz2") as tar:
        for rel, (text, mode) in members:
            data = text.encode()
            member = tarfile.TarInfo(rel)
            member.size, member.mode = len(data), mode
            tar.addfile(member, io.BytesIO(data))


@pytest.fixture(scope="module")
def real_env(tmp_path_factory) -> Path:
    """envs/probe, made by rattler from a channel of one package of ours. The package ships what
    real packages ship: an activate.d script, and a bin/python (here a wrapper that runs this
    interpreter, which has the echo app's tornado), both with the prefix placeholder."""
    try:
        import rattler
    except ImportError:
        pytest.fail("py-rattler is a test dependency: pip install py-rattler")
    base = tmp_path_factory.mktemp("real-conda")
    channel, prefix = base / "channel", base / "envs" / "probe"
    conda_package(
        channel,
        "jhsnp-probe",
        {
            "bin/python": (
                f"#!/bin/sh\nexport JHSNP_PROBE_PYTHON={PLACEHOLDER}/bin/python\n"
                f'exec {sys.executable} "$@"\n',
                0o755,
            ),
            "etc/conda/activate.d/jhsnp-probe.sh": (
                f'export JHSNP_PROBE_DATA="{PLACEHOLDER}/share/jhsnp-probe"\n',
                0o644,
            ),
            "share/jhsnp-probe/README": ("data of the probe package\n", 0o644),
        },
    )

    async def make() -> None:
        await rattler.index.index_fs(channel)
        records = await rattler.solve(
            [rattler.Channel(channel.as_uri())],
            ["jhsnp-probe"],
            platforms=["noarch"],
            virtual_packages=[],
        )
        await rattler.install(
            records, target_prefix=prefix, cache_dir=base / "pkgs", show_progress=False
        )

    asyncio.run(make())
    return prefix


def test_a_real_environment_is_found_by_name_and_activated(real_env):
    # What the installer made: conda's records, and the placeholder rewritten to the prefix.
    assert (real_env / "conda-meta" / "history").is_file()
    assert (real_env / "conda-meta" / "jhsnp-probe-1.0-0.json").is_file()
    assert PLACEHOLDER not in (real_env / "bin" / "python").read_text()
    environ = environ_with(CONDA_ENVS_DIRS=str(real_env.parent))
    prefix = find_env("probe", environ)
    assert prefix == str(real_env)
    activated = activated_environ(prefix, environ)
    assert activated["CONDA_PREFIX"] == prefix
    assert activated["CONDA_DEFAULT_ENV"] == "probe"
    assert activated["PATH"].split(os.pathsep)[0] == f"{prefix}/bin"
    assert activated["JHSNP_PROBE_DATA"] == f"{prefix}/share/jhsnp-probe"
    assert resolve_command(["python", "app.py"], activated) == [f"{prefix}/bin/python", "app.py"]


def test_the_app_really_runs_inside_a_real_environment(real_env, start_proxy):
    """The real CLI with `--conda-env probe`: the app's `python` is the environment's, and it
    runs with the environment activated."""
    names = ("CONDA_PREFIX", "JHSNP_PROBE_DATA", "JHSNP_PROBE_PYTHON")
    app = ["python", ECHO_APP, "{port}", *(a for n in names for a in ("--say-env", n))]
    proxy = start_proxy(
        ["--conda-env", "probe"], app=app, env={"CONDA_ENVS_DIRS": str(real_env.parent)}
    )
    assert proxy.get("echo").status == 200
    # The app prints them in order, before it listens: once the last is logged, all are.
    proxy.wait_log(f"echo app env {names[-1]}=")
    said = dict(
        line.split("echo app env ", 1)[1].split("=", 1)
        for line in proxy.log().splitlines()
        if "echo app env " in line
    )
    assert said == {
        "CONDA_PREFIX": str(real_env),
        "JHSNP_PROBE_DATA": f"{real_env}/share/jhsnp-probe",
        "JHSNP_PROBE_PYTHON": f"{real_env}/bin/python",
    }
    assert f"The app runs in the conda environment {real_env}" in proxy.log()
