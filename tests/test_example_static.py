"""`--app static` in Chromium under /user/test/: a folder's index page renders with its
script and styles (served with the right types, or the browser would refuse them), relative links
work behind the prefix, and what is not meant to be read is not: no listing of a folder without
an index, no dot files."""

from __future__ import annotations

import pytest
from example_support import preset_running

pytestmark = pytest.mark.examples

INDEX = """<!doctype html>
<html><head><title>Report</title><link rel="stylesheet" href="style.css">
<script type="module" src="js/app.js"></script></head>
<body><h1>Quarterly report</h1><p id="filled">waiting for the script</p>
<a href="chapter/">Chapter one</a></body></html>
"""


def test_static_preset_serves_a_report_and_nothing_else(tmp_path):
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    report = tmp_path / "report"
    (report / "js").mkdir(parents=True)
    (report / "chapter").mkdir()
    (report / "data").mkdir()
    (report / "index.html").write_text(INDEX)
    (report / "style.css").write_text("h1 { color: rgb(200, 0, 0); }\n")
    # A module script runs only when served as JavaScript: the text proves the type is right.
    (report / "js" / "app.js").write_text(
        "document.getElementById('filled').textContent = 'filled in by the script';\n"
    )
    (report / "chapter" / "index.html").write_text("<h2>Chapter one</h2><a href='../'>back</a>")
    (report / "data" / "numbers.csv").write_text("a,b\n1,2\n")
    (report / ".env").write_text("SECRET=do-not-serve\n")

    with preset_running("static", report, tmp_path) as proxy, chromium_page() as page:
        page.goto(proxy.url())
        expect(page.get_by_role("heading", name="Quarterly report")).to_be_visible()
        expect(page.locator("#filled")).to_have_text("filled in by the script", timeout=15000)
        color = page.eval_on_selector("h1", "e => getComputedStyle(e).color")
        assert color == "rgb(200, 0, 0)"
        page.get_by_role("link", name="Chapter one").click()
        expect(page.get_by_role("heading", name="Chapter one")).to_be_visible()
        assert page.url == proxy.url("chapter/")
        screenshot(page, "example-static-preset")

        # A folder without index.html is not listed, a dot file is not served, a file is.
        assert proxy.get("data/").status == 404
        assert b"numbers.csv" not in proxy.get("data/").body
        assert proxy.get(".env").status == 404
        assert proxy.get("%2Eenv").status == 404
        numbers = proxy.get("data/numbers.csv")
        assert numbers.status == 200 and numbers.body == b"a,b\n1,2\n"
