"""Our own pages (jhsingle_native_proxy/pages): what a hostile value can and cannot do in them.

An app's output, a failure reason and a hub user name are not ours: any of them may hold markup.
Each page is rendered with such a value in every field it takes.
"""

from __future__ import annotations

import json
import re

import pytest

from jhsingle_native_proxy import pages

HOSTILE = "</script><script>alert(1)</script>"
# What tornado's autoescape makes of it.
ESCAPED = "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"


def _scripts(page: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", page, re.S)


PAGES = {
    "loading": lambda v: pages.loading_page("/user/a/_jhsnp/status", v, [v, "next"], v),
    "app failed, restart due": lambda v: pages.app_failed_page(v, ["first", v], 3.0),
    "app failed, no restart": lambda v: pages.app_failed_page(v, [v], None),
    "error": lambda v: pages.error_page(503, v, v),
    "not yours": lambda v: pages.not_yours_page(v, v),
}


@pytest.mark.parametrize("name", PAGES)
def test_a_hostile_value_is_shown_escaped_and_adds_no_markup(name):
    page = PAGES[name](HOSTILE)
    assert HOSTILE not in page
    assert ESCAPED in page
    # No script element of the value's: only the loading page's own script is there.
    assert page.count("<script") == (1 if name == "loading" else 0)
    assert "alert(1)" not in "".join(_scripts(page))


def test_a_hostile_value_in_the_script_json_cannot_end_the_script():
    page = pages.loading_page("/user/a/" + HOSTILE + "<!--", HOSTILE, [HOSTILE], HOSTILE)
    (script,) = _scripts(page)
    assert "</" not in script and "<!--" not in script
    literal = re.search(r"var url = (.*?), delay = ", script).group(1)
    assert "\\u003c/script\\u003e" in literal
    # Still the same string to JavaScript (JSON is a subset of it).
    assert json.loads(literal) == "/user/a/" + HOSTILE + "<!--"


@pytest.mark.parametrize(
    "value",
    [HOSTILE, "<!--<script>", "</SCRIPT >", "a\u2028b\u2029c", "&amp; > <", {"k": [HOSTILE]}],
)
def test_script_json_escapes_what_could_end_a_script(value):
    encoded = pages.script_json(value)
    assert not set(encoded) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(encoded) == value


def test_the_loading_page_polls_the_status_endpoint():
    page = pages.loading_page("/user/a/_jhsnp/status")
    (script,) = _scripts(page)
    assert 'var url = "/user/a/_jhsnp/status"' in script
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
