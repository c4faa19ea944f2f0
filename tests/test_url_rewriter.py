"""The streaming URL rewriters of `--rewrite-urls` (issue 22): pure functions, bytes in and out.

Exact outputs on tricky markup and CSS; the property that any split into chunks gives the
output of the whole body; that only the prefix is ever inserted; the bound on what is held.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jhsingle_native_proxy.proxy import css_rewriter as css_rewriter_module
from jhsingle_native_proxy.proxy import url_rewriter
from jhsingle_native_proxy.proxy.html_tags import IN_TAG_NAME, TAG, follow_tag
from jhsingle_native_proxy.proxy.url_rewriter import css_rewriter, html_rewriter

PREFIX = "/user/alice/"


def html(
    body: bytes,
    head_insert: bytes = b"",
    chunks: list[int] | None = None,
    prefix: str = PREFIX,
    limit: int = url_rewriter.DEFAULT_LIMIT,
) -> bytes:
    rewriter = html_rewriter(prefix, head_insert, limit=limit)
    return _stream(rewriter, body, chunks)


def css(body: bytes, chunks: list[int] | None = None) -> bytes:
    return _stream(css_rewriter(PREFIX), body, chunks)


def _stream(rewriter, body: bytes, cuts: list[int] | None) -> bytes:
    edges = [0, *sorted(set(cuts or [])), len(body)]
    out = [rewriter.feed(body[a:b]) for a, b in zip(edges, edges[1:], strict=False)]
    return b"".join(out) + rewriter.end()


HTML_CASES = [
    # plain attributes, every quoting, case and spacing
    (b'<a href="/x">', b'<a href="/user/alice/x">'),
    (b"<a href='/x'>", b"<a href='/user/alice/x'>"),
    (b"<a href=/x>", b"<a href=/user/alice/x>"),
    (b'<A HREF = "/x" >', b'<A HREF = "/user/alice/x" >'),
    (b"<a\nclass=b\thref=/x/y?z=1&amp;w=2#f>", b"<a\nclass=b\thref=/user/alice/x/y?z=1&amp;w=2#f>"),
    (b'<a href="/">', b'<a href="/user/alice/">'),
    (b'<a href=" /x ">', b'<a href=" /user/alice/x ">'),
    (b"<a href=/x/>", b"<a href=/user/alice/x/>"),
    (b'<img src="/i.png"/>', b'<img src="/user/alice/i.png"/>'),
    # what is left alone
    (b'<a href="//cdn.example/x">', b'<a href="//cdn.example/x">'),
    (b'<a href="/\\evil/x">', b'<a href="/\\evil/x">'),
    (b'<a href="/\t/evil">', b'<a href="/\t/evil">'),
    (b'<a href="http://host/x">', b'<a href="http://host/x">'),
    (b'<a href="x/y">', b'<a href="x/y">'),
    (b'<img src="data:image/png;base64,AA==">', b'<img src="data:image/png;base64,AA==">'),
    (b'<a href="/user/alice/x">', b'<a href="/user/alice/x">'),
    (b'<a href="/user/alice">', b'<a href="/user/alice">'),
    (b'<a href="/user/alice?x">', b'<a href="/user/alice?x">'),
    (b'<a href="/user/alicex">', b'<a href="/user/alice/user/alicex">'),
    (b'<a href="&#47;x">', b'<a href="&#47;x">'),
    (b"<a href=\x01/x>", b"<a href=\x01/user/alice/x>"),  # a URL parser strips C0 controls
    (b"<a href=\x01 /x>", b"<a href=\x01 /x>"),
    (b'<a title="/x" data-x="/y">', b'<a title="/x" data-x="/y">'),
    (b'<div data="/y">', b'<div data="/y">'),
    (b"</a href=/x>", b"</a href=/x>"),
    # a `>` inside a quoted value does not end the tag
    (b'<a title="a>b" href=/x>', b'<a title="a>b" href=/user/alice/x>'),
    (b"<a title='<a href=/y>' href=/x>", b"<a title='<a href=/y>' href=/user/alice/x>"),
    (b'<aa =="><a href=/x>"><a href=/y>', b'<aa =="><a href=/x>"><a href=/user/alice/y>'),
    (b'<aa ==" href=/x>', b'<aa ==" href=/x>'),  # `<a` + `a==...` is not a reading of it
    # every URL attribute
    (
        b"<form action=/f><button formaction='/g'>",
        b"<form action=/user/alice/f><button formaction='/user/alice/g'>",
    ),
    (
        b'<video poster="/p.jpg" src=/v.mp4>',
        b'<video poster="/user/alice/p.jpg" src=/user/alice/v.mp4>',
    ),
    (b'<object data="/o.svg">', b'<object data="/user/alice/o.svg">'),
    (b'<base href="/">', b'<base href="/user/alice/">'),
    (
        b'<svg><image href="/s.png"/><use xlink:href="/i.svg#a"/></svg>',
        b'<svg><image href="/user/alice/s.png"/><use xlink:href="/user/alice/i.svg#a"/></svg>',
    ),
    (
        b'<img srcset="/a.png 1x, b.png 2x,/c,d.png 3x">',
        b'<img srcset="/user/alice/a.png 1x, b.png 2x,/user/alice/c,d.png 3x">',
    ),
    (b'<img srcset="/a.png">', b'<img srcset="/user/alice/a.png">'),
    (b'<a ping="/p1 http://h/p2 /p3">', b'<a ping="/user/alice/p1 http://h/p2 /user/alice/p3">'),
    (
        b'<meta http-equiv="Refresh" content="0; URL=\'/x\'">',
        b'<meta http-equiv="Refresh" content="0; URL=\'/user/alice/x\'">',
    ),
    (
        b'<meta content="5;/x" http-equiv=refresh>',
        b'<meta content="5;/user/alice/x" http-equiv=refresh>',
    ),
    (b'<meta name="x" content="/x">', b'<meta name="x" content="/x">'),
    (b'<div style="background: url(/b.png)">', b'<div style="background: url(/user/alice/b.png)">'),
    (
        b'<div style="background:url(&quot;/b.png&quot;)">',
        b'<div style="background:url(&quot;/user/alice/b.png&quot;)">',
    ),
    (
        b"<div style='background:url(\"/b.png\")'>",
        b"<div style='background:url(\"/user/alice/b.png\")'>",
    ),
    # raw text and markup that is not markup
    (
        b'<script>x = "<a href=\\"/x\\">"; y = \'url(/z)\'</script><a href=/y>',
        b'<script>x = "<a href=\\"/x\\">"; y = \'url(/z)\'</script><a href=/user/alice/y>',
    ),
    (
        b"<script><!--<script>no end</script> still script</script><a href=/x>",
        b"<script><!--<script>no end</script> still script</script><a href=/user/alice/x>",
    ),
    (
        b"<script><!--<script></script><a href=/x></script><a href=/y>",
        b"<script><!--<script></script><a href=/x></script><a href=/user/alice/y>",
    ),
    (
        b"<SCRIPT type=module>import '/m.js'</SCRIPT >",
        b"<SCRIPT type=module>import '/m.js'</SCRIPT >",
    ),
    (b"<textarea><a href=/x></textarea>", b"<textarea><a href=/x></textarea>"),
    (b"<title><a href=/x></title>", b"<title><a href=/x></title>"),
    (b"<!-- <a href=/x> --><a href=/y>", b"<!-- <a href=/x> --><a href=/user/alice/y>"),
    (b"<!--><a href=/y>", b"<!--><a href=/user/alice/y>"),
    (
        b"<!DOCTYPE html><?xml x?><!x><a href=/y>",
        b"<!DOCTYPE html><?xml x?><!x><a href=/user/alice/y>",
    ),
    (b"<![CDATA[<a href=/x>]]><a href=/y>", b"<![CDATA[<a href=/x>]]><a href=/user/alice/y>"),
    (b"a < b > c <3 </> <a href=/y>", b"a < b > c <3 </> <a href=/user/alice/y>"),
    (b"<plaintext><a href=/x>", b"<plaintext><a href=/x>"),
    # CSS in <style>
    (
        b"<style>a{b:url(/b.png)} /* url(/c) */ b:after{content:'url(/d)'}</style>",
        b"<style>a{b:url(/user/alice/b.png)} /* url(/c) */ b:after{content:'url(/d)'}</style>",
    ),
    # malformed: an unterminated tag or comment at the end passes unchanged
    (b"<a href=/x", b"<a href=/x"),
    (b'<a href="/x>', b'<a href="/x>'),
    (b"<!-- <a href=/x>", b"<!-- <a href=/x>"),
    (b"<", b"<"),
    (b"<style>a{b:url(/c", b"<style>a{b:url(/user/alice/c"),
]


@pytest.mark.parametrize("body, expected", HTML_CASES)
def test_html_exact(body: bytes, expected: bytes) -> None:
    assert html(body) == expected


CSS_CASES = [
    (b"a{b:url(/x.png)}", b"a{b:url(/user/alice/x.png)}"),
    (b"a{b:URL( '/x.png' )}", b"a{b:URL( '/user/alice/x.png' )}"),
    (b'a{b:url(  "/x.png")}', b'a{b:url(  "/user/alice/x.png")}'),
    (
        b"@import \"/a.css\";@import '/b.css' screen;",
        b"@import \"/user/alice/a.css\";@import '/user/alice/b.css' screen;",
    ),
    (b"@import url(/a.css);", b"@import url(/user/alice/a.css);"),
    (b"@IMPORT url('/a.css');", b"@IMPORT url('/user/alice/a.css');"),
    (
        b"a{b:url(//cdn/x) url(data:x) url(x) url(/user/alice/x)}",
        b"a{b:url(//cdn/x) url(data:x) url(x) url(/user/alice/x)}",
    ),
    (b'/* url(/x) */a{content:"url(/y)"}', b'/* url(/x) */a{content:"url(/y)"}'),
    (b"a{content:'it\\'s url(/y)'}", b"a{content:'it\\'s url(/y)'}"),
    (b"a{b:myurl(/x)}", b"a{b:myurl(/x)}"),
    (b"@imports '/x';", b"@imports '/x';"),
    (b"@url(/x) a{}", b"@url(/x) a{}"),
    (b"a{b:url(/a/*b*/c) url(/d)}", b"a{b:url(/user/alice/a/*b*/c) url(/user/alice/d)}"),
    (b'a{b:"x\nurl(/y)}', b'a{b:"x\nurl(/user/alice/y)}'),
]


@pytest.mark.parametrize("body, expected", CSS_CASES)
def test_css_exact(body: bytes, expected: bytes) -> None:
    assert css(body) == expected


HEAD = b"<script src=/user/alice/_jhsnp/r.js></script>"


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            b"<!doctype html><html lang=en><head><title>t</title>",
            b"<!doctype html><html lang=en><head>@<title>t</title>",
        ),
        (
            b"<HEAD class=x><script src=/a.js></script>",
            b"<HEAD class=x>@<script src=/user/alice/a.js></script>",
        ),
        (
            b"<!doctype html>\n<!-- c --><html>\n<script>x</script>",
            b"<!doctype html>\n<!-- c --><html>\n@<script>x</script>",
        ),
        (b"\xef\xbb\xbf  hello <b>", b"\xef\xbb\xbf  @hello <b>"),
        (b"<!doctype html><header>", b"<!doctype html>@<header>"),
        (b"<html><head><head>", b"<html><head>@<head>"),
        (b"  \n", b"  \n@"),
        (b"", b""),
        (b"<!-- open", b"<!-- open"),
        (b"<html><body", b"<html>@<body"),
    ],
)
def test_head_insert(body: bytes, expected: bytes) -> None:
    """Once, after `<head>`, or before the first content; never inside a comment or a tag."""
    assert html(body, b"@") == expected
    for cut in range(len(body) + 1):
        assert html(body, b"@", [cut]) == expected


def test_script_body_untouched_and_end_tag_split_across_chunks() -> None:
    body = b'<script>document.write("<a href=\\"/x\\">")</script><a href="/y">'
    expected = b'<script>document.write("<a href=\\"/x\\">")</script><a href="/user/alice/y">'
    cut = body.index(b"</script>") + len(b"</scr")
    assert html(body, chunks=[cut]) == expected
    for cuts in ([cut - 3, cut, cut + 2], list(range(len(body)))):
        assert html(body, chunks=cuts) == expected


def test_overlong_tag_passes_unchanged_with_bounded_memory() -> None:
    """A 1 MiB attribute value: the tag is passed on as it came, and what is held between
    chunks stays under the bound instead of growing with the tag."""
    body = b'<a href="/x" title="' + b"y" * (1 << 20) + b'"><a href="/z">'
    rewriter = html_rewriter(PREFIX)
    out, most_held = [], 0
    for start in range(0, len(body), 4096):
        out.append(rewriter.feed(body[start : start + 4096]))
        most_held = max(most_held, rewriter.held)
    out.append(rewriter.end())
    assert b"".join(out) == body.replace(b'"/z"', b'"/user/alice/z"')
    assert most_held <= url_rewriter.DEFAULT_LIMIT + 4096


def test_unterminated_tag_of_many_attributes_is_read_in_linear_time() -> None:
    """A tag cut short after thousands of attributes (an unterminated quote at its end) is held
    and re-read as chunks come; a regular expression that backtracked over the ways to split its
    attributes would never return. The bound then passes it on unchanged."""
    body = b"<a " + b"b c=d e='f' " * 20_000 + b'g="/x>'
    assert html(body, chunks=list(range(0, len(body), 8192))) == body
    body = b"<script>" + b"a<b c " * 20_000  # a script not closed yet: the same for its text
    assert html(body) == body


def test_long_script_and_comment_are_streamed_not_held() -> None:
    for body in (
        b"<script>" + b"x" * 300_000 + b"</script>",
        b"<!--" + b"x" * 300_000 + b"-->",
        b"<style>" + b"a{}" * 100_000 + b"</style>",
    ):
        rewriter = html_rewriter(PREFIX)
        most_held = 0
        for start in range(0, len(body), 1000):
            rewriter.feed(body[start : start + 1000])
            most_held = max(most_held, rewriter.held)
        rewriter.end()
        assert most_held < 1000 + 300


def test_prefix_is_escaped_for_each_context() -> None:
    """A prefix with `'`, `&`, `(` or a space cannot end an attribute, a string or a `url(`."""
    prefix = "/user/o'b&c (x)/"
    assert html(b"<a href=/x>", prefix=prefix) == b"<a href=/user/o&#39;b&amp;c%20(x)/x>"
    assert (
        html(b"<style>a{b:url(/x)}</style>", prefix=prefix)
        == b"<style>a{b:url(/user/o\\'b&c%20\\(x\\)/x)}</style>"
    )
    assert (
        html(b'<a style="b:url(/x)">', prefix=prefix)
        == b'<a style="b:url(/user/o\\&#39;b&amp;c%20\\(x\\)/x)">'
    )


# -- properties -----------------------------------------------------------------------------

PIECES = [
    b'<a href="/x">',
    b"<A HREF='/y'>",
    b"<a href = /z >",
    b'<img src=/i.png srcset="/a 1x, /b 2x">',
    b"<script>",
    b"</script>",
    b"</scr",
    b"ipt>",
    b"<style>",
    b"</style>",
    b"url(/c)",
    b"url( '/d' )",
    b'@import "/e";',
    b"/* url(/f) */",
    b"<!--",
    b"-->",
    b"<!-- <a href=/g> -->",
    b"<!doctype html>",
    b"<html>",
    b"<head>",
    b"<body>",
    b"<title>",
    b"</title>",
    b"<textarea>",
    b"</textarea>",
    b"text",
    b" ",
    b"\n",
    b"<",
    b">",
    b'"',
    b"'",
    b"=",
    b"/",
    b"-",
    b"!",
    b"\\",
    b'<div style="background:url(/h)">',
    b"<![CDATA[",
    b"]]>",
    b'<meta http-equiv=refresh content="0;url=/r">',
    b'<a href="//host/x">',
    b'<a href="/P~q/already">',
    b"&amp;",
    b"&#47;x",
    b'<svg><image xlink:href="/s.svg"/></svg>',
    b'<object data="/o">',
    b'<form action=/f><button formaction="/g">',
    b"<video poster=/p>",
    b"<plaintext>",
    b"<?php ?>",
    b"</>",
    b"<!x>",
    b'<a title="x>y" href=/t>',
    b"<br/>",
    b"\xef\xbb\xbf",
    b"<a href=",
    b'"/q"',
    b"url(",
    b"<head",
    b" x=1>",
    b"<!--->",
    b"<!-->",
    "é".encode(),
    b"<a ping='/p /q'>",
    b"<script><!--<script>",
    b"</script",
    b"@import",
    b"*/",
    b"\x01",
    b"<a class=x href=/u id=y>",
]
BODIES = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)


def _cuts(body_and_cuts):
    body, cuts = body_and_cuts
    return body, [c % (len(body) + 1) for c in cuts]


BODIES_WITH_CUTS = st.tuples(BODIES, st.lists(st.integers(0, 10_000), max_size=12)).map(_cuts)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(BODIES_WITH_CUTS)
def test_html_any_chunking_gives_the_whole_body_output(body_and_cuts) -> None:
    body, cuts = body_and_cuts
    assert html(body, HEAD, cuts) == html(body, HEAD)
    assert html(body, b"", cuts) == html(body, b"")


@FAST
@given(BODIES_WITH_CUTS)
def test_css_any_chunking_gives_the_whole_body_output(body_and_cuts) -> None:
    body, cuts = body_and_cuts
    assert css(body, cuts) == css(body)


@FAST
@given(BODIES)
def test_only_the_prefix_is_inserted(body: bytes) -> None:
    """Everything but the inserted prefix stays byte for byte (a prefix absent from the input,
    so removing it gives the input back)."""
    rewriter = html_rewriter("/P~q/", b"<!--HI-->")
    out = rewriter.feed(body) + rewriter.end()
    assert out.count(b"<!--HI-->") <= 1  # none when the body ends inside a comment, say
    assert out.replace(b"<!--HI-->", b"", 1).replace(b"/P~q", b"") == body.replace(b"/P~q", b"")
    rewriter = css_rewriter("/P~q/")
    assert (rewriter.feed(body) + rewriter.end()).replace(b"/P~q", b"") == body.replace(
        b"/P~q", b""
    )


@FAST
@given(BODIES)
def test_fast_path_agrees_with_the_slow_path(body: bytes) -> None:
    """The regular expression that passes plain markup over in one go changes nothing that
    the tag-by-tag reading would have changed."""
    fast = html(body)
    saved = url_rewriter.FAST_RUN
    url_rewriter.FAST_RUN = re.compile(b"")
    try:
        assert html(body) == fast
    finally:
        url_rewriter.FAST_RUN = saved


@FAST
@given(BODIES_WITH_CUTS)
def test_tags_over_a_small_limit_pass_unchanged_whatever_the_chunking(body_and_cuts) -> None:
    """With a 24-byte bound, which tags are rewritten does not depend on whether the fast path
    met them whole or a chunk boundary cut them."""
    body, cuts = body_and_cuts
    assert html(body, b"", cuts, limit=24) == html(body, b"", limit=24)


@FAST
@given(
    st.lists(
        st.sampled_from([b"a", b"=", b'"', b"'", b" ", b"/", b">", b"x", b"\n"]), max_size=30
    ).map(b"".join)
)
def test_long_tag_follower_agrees_with_the_tag_grammar(inside: bytes) -> None:
    tag = b"<a" + inside
    match = TAG.match(tag)
    assert follow_tag(tag, 1, IN_TAG_NAME)[0] == (match.end() if match else -1)


CSS_PIECES = [
    b"url(",
    b"URL(",
    b"/x)",
    b"/",
    b"*",
    b"/*",
    b"*/",
    b'"',
    b"'",
    b"\\",
    b"\r\n",
    b"\n",
    b" ",
    b"a{b:",
    b"@import",
    b"@imports",
    b"@media",
    b"myurl(",
    b"u",
    b"ur",
    b"url(/y)",
    b"url('/z')",
    b'"/s"',
    b")",
    b"/user/alice",
    b";",
    b"&quot;",
    b"@",
    b"-",
]
CSS_BODIES = st.lists(st.sampled_from(CSS_PIECES), max_size=40).map(b"".join)


@FAST
@given(st.tuples(CSS_BODIES, st.lists(st.integers(0, 10_000), max_size=12)).map(_cuts))
def test_css_fast_path_and_chunking_agree_with_the_slow_whole_reading(body_and_cuts) -> None:
    body, cuts = body_and_cuts
    saved = css_rewriter_module._PLAIN
    css_rewriter_module._PLAIN = re.compile(b"")
    try:
        slow = css(body)
    finally:
        css_rewriter_module._PLAIN = saved
    assert css(body, cuts) == css(body) == slow


def test_roots_kept_stay_as_they_are() -> None:
    """The hub's own pages (`keep`, from rewrite_response.hub_routes) are not the app's."""
    page = (b'<a href="/hub/home"></a><a href="/hub"></a><a href="/hubble"></a>'
            b'<img src="/static/x.png"><style>i{background:url(/hub/logo)}</style>')  # fmt: skip
    rewriter = html_rewriter("/user/a/", keep=("/hub/",))
    out = rewriter.feed(page) + rewriter.end()
    assert out == page.replace(b"/hubble", b"/user/a/hubble").replace(b"/static", b"/user/a/static")
    css = css_rewriter("/user/a/", ("/jhub/",))
    assert css.feed(b"a{b:url(/jhub/x)}c{d:url(/x)}") + css.end() == (
        b"a{b:url(/jhub/x)}c{d:url(/user/a/x)}"
    )
