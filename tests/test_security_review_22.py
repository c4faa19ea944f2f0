"""The security review of --rewrite-urls (issue 22): compressed bodies that try to make the proxy
hold or burn without bound, charsets in which inserted bytes change a page's structure, prefixes
and nonces that try to end the attribute our script tag is in, odd Content-Encodings.

Real CLI and a real app (tests/apps/hostile_encoding_app.py) where the wire matters; the
decoders' own costs as units on top."""

from __future__ import annotations

import gzip
import html
import re
import socket
import sys
import zlib
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from conftest import APPS, peak_rss_kib, request
from jhsingle_native_proxy.proxy import body_decoders
from jhsingle_native_proxy.proxy import rewrite_response as rr

HOSTILE_APP = [sys.executable, str(APPS / "hostile_encoding_app.py"), "{port}"]
PAGE = b'<!DOCTYPE html><html><head><title>t</title></head><body><a href="/x">x</a></body></html>'
PAGE_ACCEPT = {"Accept": "text/html", "Accept-Encoding": "identity"}


@pytest.fixture
def hostile(start_proxy):
    return start_proxy(["--rewrite-urls"], app=HOSTILE_APP)


# -- compressed bodies: memory and CPU bounds ------------------------------------------------


def test_bytes_after_a_deflate_stream_are_dropped_not_held(hostile):
    """64 MiB after the end of a deflate stream: zlib keeps what it is given past the end in
    `unused_data`, so a decoder that goes on feeding it holds the whole tail (it did)."""
    before = peak_rss_kib(hostile.pid)
    page = hostile.get("trailing?enc=deflate&mib=64", headers=PAGE_ACCEPT, timeout=60)
    assert page.status == 200
    assert f'href="{hostile.prefix}x"'.encode() in page.body
    assert peak_rss_kib(hostile.pid) - before < 32 * 1024
    # NUL padding after a gzip member is dropped the same way, and the page still ends well.
    padded = hostile.get("trailing?enc=gzip&mib=4&fill=nul", headers=PAGE_ACCEPT)
    assert padded.status == 200 and padded.body.endswith(b"</html>")
    assert "Traceback" not in hostile.log()


