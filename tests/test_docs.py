"""The documentation says what the code does.

- docs/options.md is generated from the click command (docs/make_options.py) and must match it.
- Every option the docs give jhsingle-native-proxy exists in `jhsingle-native-proxy --help`.

Which `--flags` are the proxy's own:

- in code blocks of docs/*.md and README.md: the words of a `jhsingle-native-proxy` (or
  `python -m jhsingle_native_proxy`) command before its `--`, whether the command is a shell line
  (with `\\` continuations), a Python or YAML `[...]` list, or a YAML block list. Words after `--`
  are the app's.
- in the prose of docs/*.md and README.md (its options table included): an inline code span
  that starts with a dash (`--ready-timeout 30`, up to a `--` of its own) or that holds a
  command as above. Flags of other programs are written with the program's name in the span
  (`voila ... --Voila.base_url=...`), or sit in a table column whose header names the other
  tool (`0.8.3 option`, `jupyter standaloneproxy`), or are listed in FOREIGN_FLAGS with the
  program they belong to.

`--Class.trait=value` flags count as known: the command line takes them off before click sees
them (jupyterhub-singleuser's traits, logged as ignored).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w.-]*)")
TRAIT = re.compile(r"^--[A-Z]\w*\.\w+$")
COMMAND = re.compile(
    r"(?<![\w.-])jhsingle-native-proxy(?![\w./:-])|(?<=-m )jhsingle_native_proxy(?![\w.])"
)
TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([^\s,\[\]"\']+)')
FENCE = re.compile(r"^\s*```")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# Table columns about another program: their flags are not ours.
FOREIGN_COLUMN = re.compile(r"0\.8\.3|standaloneproxy", re.IGNORECASE)
# Other programs' flags that a page's prose names on their own, by page: whose each is.
FOREIGN_FLAGS = {
    "getting-started.md": {
        "--server.baseUrlPath": "Streamlit's (the app needs none behind the proxy)",
        "--server.port": "Streamlit's (a placeholder in a word: `--server.port=<port>`)",
        "--disable-user-config": "jupyterhub-singleuser's: taken off before click and logged "
        "as ignored (singleuser_flags.py)",
    },
    "presets.md": {
        "--server.port": "Streamlit's (the streamlit preset sets it: a usage error after --)",
        "--prefix": "Bokeh's (the bokeh preset passes it)",
    },
    "container-image.md": {"--secret": "docker and podman build's"},
    "git-checkout.md": {"-c": "git's (the credential helper)"},
    "development.md": {"-m": "pytest's marker option"},
}


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


# -- what the docs say -----------------------------------------------------------------------


def split_blocks(text: str) -> tuple[list[str], list[str]]:
    """The fenced code blocks of a markdown text, and its other lines."""
    blocks: list[str] = []
    prose: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
            continue
        (prose if current is None else current).append(line)
    return blocks, prose


def words(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in TOKEN.finditer(text)]


def own_words(text: str, start: int) -> list[str]:
    """The words of the command whose name ends at `start`, up to the end of the command."""
    before = text[:start]
    line_start = before.rfind("\n") + 1
    if before.count("[") > before.count("]"):  # inside a Python or YAML flow list
        depth, end = 1, start
        while end < len(text) and depth:
            depth += {"[": 1, "]": -1}.get(text[end], 0)
            end += 1
        return words(text[start : end - 1])
    block_item = re.match(r"(\s*)- $", text[line_start : start - len("jhsingle-native-proxy")])
    if block_item:  # a YAML block list: the items that follow at the same indentation
        found = []
        for line in text[start:].split("\n")[1:]:
            item = re.match(re.escape(block_item.group(1)) + r"- (.*)$", line)
            if not item:
                break
            found.extend(words(item.group(1)))
        return found
    lines = text[start:].split("\n")  # a shell line, with its continuations
    command = [lines[0]]
    while command[-1].rstrip().endswith("\\") and len(command) < len(lines):
        command.append(lines[len(command)])
    return words(" ".join(line.rstrip().rstrip("\\") for line in command))


def proxy_flags_in_command_text(text: str) -> list[str]:
    """The flags given to jhsingle-native-proxy in every command in `text` (before its `--`)."""
    found = []
    for match in COMMAND.finditer(text):
        for word in own_words(text, match.end()):
            if word == "--":
                break
            flag = FLAG.match(word)
            if flag and word.startswith("-"):
                found.append(flag.group(1))
    return found


def proxy_flags_in_span(span: str) -> list[str]:
    if COMMAND.search(span):
        return proxy_flags_in_command_text(span)
    if span.lstrip("\"'").startswith("-"):
        return FLAG.findall(re.split(r"(?:^|\s)--(?:\s|$)", span)[0])
    return []


def table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def proxy_flags_in_prose(lines: list[str]) -> list[str]:
    found = []
    header: list[str] | None = None
    for line in lines:
        if not line.lstrip().startswith("|"):
            header = None
            pieces = [line]
        elif header is None:
            header = table_cells(line)
            continue
        else:
            cells = table_cells(line)
            pieces = [
                cell
                for i, cell in enumerate(cells)
                if not (i < len(header) and FOREIGN_COLUMN.search(header[i]))
            ]
        for piece in pieces:
            for span in INLINE_CODE.finditer(piece):
                found.extend(proxy_flags_in_span(span.group(2).strip()))
    return found


def documented_flags() -> list[tuple[str, str]]:
    """(file, flag) for every flag the docs and README give the proxy."""
    found = []
    for path in [*doc_files(), ROOT / "README.md"]:
        blocks, prose = split_blocks(path.read_text(encoding="utf-8"))
        for block in blocks:
            found.extend((path.name, flag) for flag in proxy_flags_in_command_text(block))
        found.extend((path.name, flag) for flag in proxy_flags_in_prose(prose))
    return found


# -- what the command accepts ----------------------------------------------------------------


@pytest.fixture(scope="module")
def help_flags() -> set[str]:
    """Every option name in the first column of the real `--help`."""
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-m", "jhsingle_native_proxy", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    flags = set()
    for line in result.stdout.splitlines():
        column = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if column:
            flags.update(FLAG.findall(column.group(1)))
    assert {"--port", "--ready-timeout", "--no-logs", "-h"} <= flags, flags
    return flags


def load_make_options():
    spec = importlib.util.spec_from_file_location("make_options", DOCS / "make_options.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- tests -----------------------------------------------------------------------------------


def test_options_page_is_the_commands_own_table():
    expected = load_make_options().render()
    actual = (DOCS / "options.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/options.md is out of date: run `python docs/make_options.py`"


def test_options_page_lists_every_option_of_help(help_flags):
    table = (DOCS / "options.md").read_text(encoding="utf-8")
    missing = sorted(flag for flag in help_flags if f"`{flag}`" not in table)
    assert not missing, f"docs/options.md lacks {missing}: run `python docs/make_options.py`"


def test_every_documented_proxy_flag_exists(help_flags):
    used = documented_flags()
    assert len(used) > 50, "the docs' flags were not found: is the extraction broken?"
    unknown = sorted(
        {
            (name, flag)
            for name, flag in used
            if flag not in help_flags
            and not TRAIT.match(flag)
            and flag not in FOREIGN_FLAGS.get(name, {})
        }
    )
    assert not unknown, "flags in the docs that `jhsingle-native-proxy --help` lacks: " + ", ".join(
        f"{flag} ({name})" for name, flag in unknown
    )


def test_the_options_overview_and_prose_are_checked_too():
    """Getting started's options table and every page's prose are checked like code blocks: they
    are where a misspelt flag would be copied from. The list of other programs' flags holds only
    what each page names."""
    used = documented_flags()
    overview = {flag for name, flag in used if name == "getting-started.md"}
    table = {"--websocket-max-message-size", "--ready-timeout", "--allow-host"}
    assert table <= overview, table - overview
    stale = {
        (name, flag)
        for name, flags in FOREIGN_FLAGS.items()
        for flag in flags
        if (name, flag) not in set(used)
    }
    assert not stale, f"FOREIGN_FLAGS names flags the pages no longer have: {sorted(stale)}"
    readme = {flag for name, flag in used if name == "README.md"}
    assert {"--app", "--authtype", "--list-apps"} <= readme, readme


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("jhsingle-native-proxy --port 1 -- app --server.port {port}", ["--port"]),
        ("jhsingle-native-proxy --ip 0.0.0.0 streamlit hello {--}x --debug", ["--ip", "--debug"]),
        ("x \\\n  jhsingle-native-proxy --repo u \\\n  --debug -- a --b", ["--repo", "--debug"]),
        (
            'cmd = ["jhsingle-native-proxy",\n  "--unix-socket", "--", "a", "--b"]',
            ["--unix-socket"],
        ),
        ('cmd: [jhsingle-native-proxy, --timeout, "9", "--", a, --b]', ["--timeout"]),
        (
            "cmd:\n  - jhsingle-native-proxy\n  - --repo\n  - u\n  - '--'\n  - --b\nx: --y",
            ["--repo"],
        ),
        ("FROM jhsingle-native-proxy\nRUN pip --no-cache-dir", []),
        ("podman tag jhsingle-native-proxy r.example/jhsingle-native-proxy:1", []),
        ("python -m jhsingle_native_proxy --help", ["--help"]),
    ],
)
def test_flag_extraction_takes_only_the_proxys_words(text, flags):
    assert proxy_flags_in_command_text(text) == flags


def test_prose_flags_skip_other_programs_columns():
    prose = [
        "Use `--force-alive`, not `voila --Voila.x=1`; `--destport 8 -- sleep --x` works.",
        "| 0.8.3 option | now |",
        "| --- | --- |",
        "| `--no-progressive` | refused; `--progressive` is accepted |",
    ]
    assert proxy_flags_in_prose(prose) == ["--force-alive", "--destport", "--progressive"]


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    anchors = set()
    _, prose = split_blocks(path.read_text(encoding="utf-8"))
    for line in prose:
        heading = re.match(r"^#+\s+(.*)$", line)
        if heading:
            text = heading.group(1).strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_links_between_docs_lead_somewhere():
    broken = []
    for path in [*doc_files(), ROOT / "README.md"]:
        _, prose = split_blocks(path.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", "\n".join(prose)):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, broken


# -- what the migration guide says 0.8.3's command lines get ---------------------------------

MIGRATION = DOCS / "migrating-from-0.8.3.md"
REFUSED = re.compile(r"(?<!no longer )(?<!not )\brefused\b", re.IGNORECASE)
# Words that make a clause a claim about the flags (or values) it names.
CLAIM = re.compile(r"\brefused\b|\baccepted\b|\bmeans\b", re.IGNORECASE)
CLAUSE_END = re.compile(r"[.!?]\**(?:\s+|$)|;\s*")


def span_texts(text: str) -> list[str]:
    return [m.group(2).strip() for m in INLINE_CODE.finditer(text)]


def flag_claims(text: str) -> list[tuple[tuple[str, ...], bool]]:
    """(words, refused?) for every command-line claim of a migration guide.

    - Each row of a table whose first column is headed `0.8.3 option`: the flags in that cell
      are accepted, unless a clause of the row's other cell that names no code says "refused"
      ("refused: drop it"). Flags named in the other cell are accepted unless their clause
      says "refused"; a value there (`0` is refused, `0` means no limit) is one of the row's
      flag when its clause says "refused", "accepted" or "means".
    - Elsewhere, a sentence (or `;` clause) that says "refused" or "accepted" is a claim about
      every flag in its code spans (`--aiohttp-request-timeout 0` is refused).
    """
    claims: list[tuple[tuple[str, ...], bool]] = []
    _, prose = split_blocks(text)
    header: list[str] | None = None
    paragraphs: list[list[str]] = [[]]
    for line in prose:
        if not line.lstrip().startswith("|"):
            header = None
            if not line.strip() or line.lstrip().startswith(("- ", "#")):
                paragraphs.append([])
            paragraphs[-1].append(line.strip())
            continue
        if header is None:
            header = table_cells(line)
            continue
        cells = table_cells(line)
        if not FOREIGN_COLUMN.search(header[0]) or set(cells[0]) <= {"-", " "}:
            continue
        flags = [words(span) for span in span_texts(cells[0]) if span.startswith("-")]
        now = " ".join(cells[1:])
        clauses = [c for c in CLAUSE_END.split(now) if c.strip()]
        refused = any(REFUSED.search(c) and not span_texts(c) for c in clauses)
        claims.extend((tuple(flag), refused) for flag in flags)
        for clause in clauses:
            for span in span_texts(clause):
                if span.startswith("-"):
                    claims.append((tuple(words(span)), bool(REFUSED.search(clause))))
                elif len(flags) == 1 and CLAIM.search(clause):
                    claims.append(((*flags[0], span), bool(REFUSED.search(clause))))
    for paragraph in paragraphs:
        for sentence in CLAUSE_END.split(" ".join(paragraph)):
            if not re.search(r"\brefused\b|\baccepted\b", sentence, re.IGNORECASE):
                continue
            claim = bool(REFUSED.search(sentence))
            claims.extend(
                (tuple(words(span)), claim) for span in span_texts(sentence) if span.startswith("-")
            )
    return claims


def with_value(argv: tuple[str, ...], command) -> list[str]:
    """The words as given, plus a value if they name an option that needs one and give none."""
    if len(argv) != 1:
        return list(argv)
    for param in command.params:
        if argv[0] in param.opts or argv[0] in param.secondary_opts:
            if param.is_flag or param.count:
                return list(argv)
            if isinstance(param.type, click.Choice):
                return [argv[0], str(param.type.choices[0])]
            numeric = isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))
            return [argv[0], "1" if numeric else "x"]
    return list(argv)


def test_migration_claim_extraction():
    text = "\n".join(
        [
            "- **`--aiohttp-request-timeout 0` is refused.** It meant no limit.",
            "- The `--no-progressive` spelling is accepted; `--debug` is a flag.",
            "",
            "| 0.8.3 option | now |",
            "| --- | --- |",
            "| `--port` | the same; `--port 0` is refused |",
            "| `--no-allow-root` | refused: drop it |",
            "| `--force-alive` / `--no-force-alive` | off; `--force-keep-alive` is accepted too |",
            "| `--help` | the same; `-h` too |",
            "| `--websocket-max-message-size` | default 128 MiB (was `10`); `0` means no limit |",
        ]
    )
    assert flag_claims(text) == [
        (("--port",), False),
        (("--port", "0"), True),
        (("--no-allow-root",), True),
        (("--force-alive",), False),
        (("--no-force-alive",), False),
        (("--force-keep-alive",), False),
        (("--help",), False),
        (("-h",), False),
        (("--websocket-max-message-size",), False),
        (("--websocket-max-message-size", "0"), False),
        (("--aiohttp-request-timeout", "0"), True),
        (("--no-progressive",), False),
    ]


def test_the_migration_guide_says_which_0_8_3_flags_the_command_takes():
    """Every flag (and value) the guide says is accepted or refused, run through the real
    command line up to --list-servers (which exits once the options are parsed)."""
    from conftest import run_cli

    claims = dict(flag_claims(MIGRATION.read_text(encoding="utf-8")))
    assert len(claims) > 30, "the guide's claims were not found: is the extraction broken?"
    command = load_make_options().command()
    wrong = []
    for argv, refused in claims.items():
        args = with_value(argv, command)
        result = run_cli(["--authtype", "none", *args, "--list-servers"])
        assert "Traceback" not in result.stderr, result.stderr
        if result.returncode not in (0, 2):
            wrong.append(f"{' '.join(args)}: exit {result.returncode}: {result.stderr[-300:]}")
        elif (result.returncode == 2) != refused:
            said = "refused" if refused else "accepted"
            did = result.stderr.strip().splitlines()[-1] if result.returncode else "accepted"
            wrong.append(f"{' '.join(args)}: the guide says {said}, the command: {did}")
    assert not wrong, "docs/migrating-from-0.8.3.md is wrong about:\n" + "\n".join(wrong)


def test_readmes_first_demo_serves_the_demo_page_not_the_checkout(start_proxy):
    """The first command a newcomer runs served the folder it was run in, `.git/` included."""
    blocks, _ = split_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    *install, demo = blocks[0].split(" && ")
    assert install == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install ."]
    program, *argv = shlex.split(demo)
    assert program == "jhsingle-native-proxy"
    port = free_port()
    proxy = start_proxy(raw_argv=["--port", str(port), *argv], port=port, prefix="/", cwd=ROOT)
    page = proxy.get("")
    assert page.status == 200 and b"<title>jhsingle-native-proxy: demo app" in page.body
    assert proxy.get(".git/HEAD").status == 404
    assert proxy.get("README.md").status == 404
