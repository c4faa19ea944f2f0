"""The attacker's review of the repository's packages (issue 21): a second user who can write
in the environment cache, a crafted repository (included files, links out of the checkout,
FIFOs, a flood of credentials, conda channel tokens), an installer that never exits.

Nothing here downloads: the cache attack plants its environment, the builds that complete use
pip against packages the test environment already has, and index URLs point at a closed port.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
import time

import pytest
from test_packages import Repository, environments, start_app

from conftest import wait_for
from jhsingle_native_proxy import env_build
from jhsingle_native_proxy.declared_requirements import DeclarationError, read_declared
from jhsingle_native_proxy.env_build import BuildError, EnvBuilder
from jhsingle_native_proxy.requirements_met import probe_python

SECRET = "s3cretTOKEN"
MAX_SECRETS = 32  # declared_requirements.MAX_SECRETS


@pytest.fixture
def repository(tmp_path) -> Repository:
    return Repository(tmp_path / "upstream")


def failed(proxy) -> dict:
    proxy.get("", headers={"Accept": "text/html"})
    wait_for(lambda: proxy.status().get("state") == "failed", 60, what="the start to fail")
    return proxy.status()


def test_an_environment_planted_in_a_cache_others_can_write_is_never_run(
    start_proxy, repository, tmp_path
):
    """Another user who can write in --env-cache (a 'shared' cache, /tmp) predicts the cache key
    (what was declared, the Python) and plants a complete environment whose `python` is theirs:
    the app would run it, as the owner. The cache must be the owner's alone."""
    repository.push({"requirements.txt": "inflection\n"})
    info = probe_python(sys.executable, os.environ)
    key = read_declared(str(repository.path)).digest(info.key)
    cache = tmp_path / "cache"
    planted = cache / key
    (planted / "bin").mkdir(parents=True)
    (planted / ".jhsnp-complete").write_text("{}")
    ran = tmp_path / "the-planted-python-ran"
    (planted / "bin" / "python").write_text(f'#!/bin/sh\ntouch {ran}\nexec {sys.executable} "$@"\n')
    (planted / "bin" / "python").chmod(0o755)
    cache.chmod(0o777)  # as a shared cache folder would be
    proxy = start_app(start_proxy, repository, tmp_path, ["inflection"], wait="listening")
    status = failed(proxy)
    assert not ran.exists(), "the app ran with a Python another user planted"
    assert "cannot use the environment cache" in status["reason"], status
    assert "other users can write in it" in status["reason"], status


def test_a_completed_environment_is_the_owners_alone(start_proxy, repository, tmp_path):
    """The environment's folder holds the declared lines, credentials included: in a cache
    folder others may read (0755, as ~/.cache often is), the environment itself is closed."""
    repository.push(
        {
            "jhsnp.toml": (
                f'requirements = ["--index-url http://alice:{SECRET}@127.0.0.1:9/simple", '
                '"tornado>=6"]\n'
            )
        }
    )
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    # pip (no uv on this PATH) finds tornado in the layered image: no download.
    proxy = start_app(
        start_proxy, repository, tmp_path, ["tornado"], "--install-requirements", path=""
    )
    (built,) = environments(cache)
    written = cache / built / ".jhsnp-requirements.txt"
    assert SECRET in written.read_text()  # what pip was given (the owner's)
    assert stat.S_IMODE((cache / built).stat().st_mode) & 0o077 == 0
    assert SECRET not in proxy.log() and SECRET not in "\n".join(proxy.status()["lines"])


def test_a_conda_channels_token_is_hidden_in_the_warning(start_proxy, repository, tmp_path):
    """environment.yml's conda part is only named in a warning (log and page): a channel URL
    with credentials in it is hidden there as in the installer's lines."""
    yml = f"dependencies:\n  - https://alice:{SECRET}@conda.example.org/private::numpy\n"
    repository.push({"environment.yml": yml})
    proxy = start_app(start_proxy, repository, tmp_path, ["json"])
    lines = "\n".join(proxy.status()["lines"])
    assert "also names conda packages (https://***@conda.example.org/private::numpy)" in lines
    assert SECRET not in lines and SECRET not in proxy.log()


