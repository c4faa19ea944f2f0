"""The documentation's code blocks work: the runnable ones run, the configuration ones parse.

A fenced block in docs/**/*.md or README.md is marked by an HTML comment on the line before its
fence (invisible on GitHub and in the Sphinx site):

- `<!-- doc-test: run -->`: a `jhsingle-native-proxy ...` command line (`--authtype none`) that
  runs here. It is started as a real process on 127.0.0.1, on a free port (`--port` added, or
  its value replaced), from the checkout's folder, with the venv's own CLI; it must answer 200
  at its prefix with the app ready, and is ended by its process group. Leading `NAME=value`
  words are its environment; in a `... && jhsingle-native-proxy ...` chain (README's one-liner)
  the install steps before it are what this environment already did.
- `<!-- doc-test: parse -->`: configuration that needs a cluster, parsed by its fence's language
  (python, yaml, toml, json); a TOML block is a jhsnp.toml and is also read by the project's
  own manifest parser, unless its first line is a `# NAME.toml` comment naming another file.
- `<!-- doc-test: skip (reason) -->`: left alone, for the reason given.

Every python, yaml, toml and json block must carry one of them, so that no configuration in
the docs can rot unnoticed.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import free_port, request, wait_for
from jhsingle_native_proxy.repository_manifest import parse_manifest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG_LANGUAGES = {"python", "py", "yaml", "yml", "toml", "json"}
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<kind>\w+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<language>[\w+-]*)")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
# Timing is loosened for a busy test machine (an app may take longer than the default 10 s to
# answer); the block's own words are kept.
READY_TIMEOUT = "60"
ANSWER_TIMEOUT = 90


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    kind: str  # run, parse, skip, or "" when unmarked
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_pages() -> list[Path]:
    pages = [p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts]
    return [*sorted(pages), ROOT / "README.md"]


def page_blocks(path: Path) -> tuple[list[Block], list[int]]:
    """A page's fenced blocks, with the marker on the line before each; and the line numbers of
    markers that stand before no fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    stray: list[int] = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
            stray.append(i + 1)
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group("fence")
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        before = MARKER.match(lines[i - 1]) if i else None
        found.append(
            Block(
                path=path,
                line=i + 1,
                language=opening.group("language").lower(),
                text=textwrap.dedent("\n".join(lines[i + 1 : end])),
                kind=before.group("kind") if before else "",
                reason=(before.group("reason") or "").strip() if before else "",
            )
        )
        i = end + 1
    return found, stray


def all_blocks() -> list[Block]:
    return [block for page in doc_pages() for block in page_blocks(page)[0]]


def marked(kind: str) -> list[Block]:
    return [block for block in all_blocks() if block.kind == kind]


# -- every configuration block is marked ----------------------------------------------------


def test_every_config_block_is_marked():
    unmarked = [
        f"{b.name} ({b.language})"
        for b in all_blocks()
        if b.language in CONFIG_LANGUAGES and not b.kind
    ]
    assert not unmarked, (
        "code blocks without a `<!-- doc-test: run|parse|skip (reason) -->` line before them: "
        + ", ".join(unmarked)
    )


def test_markers_are_known_and_stand_before_a_block():
    wrong = []
    for page in doc_pages():
        blocks, stray = page_blocks(page)
        wrong += [f"{page.relative_to(ROOT)}:{n}: a marker before no code block" for n in stray]
        for b in blocks:
            if b.kind and b.kind not in ("run", "parse", "skip"):
                wrong.append(f"{b.name}: unknown marker {b.kind!r}")
            if b.kind == "skip" and not b.reason:
                wrong.append(f"{b.name}: a skip without its reason: doc-test: skip (why)")
            if b.kind == "parse" and b.language not in CONFIG_LANGUAGES:
                wrong.append(f"{b.name}: cannot parse a block of language {b.language!r}")
    assert not wrong, wrong


def test_the_docs_have_runnable_and_parsed_blocks():
    """The markers were found (an extraction that finds nothing would pass everything)."""
    assert len(marked("run")) >= 5 and len(marked("parse")) >= 25


# -- parse -----------------------------------------------------------------------------------


def is_jhsnp_toml(block: Block) -> bool:
    first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
    names_a_file = re.match(r"#\s*([\w.-]+\.toml)\b", first)
    return not names_a_file or names_a_file.group(1) == "jhsnp.toml"


