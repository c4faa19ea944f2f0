"""Sphinx configuration of the documentation site (MyST Markdown, pydata-sphinx-theme).

    python -m sphinx docs docs/_build/html

The pages are Markdown that also reads well on GitHub: links between pages are plain relative
`.md` links (with GitHub's heading anchors, which `myst_heading_anchors` makes here too), and
links to files of the repository outside docs/ (`../examples/`, `../bench/README.md`) stay
relative. The site has no copy of those files, so `repository_links` turns them into links to
the repository (`REPOSITORY_URL`) or, while it has none, into plain text; a link to a file that
does not exist is left to MyST, which warns (and the build, with -W, fails).
tests/test_docs_site.py builds the site with -W -n: every warning is a failure.
"""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path

from docutils import nodes
from sphinx import addnodes

DOCS = Path(__file__).resolve().parent
REPOSITORY = DOCS.parent
sys.path.insert(0, str(REPOSITORY))

from jhsingle_native_proxy._version import __version__  # noqa: E402

project = "jhsingle-native-proxy"
author = "the jhsingle-native-proxy contributors"
copyright = "the jhsingle-native-proxy contributors"  # noqa: A001 (Sphinx's name)
version = release = __version__

# Where the repository is browsed (e.g. "https://github.com/OWNER/jhsingle-native-proxy/blob/main"),
# for links to its files outside docs/; empty: such links are shown as text.
REPOSITORY_URL = ""

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = [
    "_build",
    "make_options.py",
    "images/README.md",  # which test writes each screenshot: for contributors, not a page
    "Thumbs.db",
    ".DS_Store",
]
root_doc = "index"

# GitHub-style anchors for headings down to ####, so `page.md#a-heading` links resolve (and a
# missing one is a warning).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
# Every warning counts (tests/test_docs_site.py builds with -W -n); none is suppressed.
suppress_warnings: list[str] = []

html_theme = "pydata_sphinx_theme"
html_title = "jhsingle-native-proxy"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []


def _repository_file(docname: str, target: str) -> str | None:
    """The repository path that a relative link of page `docname` names, when it is a file or
    folder of the repository outside docs/ that exists; else None."""
    path = target.partition("#")[0]
    if not path or "://" in path or path.startswith("mailto:"):
        return None
    if Path(path).is_absolute():  # MyST 5 names a .md file outside docs/ by its absolute path
        joined = Path(os.path.relpath(path, REPOSITORY)).as_posix()
    else:
        joined = posixpath.normpath(posixpath.join("docs", posixpath.dirname(docname), path))
    if joined.startswith("..") or joined == "docs" or joined.startswith("docs/"):
        return None
    # A .md file is named without its suffix (a document's name), other files and folders as is.
    found = [name for name in (joined, joined + ".md") if (REPOSITORY / name).exists()]
    return found[0] if found else None


def repository_links(app, doctree: nodes.document) -> None:
    """Links to the repository's files and folders outside docs/ (other than those MyST ships as
    downloads): to REPOSITORY_URL, or plain text."""
    docname = app.env.docname
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get("reftype") != "myst":
            continue
        target = node.get("reftarget", "")
        if node.get("refdomain") == "doc" and target in app.env.found_docs:
            continue
        path = _repository_file(docname, target)
        if path is None:
            continue
        content = node.children[0].deepcopy() if node.children else nodes.literal(path, path)
        if REPOSITORY_URL:
            link = nodes.reference("", "", refuri=f"{REPOSITORY_URL}/{path}", internal=False)
            link += content
            node.replace_self(link)
        else:
            node.replace_self(content)


def setup(app):
    app.connect("doctree-read", repository_links)
    return {"parallel_read_safe": True}
