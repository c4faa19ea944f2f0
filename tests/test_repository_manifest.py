"""What a repository says about its app (jhsnp.toml, a Space's front matter, streamlit_app.py):
parsing, validation and precedence under the command line. Pure: folders on disk, no processes.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from jhsingle_native_proxy.cli import parse_args
from jhsingle_native_proxy.repository_app import (
    NOTHING_SAID,
    RepositoryAppError,
    describe_sources,
    resolve,
)
from jhsingle_native_proxy.repository_manifest import (
    DOCKER_REFUSED,
    ManifestError,
    front_matter,
    parse_manifest,
    read_description,
)
from jhsingle_native_proxy.settings import SettingsError

SPACE_README = """---
title: Demo
emoji: 🚀
sdk: {sdk}
{extra}---

# Demo
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def environ() -> dict[str, str]:
    return {"JUPYTERHUB_SERVICE_PREFIX": "/user/test/", "PATH": os.environ["PATH"]}


def resolved(folder: Path, *args: str):
    """The settings `--repo URL ARGS` start with, resolved against the checkout `folder`."""
    argv = ["--authtype", "none", "--repo", "https://example.org/r.git"]
    argv += ["--repofolder", str(folder), *args]
    return resolve(parse_args(argv, environ()))


# -- jhsnp.toml -----------------------------------------------------------------------------


def test_every_key_of_the_manifest_is_read(tmp_path):
    found = parse_manifest(
        textwrap.dedent("""
            command = "python3 -m http.server {port}"
            presentation_path = "site"
            requirements = ["iniconfig>=2"]
            ready_check_path = "health"
            ready_timeout = 30
            absolute_url = true
            rewrite_urls = true
            [env]
            GREETING = "hi {base_url}"
            [mappath]
            "/" = "/index.html"
        """),
        str(tmp_path),
    )
    assert found.command == ("python3", "-m", "http.server", "{port}")
    assert found.presentation_path == "site"
    assert found.requirements == ("iniconfig>=2",)
    assert found.values == {"ready_check_path": "/health", "ready_timeout": 30.0,
                            "absolute_url": True, "rewrite_urls": True}  # fmt: skip
    assert found.env == {"GREETING": "hi {base_url}"}
    assert found.mappath == {"/": "/index.html"}