def parse(block: Block, folder: Path) -> None:
    """Parse the block by its language; raises on a mistake."""
    if block.language in ("python", "py"):
        ast.parse(block.text, filename=block.name)
    elif block.language in ("yaml", "yml"):
        list(yaml.safe_load_all(block.text))
    elif block.language == "json":
        json.loads(block.text)
    elif block.language == "toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        tomllib.loads(block.text)
        if is_jhsnp_toml(block):
            parse_manifest(block.text, str(folder))
    else:
        raise AssertionError(f"{block.name}: no parser for {block.language!r}")


@pytest.mark.parametrize("block", marked("parse"), ids=lambda b: b.name)
def test_config_block_parses(block, tmp_path):
    parse(block, tmp_path)


def test_a_broken_block_fails_to_parse(tmp_path):
    """The parsers find mistakes (a block that is wrong must not pass)."""
    broken = {
        "python": 'c.Spawner.cmd = ["jhsingle-native-proxy", "--"',
        "yaml": "singleuser:\n  cmd: [a, b\n",
        "toml": 'app = "streamlit"\nready_timout = 30\n',  # a misspelt key of jhsnp.toml
        "json": '{"state": "ready",}',
    }
    for language, text in broken.items():
        block = Block(ROOT / "README.md", 0, language, text, "parse")
        with pytest.raises((SyntaxError, yaml.YAMLError, ValueError)):
            parse(block, tmp_path)


# -- run -------------------------------------------------------------------------------------


def proxy_command(block: Block) -> tuple[dict[str, str], list[str]]:
    """The environment and words of a run block's jhsingle-native-proxy command."""
    text = re.sub(r"\\\n\s*", " ", block.text).strip()
    assert "\n" not in text, f"{block.name}: a run block holds one command"
    steps = [step.strip() for step in text.split("&&")]
    words = shlex.split(steps[-1])
    env = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words and words[0] == "jhsingle-native-proxy", f"{block.name}: not the proxy's command"
    return env, words[1:]


def with_port(args: list[str], port: int) -> list[str]:
    """The proxy's words with our port, and a ready timeout unless the block gives one."""
    ours = args[: args.index("--")] if "--" in args else args
    app = args[len(ours) :]
    ours = list(ours)
    if "--port" in ours:
        ours[ours.index("--port") + 1] = str(port)
    else:
        ours[:0] = ["--port", str(port)]
    if "--ready-timeout" not in ours:
        ours[:0] = ["--ready-timeout", READY_TIMEOUT]
    return ours + app


def proxy_program() -> list[str]:
    """The venv's own `jhsingle-native-proxy` (the code under test comes first on the path)."""
    cli = Path(sys.executable).parent / "jhsingle-native-proxy"
    return [str(cli)] if cli.exists() else [sys.executable, "-m", "jhsingle_native_proxy"]


def venv_path() -> str:
    """PATH with this Python's bin folder first, as in the docs' activated `.venv`."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def require_app(args: list[str]) -> None:
    """Skip when the app's program is not installed; fail instead under CI."""
    program = args[args.index("--") + 1] if "--" in args else None
    if program is None or shutil.which(program, path=venv_path()):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{program} is not on PATH")
    pytest.skip(f"{program} is not on PATH")


def answers(process: subprocess.Popen, port: int, prefix: str, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the command exited ({process.returncode}):\n{log.read_text()}")
    with contextlib.suppress(OSError):
        # A plain client (no browser headers): a starting app is waited for, not shown the
        # loading page.
        return request(port, "GET", prefix, timeout=ANSWER_TIMEOUT).status == 200
    return False


def stop(process: subprocess.Popen) -> None:
    """End the command's whole process group: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.parametrize("block", marked("run"), ids=lambda b: b.name)
def test_runnable_block_serves_its_app(block, tmp_path):
    env, args = proxy_command(block)
    require_app(args)
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    environment["PATH"] = venv_path()
    environment.update(env)
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    log = tmp_path / "output.txt"
    started = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*proxy_program(), *with_port(args, port)],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: answers(process, port, prefix, log),
            ANSWER_TIMEOUT,
            interval=0.2,
            what=f"{block.name} to answer 200 at {prefix}",
        )
        status = request(port, "GET", prefix + "_jhsnp/status")
        assert status.status == 200 and status.json()["state"] == "ready", status.body
    finally:
        stop(process)
    sys.stderr.write(f"\n[doc block] {block.name}: 200 in {time.monotonic() - started:.1f}s\n")