def test_many_empty_gzip_members_cost_linear_time(monkeypatch):
    """A chunk of 100 000 empty gzip members: each member's end made zlib copy the rest of the
    chunk, quadratic in the chunk (about 5 s of CPU for these 2 MiB, the event loop blocked
    all that time); in 16 KiB slices it is linear. Measured in bytes handed to zlib, not time."""
    handed = []

    class Counting:
        def __init__(self, wbits):
            self._inner = zlib.decompressobj(wbits)

        def decompress(self, data, max_length=0):
            handed.append(len(data))
            return self._inner.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    monkeypatch.setattr(
        body_decoders, "zlib", SimpleNamespace(decompressobj=Counting, error=zlib.error)
    )
    empty = gzip.compress(b"", mtime=0)
    chunk = gzip.compress(b"<p>x</p>", mtime=0) + empty * ((2 << 20) // len(empty))
    decoder = body_decoders.ZlibDecoder("gzip")
    out = b"".join(decoder.decode(chunk)) + b"".join(decoder.finish())
    assert out == b"<p>x</p>"
    # Linear: each byte is handed over at most once per member of its 16 KiB slice.
    assert sum(handed) <= len(chunk) * (16 * 1024 // len(empty) + 1)


def test_members_on_the_wire_and_a_one_byte_deflate_head(hostile):
    page = hostile.get("members?mib=2", headers=PAGE_ACCEPT, timeout=60)
    assert page.status == 200 and f'href="{hostile.prefix}x"'.encode() in page.body
    # A zlib header cut after its first byte is still read as zlib, not as raw deflate.
    decoder = body_decoders.ZlibDecoder("deflate")
    data = zlib.compress(b"<a href='/x'>")
    out = b"".join(decoder.decode(data[:1])) + b"".join(decoder.decode(data[1:]))
    assert out + b"".join(decoder.finish()) == b"<a href='/x'>"


def test_a_brotli_decoder_that_cannot_bound_its_output_is_not_used(monkeypatch):
    """brotli before 1.2 has no output limit: a few KiB can hold gigabytes, so such answers
    pass unrewritten rather than decoded in one go (the 16 KiB input slices it was given
    bound nothing: brotli's ratio has no useful ceiling)."""
    brotli = pytest.importorskip("brotli")

    new_decompressor = brotli.Decompressor

    class OldDecompressor:  # brotli < 1.2's interface: process(data) only
        def __init__(self):
            self._inner = new_decompressor()

        def process(self, data):
            return self._inner.process(data)

        def is_finished(self):
            return self._inner.is_finished()

    monkeypatch.setattr(brotli, "Decompressor", OldDecompressor)
    request_ = rr.RewriteRequest("/user/a/", "GET", _Headers({}))
    answer = _Headers({"Content-Type": "text/html", "Content-Encoding": "br"})
    assert request_.plan(200, answer) is None


# -- Content-Encoding as the app writes it -----------------------------------------------------


@pytest.mark.parametrize(
    "query, expect",
    [
        ("ce=identity&body=plain", "rewritten"),
        ("ce=GZIP&body=gzip", "rewritten"),
        ("ce=gzip,%20gzip&body=gzip2", "as-is"),
        ("ce=x-unknown&body=plain", "as-is"),
        ("ce=gzip&body=plain", "cut"),
    ],
)
def test_content_encodings_as_apps_send_them(start_module_proxy, query, expect):
    proxy = _module_proxy(start_module_proxy)
    raw = _raw_get(proxy, f"{proxy.prefix}encoded?{query}")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    if expect == "cut":
        assert not body.endswith(b"0\r\n\r\n")
        proxy.wait_log("broke off the response")
        assert "Traceback" not in proxy.log()
        return
    body = _dechunked(body) if b"chunked" in head.lower() else body
    if expect == "rewritten":
        assert f'href="{proxy.prefix}x"'.encode() in body
    else:  # byte for byte, its Content-Encoding kept
        assert b"\r\ncontent-encoding: " in head.lower()
        page = gzip.decompress(gzip.decompress(body)) if "gzip2" in query else body
        assert page == PAGE


def test_head_of_a_rewritten_page_claims_no_length(hostile):
    """The GET of a rewritten page is chunked; its HEAD said `Content-Length: 0` (tornado's
    default for an answer finished without a body), which a cache may store as the page's."""
    get = hostile.get("encoded?ce=identity", headers=PAGE_ACCEPT)
    head = hostile.request("HEAD", "encoded?ce=identity", headers=PAGE_ACCEPT)
    assert get.header("Content-Length") is None and get.header("Transfer-Encoding") == "chunked"
    assert head.status == 200 and head.header("Content-Length") is None
    assert head.header("ETag") == get.header("ETag")


# -- charsets: inserted bytes must not change a page's structure -------------------------------


def _odd_prefix() -> str:
    """A prefix whose script tag has an odd length: inserted into UTF-16, it shifts every pair."""
    for prefix in ("/user/alice/", "/user/alice2/"):
        if len(rr.head_insert(prefix, "")) % 2:
            return prefix
    raise AssertionError("no odd insert")


def _browser_text(body: bytes, content_type: str) -> str:
    """The page's text as a browser decodes it (WHATWG: a BOM first, then the header's
    charset; `utf-16` names UTF-16LE; else an ASCII-compatible default)."""
    if body.startswith(b"\xff\xfe"):
        return body[2:].decode("utf-16-le", errors="replace")
    if body.startswith(b"\xfe\xff"):
        return body[2:].decode("utf-16-be", errors="replace")
    if "utf-16" in content_type.lower():
        return body.decode("utf-16-le", errors="replace")
    return body.decode("latin-1")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, list]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def _tags(text: str) -> list[tuple[str, list]]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.tags


def test_a_utf16_page_is_not_shifted_into_markup(start_proxy):
    """A viewer's text in a UTF-16 page, escaped by the app: characters U+3C00 U+6900 ... are
    not markup, but after an odd number of inserted bytes every UTF-16 pair is read one byte
    late and they become `<img src=x onerror=...>`: the rewriter would write the XSS."""
    markup = "<img src=x onerror=alert(1)>"
    # Each character's high byte is one of the markup's, its low byte 0 (U+4E00 last: its low 0
    # completes the `>`).
    shifted = "".join(chr(ord(c) << 8) for c in markup + "N")
    proxy = start_proxy(["--rewrite-urls"], app=HOSTILE_APP, prefix=_odd_prefix())
    page = proxy.get(f"utf16?charset=utf-16&q={quote(shifted)}", headers=PAGE_ACCEPT)
    assert page.status == 200
    text = _browser_text(page.body, page.header("Content-Type"))
    assert [tag for tag, _ in _tags(text)] == ["html", "head", "title", "body", "p"]
    assert shifted in text


def test_a_utf16_page_with_a_bom_keeps_its_bom(start_proxy):
    """Without a charset the BOM decides; our tag inserted before it hid it, and the page
    read as a single-byte encoding turned the viewer's CJK text (pairs of ASCII bytes) into
    markup."""
    markup = "<img src=x onerror=alert(1)>"
    paired = markup.encode("ascii").decode("utf-16-le")
    proxy = start_proxy(["--rewrite-urls"], app=HOSTILE_APP)
    page = proxy.get(f"utf16?bom=1&q={quote(paired)}", headers=PAGE_ACCEPT)
    assert page.status == 200 and page.body.startswith(b"\xff\xfe")
    text = _browser_text(page.body, page.header("Content-Type"))
    assert "img" not in [tag for tag, _ in _tags(text)]


@pytest.mark.parametrize(
    "content_type",
    ["text/html; charset=utf-16", "text/html;charset=UTF-16LE", 'text/css; charset="utf-32"',
     "text/html; charset=iso-2022-jp", "text/html; Charset=UTF-7"],
)  # fmt: skip
def test_charsets_that_are_not_ascii_compatible_pass_unrewritten(content_type):
    assert rr.rewrite_kind(content_type) == ""


@pytest.mark.parametrize(
    "content_type", ["text/html; charset=utf-8", "TEXT/HTML; charset=windows-1252", "text/css"]
)
def test_ascii_compatible_charsets_are_rewritten(content_type):
    assert rr.rewrite_kind(content_type) in ("html", "css")


# -- our script tag: nothing in it may end its attribute ----------------------------------------


def test_a_prefix_with_quotes_cannot_end_the_script_attribute(start_proxy):
    """JupyterHub escapes the prefixes it makes, but the proxy takes any: its quote must stay
    inside the `src` of our tag."""
    prefix = '/user/a"><img/src=x/onerror=alert(1)>/'
    proxy = start_proxy(["--rewrite-urls"], app=HOSTILE_APP, prefix=prefix)
    page = request(proxy.port, "GET", prefix + "csp?policy=img-src%20*", headers=PAGE_ACCEPT)
    assert page.status == 200
    tags = _tags(page.body.decode())
    assert [tag for tag, _ in tags][:2] == ["html", "head"] and "img" not in dict(tags)
    script = dict(dict(tags)["script"])
    assert script["src"].startswith(prefix + "_jhsnp/rewrite.js?v=")
    assert html.escape(prefix) in page.body.decode()


@pytest.mark.parametrize(
    "policy, nonce",
    [
        ("script-src 'nonce-abc'", "abc"),
        ("script-src 'nonce-a\"b>'", None),  # not a nonce a browser would take: no script
        ("script-src 'nonce-abc' 'self'; default-src 'none'", "abc"),
        ("script-src 'nonce-abc', script-src 'nonce-xyz'", None),  # two policies, one header
    ],
)
def test_a_nonce_cannot_break_out_of_our_tag(start_module_proxy, policy, nonce):
    proxy = _module_proxy(start_module_proxy)
    page = proxy.get(f"csp?policy={quote(policy)}", headers=PAGE_ACCEPT)
    scripts = [dict(attrs) for tag, attrs in _tags(page.body.decode()) if tag == "script"]
    if nonce is None:
        assert scripts == []
    else:
        assert scripts == [{"src": scripts[0]["src"], "nonce": nonce}]


def test_head_insert_escapes_what_it_is_given():
    tag = rr.head_insert("/user/x'\"<>&/", 'n"><b>').decode()
    assert _tags(tag) == [
        ("script", [("src", f"/user/x'\"<>&/_jhsnp/rewrite.js?v={rr.script_version()}"),
                    ("nonce", 'n"><b>')])
    ]  # fmt: skip


# -- helpers -----------------------------------------------------------------------------------


class _Headers(dict):
    def getall(self, name, default=None):
        return [self[name]] if name in self else (default or [])


def _module_proxy(start_module_proxy):
    if not start_module_proxy.started:
        start_module_proxy(["--rewrite-urls"], app=HOSTILE_APP)
    return start_module_proxy.started[0]


def _raw_get(proxy, path: str) -> bytes:
    """One request on a socket of our own, read to its end (or to the proxy's cut)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n"
            "Accept-Encoding: identity\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _dechunked(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        match = re.match(rb"([0-9a-fA-F]+)\r\n", body[pos:])
        size = int(match.group(1), 16)
        if size == 0:
            return out
        start = pos + match.end()
        out += body[start : start + size]
        pos = start + size + 2