def test_an_included_file_is_part_of_the_cache_key_and_its_credentials_are_hidden(tmp_path):
    """`-r base.txt`: a push that changes base.txt alone is a new environment (before, the old
    one was reused: the fix never arrived), and base.txt's credentials are hidden too."""
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text(
        f"--extra-index-url http://alice:{SECRET}%2Fx@127.0.0.1:9/simple\ninflection==0.5.0\n"
    )
    first = read_declared(str(tmp_path))
    (tmp_path / "base.txt").write_text("inflection==0.5.1\n")
    second = read_declared(str(tmp_path))
    assert first.digest("py") != second.digest("py")
    builder = EnvBuilder(first, probe_python(sys.executable, os.environ), {}, lambda _: None)
    assert SECRET not in builder.scrub(f"auth failed for alice:{SECRET}/x and {SECRET}%2Fx")


def test_a_manifests_include_is_read_from_the_repository(tmp_path):
    """Lines written into the environment's folder keep their `-r`/`-c` the repository's."""
    (tmp_path / "extra.txt").write_text("inflection\n")
    declared = read_declared(str(tmp_path), ("-r extra.txt", "--constraint=c.txt", "x"))
    builder = EnvBuilder(declared, probe_python(sys.executable, os.environ), {}, lambda _: None)
    env = tmp_path / "env"
    env.mkdir()
    with open(builder._requirements_file(str(env))) as f:
        written = f.read().splitlines()
    assert written == [f"-r {tmp_path}/extra.txt", f"--constraint {tmp_path}/c.txt", "x"]


def test_declarations_that_lead_out_or_never_end(tmp_path):
    """A requirements.txt linked out of the checkout is not read (as jhsnp.toml's rule); an
    included FIFO neither blocks nor fails the reading (the installer will say what it says)."""
    outside = tmp_path / "outside.txt"
    outside.write_text("owners-private-file-content\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "requirements.txt").symlink_to(outside)
    with pytest.raises(DeclarationError, match="leads out of the repository"):
        read_declared(str(repo))

    (repo / "requirements.txt").unlink()
    os.mkfifo(repo / "more.txt")
    (repo / "requirements.txt").write_text("-r more.txt\ninflection\n")
    got = []
    reader = threading.Thread(target=lambda: got.append(read_declared(str(repo))), daemon=True)
    reader.start()
    reader.join(10)
    assert got and got[0].lines == ("-r more.txt", "inflection"), "reading a FIFO blocked"


def test_a_flood_of_credentials_is_refused_before_any_install(tmp_path):
    """Each credential is searched for in every line the installer prints, in the proxy's
    event loop: 17 000 of them (1 MiB) made each long line cost half a second."""
    lines = [
        f"--extra-index-url http://u:secret{i:05d}@127.0.0.1:9/simple"
        for i in range(MAX_SECRETS + 1)
    ]
    (tmp_path / "requirements.txt").write_text("\n".join(lines))
    with pytest.raises(DeclarationError, match="credentials in its URLs"):
        read_declared(str(tmp_path))


def test_an_installer_that_closes_its_output_is_still_bounded(tmp_path, monkeypatch):
    """The deadline covers the installer's exit, not only its output."""
    declared = read_declared(str(tmp_path), ("inflection",))
    builder = EnvBuilder(declared, probe_python(sys.executable, os.environ), {}, lambda _: None)
    monkeypatch.setattr(env_build, "INSTALL_TIMEOUT", 1.0)
    builder._deadline = time.monotonic() + 1.0
    began = time.monotonic()
    with pytest.raises(BuildError, match="took longer"):
        asyncio.run(builder._run(["/bin/sh", "-c", "exec >&- 2>&-; sleep 20"]))
    assert time.monotonic() - began < 10
