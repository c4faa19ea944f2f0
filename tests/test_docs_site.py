"""The documentation site builds with Sphinx without a single warning.

`python -m sphinx -W --keep-going -n -b html docs OUT` is what Read the Docs runs
(.readthedocs.yaml: fail_on_warning). MyST warns about a link to a page or a heading anchor
that does not exist, an image that is missing and a page in no toctree, so a broken link
fails here; the second test breaks a copy of the pages to show it does. README.md is not part
of the site (docs/ is the source folder); tests/test_docs.py checks its links.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCREENSHOTS = ["loading.png", "console.png", "preset-streamlit.png"]


def require_sphinx() -> None:
    """Skip without the `docs` extra; fail instead under CI, which installs it."""
    missing = [m for m in ("sphinx", "myst_parser", "pydata_sphinx_theme") if not _importable(m)]
    if not missing:
        return
    message = f"the docs extra is not installed ({', '.join(missing)}): pip install -e '.[docs]'"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
         str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=source.parent,
    )  # fmt: skip


def test_the_site_builds_without_a_warning(tmp_path):
    require_sphinx()
    result = build(DOCS, tmp_path / "html")
    assert result.returncode == 0 and "WARNING" not in result.stderr, result.stderr
    pages = {p.stem for p in DOCS.glob("*.md")}
    built = {p.stem for p in (tmp_path / "html").glob("*.html")}
    assert pages <= built, pages - built
    assert "README" not in built, "README.md is not a page of the site"
    images = {p.name.split(".")[0] for p in (tmp_path / "html" / "_images").iterdir()}
    assert {name.split(".")[0] for name in SCREENSHOTS} <= images, images
    # The included root files are pages of their own.
    security = (tmp_path / "html" / "security.html").read_text(encoding="utf-8")
    assert "threat model" in security.lower()


def test_the_screenshots_are_pngs_the_pages_show():
    pages = "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    for name in SCREENSHOTS:
        assert (DOCS / "images" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](images/{name})" in pages, f"no page shows images/{name}"
        assert f"![](images/{name})" not in pages, f"images/{name} has no alt text"


BROKEN = {
    "[a link](getting-started.md#no-such-heading)": "no-such-heading",
    "[a link](#no-such-heading-here)": "no-such-heading-here",
    "[a link](no-such-page.md)": "no-such-page",
    "[a link](../examples/no-such-file.py)": "no-such-file.py",
    "![a picture](images/no-such-picture.png)": "no-such-picture.png",
}


def test_broken_links_and_images_fail_the_build(tmp_path):
    """A copy of the site with broken links and a missing image (one build, --keep-going): it
    fails, with a warning naming each."""
    require_sphinx()
    copy = tmp_path / "repo"  # the checkout's files (a few MiB), which the pages link to
    skip = shutil.ignore_patterns(".git", ".venv", "_build", "test-artifacts", "__pycache__")
    shutil.copytree(ROOT, copy, ignore=skip, symlinks=True)
    page = copy / "docs" / "console.md"
    text = page.read_text(encoding="utf-8") + "".join(f"\n{line}\n" for line in BROKEN)
    page.write_text(text, encoding="utf-8")
    result = build(copy / "docs", tmp_path / "html")
    assert result.returncode != 0, "the broken links did not fail the build"
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    for line, name in BROKEN.items():
        assert any(name in w and "console.md" in w for w in warnings), (line, result.stderr)
    assert len(warnings) == len(BROKEN), result.stderr