@pytest.mark.parametrize(
    "line, named, why",
    [
        ('authtype = "none"', "'authtype'", "who may enter"),
        ('allow_hosts = ["*"]', "'allow_hosts'", "who may enter"),
        ('allow-host = "evil.example"', "'allow-host'", "who may enter"),
        ('frame_ancestors = "*"', "'frame_ancestors'", "who may enter"),
        ("hide_hub_token = false", "'hide_hub_token'", "who may enter"),
        ('jupyterhub_api_token = "x"', "'jupyterhub_api_token'", "who may enter"),
        ("port = 80", "'port'", "where the server listens"),
        ('ip = "0.0.0.0"', "'ip'", "where the server listens"),
        ('prefix = "/"', "'prefix'", "where the server listens"),
        ('repo = "https://evil.example/x.git"', "'repo'", "which code runs"),
        ('comand = ["x"]', "'comand'", "not a key of jhsnp.toml"),
    ],
)
def test_keys_about_access_and_unknown_keys_are_refused_by_name(tmp_path, line, named, why):
    with pytest.raises(ManifestError) as e:
        parse_manifest(line, str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and message.startswith("jhsnp.toml: ")
    assert named in message and why in message


@pytest.mark.parametrize(
    "text, problem",
    [
        ("ready_timeout = nan", "finite"),
        ("ready_timeout = inf", "finite"),
        ("ready_timeout = 0", "above 0"),
        ("ready_timeout = -3", "above 0"),
        ('ready_timeout = "10"', "number of seconds"),
        ("ready_timeout = true", "number of seconds"),
        ("absolute_url = 1", "true or false"),
        ('rewrite_urls = "yes"', "true or false"),
        ("command = []", "empty"),
        ("command = [1, 2]", "list of strings"),
        ('command = ["x", "{prot}"]', "prot"),
        ('command = "unclosed \\"quote"', "command"),
        ('app = "rails"', "not known"),
        ('app = "streamlit"\ncommand = ["x"]', "not both"),
        ('presentation_path = "../elsewhere/app.py"', "leads out of the repository"),
        ('presentation_path = "/etc/passwd"', "relative to the repository"),
        ('presentation_path = "~/app.py"', "relative to the repository"),
        ("presentation_path = 3", "must be a string"),
        ('env = { "1BAD" = "x" }', "not a valid variable name"),
        ('env = { "A" = 1 }', "must be a string"),
        ('env = "A=1"', "table of strings"),
        ('requirements = "streamlit"', "list of requirement strings"),
        ('requirements = ["a\\nb"]', "control character"),
        ("this is = not toml", "not valid TOML"),
    ],
)
def test_wrong_values_are_refused_as_the_command_line_refuses_them(tmp_path, text, problem):
    with pytest.raises(ManifestError, match="^jhsnp.toml") as e:
        parse_manifest(text, str(tmp_path))
    assert problem in str(e.value)


def test_a_link_out_of_the_repository_is_refused(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "outside.py").write_text("")
    (tmp_path / "repo" / "app.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(ManifestError, match="a link"):
        parse_manifest('presentation_path = "app.py"', str(tmp_path / "repo"))


def test_a_huge_manifest_is_not_read(tmp_path):
    write(tmp_path, {"jhsnp.toml": "# " + "x" * 70_000 + "\n"})
    with pytest.raises(ManifestError, match="larger than 64 KiB"):
        read_description(str(tmp_path))


# -- a Hugging Face Space's front matter ----------------------------------------------------


def test_a_spaces_front_matter_names_the_preset_its_file_and_the_frameworks_pin(tmp_path):
    write(tmp_path, {"README.md": SPACE_README.format(
        sdk="gradio", extra="sdk_version: 4.44.1\napp_file: src/demo.py\n")})  # fmt: skip
    found = read_description(str(tmp_path))
    assert (found.app, found.presentation_path) == ("gradio", "src/demo.py")
    assert found.framework_pin == "gradio==4.44.1"
    assert found.source == "README.md front matter (Hugging Face Spaces)"


def test_a_static_space_serves_the_folder_of_its_page(tmp_path):
    write(tmp_path, {"README.md": SPACE_README.format(sdk="static", extra="")})
    found = read_description(str(tmp_path))
    assert (found.app, found.presentation_path, found.framework_pin) == ("static", ".", "")
    write(tmp_path, {"README.md": SPACE_README.format(
        sdk="static", extra="app_file: site/index.html\n")})  # fmt: skip
    assert read_description(str(tmp_path)).presentation_path == "site"


def test_a_docker_space_is_refused_with_why(tmp_path):
    write(tmp_path, {"README.md": SPACE_README.format(sdk="docker", extra="app_port: 7860\n")})
    with pytest.raises(ManifestError) as e:
        read_description(str(tmp_path))
    assert str(e.value) == DOCKER_REFUSED
    assert "not as a container image" in DOCKER_REFUSED and "jhsnp.toml" in DOCKER_REFUSED


def test_a_readme_without_front_matter_says_nothing():
    assert front_matter("# Title\n\nText\n") is None
    assert front_matter("---\n\nA rule, then prose: no YAML mapping.\n---\n") is None
    assert front_matter("---\ntitle: [unclosed\n---\n") is None  # broken, and no sdk: line
    with pytest.raises(ManifestError, match="not valid YAML"):
        front_matter("---\nsdk: gradio\ntitle: [unclosed\n---\n")


def test_a_space_file_out_of_the_repository_is_refused(tmp_path):
    write(tmp_path, {"README.md": SPACE_README.format(sdk="gradio", extra="app_file: ../x.py\n")})
    with pytest.raises(ManifestError, match="leads out of the repository"):
        read_description(str(tmp_path))


# -- precedence -----------------------------------------------------------------------------


def test_with_repo_no_command_is_accepted_and_left_to_the_repository():
    settings = parse_args(["--authtype", "none", "--repo", "https://example.org/r.git"], environ())
    assert settings.command == () and settings.given_app.deferred


def test_without_repo_no_command_is_still_an_error():
    with pytest.raises(SettingsError, match="no command given"):
        parse_args(["--authtype", "none"], environ())


def test_the_manifests_command_runs_when_the_command_line_gives_none(tmp_path):
    write(tmp_path, {"jhsnp.toml": 'command = ["python3", "serve.py", "{port}"]\n'})
    s = resolved(tmp_path)
    assert s.command == ("python3", "serve.py", "{port}")
    assert (s.app_name, s.app_source) == ("", "jhsnp.toml")


def test_the_command_line_wins_key_by_key(tmp_path):
    write(tmp_path, {"jhsnp.toml": """
        command = ["python3", "serve.py", "{port}"]
        ready_timeout = 30
        ready_check_path = "/manifest"
        env = { GREETING = "manifest", OTHER = "manifest" }
        requirements = ["iniconfig"]
    """})  # fmt: skip
    s = resolved(tmp_path, "--ready-timeout", "5", "--env", "GREETING=cli")
    assert s.ready_timeout == 5 and s.ready_check_path == "/manifest"
    assert dict(s.env) == {"GREETING": "cli", "OTHER": "manifest"}
    assert s.app_requirements == ("iniconfig",)
    # A command on the command line decides the app; the manifest still adds its other keys.
    s = resolved(tmp_path, "--", "python3", "mine.py", "{port}")
    assert s.command == ("python3", "mine.py", "{port}") and s.app_source == "command line"
    assert s.ready_timeout == 30 and s.env["GREETING"] == "manifest"


def test_the_manifest_wins_over_its_presets_settings(tmp_path):
    write(tmp_path, {"app.py": "import gradio\n", "jhsnp.toml": """
        app = "gradio"
        presentation_path = "app.py"
        ready_timeout = 120
        requirements = ["gradio"]
    """})  # fmt: skip
    s = resolved(tmp_path)
    assert (s.app_name, s.app_source, s.ready_timeout) == ("gradio", "jhsnp.toml", 120)
    assert s.presentation_abspath == str(tmp_path / "app.py")


def test_jhsnp_toml_comes_before_the_front_matter(tmp_path):
    write(tmp_path, {
        "README.md": SPACE_README.format(sdk="gradio", extra=""),
        "app.py": "import streamlit as st\n",
        "jhsnp.toml": "ready_timeout = 40\n",
    })  # fmt: skip
    s = resolved(tmp_path)  # jhsnp.toml says no app: inference, not the front matter
    assert (s.app_name, s.app_source, s.ready_timeout) == ("streamlit", "inferred from app.py", 40)
    (tmp_path / "jhsnp.toml").unlink()
    s = resolved(tmp_path)
    assert s.app_name == "gradio" and s.app_source.startswith("README.md front matter")


def test_streamlit_app_py_is_streamlit_community_clouds_convention(tmp_path):
    write(tmp_path, {"streamlit_app.py": "print('hi')\n", "app.py": "import gradio\n"})
    s = resolved(tmp_path)
    assert (s.app_name, s.presentation_path) == ("streamlit", "streamlit_app.py")
    assert s.app_source == "streamlit_app.py (Streamlit Community Cloud)"


def test_app_auto_on_the_command_line_looks_after_the_checkout(tmp_path):
    write(tmp_path, {"dash_board.py": "import dash\n"})
    s = resolved(tmp_path, "--app", "auto", "--presentation-path", "dash_board.py")
    assert (s.app_name, s.app_source) == ("dash", "inferred from dash_board.py")
    assert s.command[-1] == "{presentation_path}"


def test_a_repository_that_says_nothing_is_told_what_to_add(tmp_path):
    write(tmp_path, {"notes.txt": "x\n"})
    with pytest.raises(RepositoryAppError) as e:
        resolved(tmp_path)
    assert str(e.value) == NOTHING_SAID


def test_nothing_changes_without_repo(tmp_path):
    write(tmp_path, {"jhsnp.toml": 'authtype = "none"\n'})
    argv = ["--authtype", "none", "--notebook-dir", str(tmp_path), "--", "python3", "x.py"]
    settings = parse_args(argv, environ())
    assert resolve(settings) is settings


def test_list_apps_explains_the_sources_and_what_a_local_folder_resolves_to(tmp_path):
    write(tmp_path, {"README.md": SPACE_README.format(sdk="streamlit", extra="")})
    write(tmp_path, {"app.py": "import streamlit\n"})
    lines = describe_sources(str(tmp_path), environ())
    assert any("jhsnp.toml" in line for line in lines)
    assert lines[-1].startswith(f"{tmp_path}: streamlit, from README.md front matter")


def test_origin_host_from_the_repository_is_refused_unless_a_trusted_source_gives_it(tmp_path):
    """A start waits for the owner's visit only when the command line says so: a repository's
    {origin_host} would otherwise be filled with nothing."""
    write(tmp_path, {"jhsnp.toml": 'command = ["python3", "x.py", "{origin_host}"]\n'})
    with pytest.raises(RepositoryAppError, match="origin_host"):
        resolved(tmp_path)
    s = resolved(tmp_path, "--allow-host", "dash.example.org")
    assert s.command[-1] == "{origin_host}"
