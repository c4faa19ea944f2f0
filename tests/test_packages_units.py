"""The pure parts of installing the repository's packages: reading what is declared, judging
whether the app's Python has it, the cache key, the scrubbing, eviction, the command's rewrite.
The real installs are in test_packages.py."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

import pytest

from jhsingle_native_proxy import env_cache
from jhsingle_native_proxy.app_packages import command_in_env, environ_with_env
from jhsingle_native_proxy.declared_requirements import (
    DeclarationError,
    read_declared,
    requirement_lines,
)
from jhsingle_native_proxy.env_build import layer_lines, scrubber
from jhsingle_native_proxy.requirements_met import (
    PythonInfo,
    app_python,
    probe_python,
    unmet,
)


def test_requirement_lines_as_pip_reads_them():
    text = "# a comment\nInflection==0.5.1  # pinned\n\nfoo[bar] >= 1 ; \\\n python_version > '3'\n"
    text += "url#frag @ https://x/y.whl\n-r other.txt\n"
    assert requirement_lines(text) == [
        "Inflection==0.5.1",
        "foo[bar] >= 1 ; python_version > '3'",
        "url#frag @ https://x/y.whl",
        "-r other.txt",
    ]


def test_the_first_source_found_is_used_in_order(tmp_path):
    (tmp_path / "environment.yml").write_text(
        "dependencies:\n  - python=3.11\n  - numpy\n  - pip:\n    - termcolor\n"
    )
    found = read_declared(str(tmp_path))
    assert (found.source, found.lines, found.conda_packages) == (
        "environment.yml",
        ("termcolor",),
        ("numpy",),
    )
    # A pyproject.toml for tools only declares nothing: environment.yml still wins.
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert read_declared(str(tmp_path)).source == "environment.yml"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["tabulate"]\n')
    found = read_declared(str(tmp_path))
    assert (found.source, found.lines) == ("pyproject.toml", ("tabulate",))
    (tmp_path / "requirements.txt").write_text("inflection\n")
    found = read_declared(str(tmp_path))
    assert (found.source, found.lines) == ("requirements.txt", ("inflection",))
    assert found.requirements_file == str(tmp_path / "requirements.txt")
    found = read_declared(str(tmp_path), manifest=("xmltodict",), pin="streamlit==1.40.0")
    assert (found.source, found.lines) == ("jhsnp.toml", ("xmltodict", "streamlit==1.40.0"))
    # With a pin, requirements.txt's lines are written out with it (no -r of the file).
    found = read_declared(str(tmp_path), pin="streamlit==1.40.0")
    assert found.lines == ("inflection", "streamlit==1.40.0") and not found.requirements_file


def test_nothing_declared_and_a_pin_alone(tmp_path):
    assert read_declared(str(tmp_path)) is None
    assert read_declared(str(tmp_path), pin="gradio==4.44.0").lines == ("gradio==4.44.0",)


def test_the_project_itself_only_when_it_says_so(tmp_path):
    project = '[project]\nname = "x"\ndependencies = ["tabulate"]\n'
    (tmp_path / "pyproject.toml").write_text(project)
    assert read_declared(str(tmp_path)).lines == ("tabulate",)
    (tmp_path / "pyproject.toml").write_text(project + "[tool.jhsnp]\ninstall-project = true\n")
    assert read_declared(str(tmp_path)).lines == ("tabulate", f"-e {tmp_path}")


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("pyproject.toml", "[project\n", "not valid TOML"),
        ("pyproject.toml", "[project]\ndependencies = 3\n", "list of strings"),
        ("environment.yml", "dependencies: [a, {b: 1}]\n", "neither a package"),
        ("environment.yml", "a: [\n", "not valid YAML"),
    ],
)
def test_a_broken_declaration_is_one_line_for_the_owner(tmp_path, name, text, says):
    (tmp_path / name).write_text(text)
    with pytest.raises(DeclarationError, match=says) as caught:
        read_declared(str(tmp_path))
    assert "\n" not in str(caught.value)


def test_the_cache_key_follows_what_was_declared_and_the_python(tmp_path):
    (tmp_path / "requirements.txt").write_text("inflection\n")
    one = read_declared(str(tmp_path)).digest("py 3.11.7")
    assert one == read_declared(str(tmp_path)).digest("py 3.11.7")
    assert one != read_declared(str(tmp_path)).digest("py 3.12.1")
    (tmp_path / "requirements.txt").write_text("inflection\n# a comment only\n")
    assert one == read_declared(str(tmp_path)).digest("py 3.11.7")
    (tmp_path / "requirements.txt").write_text("inflection\ntermcolor\n")
    assert one != read_declared(str(tmp_path)).digest("py 3.11.7")


def _dist(site: Path, name: str, version: str, requires: list[str] = ()) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(meta)


def _info(path: list[str]) -> PythonInfo:
    markers = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    return PythonInfo(sys.executable, sys.prefix, "3.11", tuple(path), markers)


def test_met_is_judged_on_the_apps_path_first_found_winning(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "Alpha", "1.0")
    _dist(second, "alpha", "2.0")
    _dist(second, "beta", "1.5", ["gamma>=2; extra == 'fast'"])
    _dist(second, "gamma", "1.0")
    info = _info([str(first), str(second)])
    lines = [
        "alpha>=1",  # met (1.0 comes first)
        "ALPHA>=2",  # unmet: the first alpha on the path is 1.0
        "beta",  # met
        "beta[fast]",  # unmet: the extra needs gamma>=2
        "delta; sys_platform == 'win32'",  # not for this Python: met
        "delta",  # not installed
        "-r other.txt",  # cannot be judged
        "alpha @ https://example.org/alpha-1.0.whl",  # a URL: cannot be judged
        "./local",
        "not a requirement !!",
    ]
    assert unmet(lines, info) == [
        "ALPHA>=2",
        "beta[fast]",
        "delta",
        "-r other.txt",
        "alpha @ https://example.org/alpha-1.0.whl",
        "./local",
        "not a requirement !!",
    ]


def test_the_probe_tells_our_own_python_and_its_packages():
    info = probe_python(sys.executable, {"PATH": os.environ.get("PATH", "")})
    assert info.markers["python_version"] == "{}.{}".format(*sys.version_info[:2])
    assert unmet(["tornado>=6", "packaging"], info) == []
    assert unmet(["jhsnp-no-such-package-zz9"], info) == ["jhsnp-no-such-package-zz9"]
    assert info.site_packages and all(p in layer_lines(info) for p in info.site_packages)


def test_the_apps_python_is_the_commands_or_the_paths(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tool"
    script.write_text(f"#!{sys.executable}\nprint(1)\n")
    script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    assert app_python([sys.executable, "app.py"], env) == sys.executable
    assert app_python(["tool", "run"], env) == sys.executable
    (bin_dir / "python3").symlink_to(sys.executable)
    assert app_python(["sh", "-c", "x"], env) == str(bin_dir / "python3")


def test_the_command_runs_with_the_environments_python(tmp_path):
    env_dir = tmp_path / "env"
    (env_dir / "bin").mkdir(parents=True)
    python = str(env_dir / "bin" / "python")
    outside = tmp_path / "image-bin"
    outside.mkdir()
    script = outside / "streamlit"
    script.write_text(f"#!{sys.executable}\n")
    script.chmod(0o755)
    shell_tool = outside / "tool"
    shell_tool.write_text("#!/bin/sh\n")
    shell_tool.chmod(0o755)
    own = env_dir / "bin" / "inflect"
    own.write_text(f"#!{python}\n")
    own.chmod(0o755)
    environ = environ_with_env(str(env_dir), {"PATH": f"{outside}:/usr/bin", "PYTHONHOME": "/x"})
    assert environ["PATH"].split(":")[:2] == [str(env_dir / "bin"), str(outside)]
    assert environ["VIRTUAL_ENV"] == str(env_dir) and "PYTHONHOME" not in environ
    assert command_in_env([sys.executable, "-m", "x"], environ, python) == [python, "-m", "x"]
    assert command_in_env(["python3", "a.py"], environ, python) == [python, "a.py"]
    assert command_in_env(["streamlit", "run"], environ, python) == [python, str(script), "run"]
    assert command_in_env(["tool", "a"], environ, python) == ["tool", "a"]
    assert command_in_env(["inflect"], environ, python) == ["inflect"]


def test_credentials_never_leave_the_installer_lines():
    lines = [
        "--index-url https://alice:s3cretTOKEN@pypi.example.org/simple",
        "private @ git+https://ghp_abcdefTOKEN@github.example.org/o/r.git",
    ]
    scrub = scrubber(lines)
    said = (
        "Looking in indexes: https://alice:s3cretTOKEN@pypi.example.org/simple\n"
        "fatal: could not read from git+https://ghp_abcdefTOKEN@github.example.org/o/r.git\n"
        "token s3cretTOKEN and ghp_abcdefTOKEN alone"
    )
    shown = scrub(said)
    assert "s3cretTOKEN" not in shown and "ghp_abcdefTOKEN" not in shown
    assert "https://***@pypi.example.org/simple" in shown


def test_eviction_keeps_the_last_used_and_never_the_one_in_use():
    found = [(5.0, "e"), (4.0, "d"), (3.0, "c"), (2.0, "b"), (1.0, "a")]
    assert env_cache.to_evict(found, 3, "d") == ["b", "a"]
    assert env_cache.to_evict(found, 3, "a") == ["c", "b"]
    assert env_cache.to_evict(found, 3, "x") == ["b", "a"]


def test_eviction_on_disk_spares_an_environment_someone_uses(tmp_path):
    cache = str(tmp_path)
    now = time.time()
    for age, key in enumerate(["new", "mid", "old", "older", "oldest"]):
        folder = env_cache.env_folder(cache, key)
        os.makedirs(folder)
        env_cache.mark_complete(folder, {})
        os.utime(os.path.join(folder, env_cache.MARKER), (now - age, now - age))
    os.makedirs(os.path.join(cache, "half-built"))  # no marker: not an environment
    in_use = os.open(os.path.join(cache, "oldest.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(in_use, fcntl.LOCK_SH)  # another proxy's app runs with it
    try:
        assert env_cache.evict(cache, "new", keep=3) == ["older"]
    finally:
        os.close(in_use)
    assert sorted(os.listdir(cache)) == sorted(
        ["new", "mid", "old", "oldest", "half-built", "older.lock", "oldest.lock"]
    )
    env_cache.remove_incomplete(os.path.join(cache, "half-built"))
    assert not os.path.exists(os.path.join(cache, "half-built"))
