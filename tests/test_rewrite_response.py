"""--rewrite-urls' response side as pure functions (proxy/rewrite_response.py): which answers
are rewritten, their encodings, ETag and If-None-Match, and the CSP nonce. The whole path, with
real apps and Chromium, is tests/test_rewrite_urls.py."""

from __future__ import annotations

import gzip
import importlib.util
import logging
import zlib

import pytest
from multidict import CIMultiDict

from jhsingle_native_proxy.hub_environment import HubSettings
from jhsingle_native_proxy.proxy import body_decoders
from jhsingle_native_proxy.proxy import rewrite_response as rr

PREFIX = "/user/alice/"


def test_only_html_and_css_are_rewritten():
    assert rr.rewrite_kind("text/html; charset=utf-8") == "html"
    assert rr.rewrite_kind("TEXT/HTML") == "html"
    assert rr.rewrite_kind("text/css") == "css"
    for other in ("application/json", "text/javascript", "text/plain", "image/svg+xml",
                  "application/xhtml+xml", "text/event-stream", "", None):  # fmt: skip
        assert rr.rewrite_kind(other) == "", other


def test_gzip_acceptance_follows_q_values():
    assert rr.accepts_gzip("gzip, deflate, br, zstd")
    assert rr.accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert rr.accepts_gzip("*")
    assert not rr.accepts_gzip("gzip;q=0, *")
    assert not rr.accepts_gzip("br")
    assert not rr.accepts_gzip("")
    assert not rr.accepts_gzip("*;q=0")


def test_identity_is_asked_only_for_pages_and_stylesheets():
    navigation = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert rr.may_be_rewritten("GET", navigation)
    assert rr.may_be_rewritten("GET", "text/css,*/*;q=0.1")
    assert rr.may_be_rewritten("HEAD", navigation)
    assert not rr.may_be_rewritten("POST", navigation)
    assert not rr.may_be_rewritten("GET", "*/*")  # fetch, XHR, scripts, images
    assert not rr.may_be_rewritten("GET", "text/html;q=0")


def test_our_etag_is_weak_and_the_app_gets_its_own_back():
    suffix = "-jhsnp" + rr.script_version()
    for app_tag in ('"abc"', 'W/"abc"', '""'):
        ours = rr.our_etag(app_tag, suffix)
        assert ours.startswith('W/"') and ours != app_tag
        forwarded, stripped = rr.app_if_none_match(ours, suffix)
        assert forwarded == app_tag and stripped == {app_tag}
    assert rr.our_etag("not quoted", suffix) is None
    # Another resource's tag, and one from an older script, go to the app as they are.
    old = 'W/"abc-jhsnp000000000000s"'
    forwarded, stripped = rr.app_if_none_match(
        f'"js1", {old}, {rr.our_etag(chr(34) + "p" + chr(34), suffix)}', suffix
    )
    assert forwarded == f'"js1", {old}, "p"'
    assert stripped == {'"p"'}
    assert rr.app_if_none_match("*", suffix) == ("*", frozenset())


@pytest.mark.parametrize(
    "policies, expected",
    [
        ([], (True, "")),
        (["frame-ancestors 'self'"], (True, "")),
        (["script-src 'nonce-abc' 'strict-dynamic'"], (True, "abc")),
        (["default-src 'self'; script-src 'self' 'nonce-x+/Y='"], (True, "x+/Y=")),
        (["default-src 'self'"], (True, "")),
        (["script-src 'self' https://cdn.example"], (True, "")),
        (["script-src 'sha256-AAAA'"], (False, "")),
        (["script-src 'none'"], (False, "")),
        (["script-src 'self' 'strict-dynamic'"], (False, "")),  # 'self' ignored
        (["default-src 'none'; script-src-elem 'nonce-q'"], (True, "q")),
        (["script-src 'nonce-a'", "script-src 'nonce-b'"], (False, "")),
        (["script-src 'nonce-a'", "default-src 'self'"], (True, "a")),
        (["script-src 'nonce-\"><x'"], (False, "")),  # not a nonce we would write
    ],
)
def test_nonce_and_whether_our_script_may_run(policies, expected):
    assert rr.script_nonce(policies) == expected


def test_the_script_tag_carries_the_nonce_and_the_version():
    tag = rr.head_insert(PREFIX, "abc").decode()
    assert tag == (
        f'<script src="{PREFIX}_jhsnp/rewrite.js?v={rr.script_version()}" nonce="abc"></script>'
    )
    assert "nonce" not in rr.head_insert(PREFIX, "").decode()


def _headers(**values: str) -> CIMultiDict:
    return CIMultiDict((name.replace("_", "-"), value) for name, value in values.items())


def _client(**values: str) -> CIMultiDict:
    return _headers(**values)


def test_request_headers_for_the_app():
    page = rr.RewriteRequest(PREFIX, "GET", _client(Accept="text/html", Accept_Encoding="gzip"))
    sent = page.app_headers([("Accept", "text/html"), ("Accept-Encoding", "gzip, br"),
                             ("If-None-Match", rr.our_etag('"t"', page.suffix))])  # fmt: skip
    assert sent == [("Accept", "text/html"), ("If-None-Match", '"t"'),
                    ("Accept-Encoding", "identity")]  # fmt: skip
    script = rr.RewriteRequest(PREFIX, "GET", _client(Accept="*/*"))
    assert script.app_headers([("Accept-Encoding", "br")]) == [("Accept-Encoding", "br")]


def test_a_rewritten_answer_loses_its_length_and_gets_our_etag():
    request = rr.RewriteRequest(PREFIX, "GET", _client(Accept_Encoding="gzip"))
    app = _headers(Content_Type="text/html", Content_Length="12", ETag='"e1"',
                   Accept_Ranges="bytes", Vary="Cookie", X_Other="1")  # fmt: skip
    pairs, body = request.response_headers(200, app)
    names = [n.lower() for n, _ in pairs]
    assert body is not None and body.gzip
    assert "content-length" not in names and "accept-ranges" not in names
    assert ("Content-Encoding", "gzip") in pairs
    assert ("ETag", rr.our_etag('"e1"', request.suffix)) in pairs
    assert ("Vary", "Accept-Encoding") in pairs and ("X-Other", "1") in pairs
    # Not HTML or CSS, a range, a 304 that validates another resource: as they are.
    for status, headers in ((200, _headers(Content_Type="application/json", ETag='"j"')),
                            (206, _headers(Content_Type="text/html", ETag='"e1"')),
                            (304, _headers(ETag='"e1"'))):  # fmt: skip
        pairs, body = request.response_headers(status, headers)
        assert body is None and pairs == list(headers.items())


def test_a_304_for_a_rewritten_page_keeps_our_etag():
    request = rr.RewriteRequest(PREFIX, "GET", _client())
    ours = rr.our_etag('"e1"', request.suffix)
    request.app_headers([("If-None-Match", ours)])
    pairs, body = request.response_headers(304, _headers(ETag='"e1"'))
    assert body is None and pairs == [("ETag", ours)]


def test_an_encoding_we_cannot_decode_passes_unrewritten_with_one_warning(caplog):
    request = rr.RewriteRequest(PREFIX, "GET", _client())
    rr._warned_encodings.discard("compress")
    app = _headers(Content_Type="text/html", Content_Encoding="compress", Content_Length="3")
    with caplog.at_level(logging.WARNING, "jhsingle_native_proxy"):
        for _ in range(3):
            pairs, body = request.response_headers(200, app)
            assert body is None and pairs == list(app.items())
    assert len([r for r in caplog.records if "compress" in r.getMessage()]) == 1


PAGE = b"<html><head><title>t</title></head><body>" + b"<p>x</p>" * 20000 + b"</body></html>"


def _through(body: rr.BodyRewrite, data: bytes, chunk: int) -> list[bytes]:
    out = []
    for start in range(0, len(data), chunk):
        out.extend(body.feed(data[start : start + chunk]))
    out.append(body.end())
    return out


@pytest.mark.parametrize("client_gzip", [True, False])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", ""])
def test_decoded_and_encoded_in_bounded_pieces(encoding, client_gzip):
    if encoding == "gzip":
        sent = gzip.compress(PAGE[:1000]) + gzip.compress(PAGE[1000:])  # two members
    elif encoding == "deflate":
        sent = zlib.compress(PAGE)
    elif encoding == "raw-deflate":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        sent = compressor.compress(PAGE) + compressor.flush()
    else:
        sent = PAGE
    header = "deflate" if encoding == "raw-deflate" else encoding
    request = rr.RewriteRequest(
        PREFIX, "GET", _client(Accept_Encoding="gzip" if client_gzip else "")
    )
    _, body = request.response_headers(
        200, _headers(Content_Type="text/html", Content_Encoding=header)
    )
    pieces = _through(body, sent, 777)
    assert max(map(len, pieces)) <= body_decoders.DECODED_PIECE + 64
    joined = b"".join(pieces)
    expected = PAGE.replace(b"<head>", b"<head>" + rr.head_insert(PREFIX, ""))
    assert (gzip.decompress(joined) if client_gzip else joined) == expected


def test_a_decompression_bomb_comes_out_in_bounded_pieces():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB from about 64 KiB
    decoder = body_decoders.decoder_for("gzip")
    sizes = [len(p) for p in decoder.decode(bomb)]
    assert sum(sizes) == 64 * 1024 * 1024 and max(sizes) <= body_decoders.DECODED_PIECE


@pytest.mark.parametrize("broken", ["corrupt", "truncated"])
def test_a_broken_compressed_body_is_an_error_not_a_loop(broken):
    sent = gzip.compress(PAGE)
    sent = sent[:10] + b"\xff" * 50 + sent[60:] if broken == "corrupt" else sent[: len(sent) // 2]
    request = rr.RewriteRequest(PREFIX, "GET", _client())
    _, body = request.response_headers(
        200, _headers(Content_Type="text/css", Content_Encoding="gzip")
    )
    with pytest.raises(body_decoders.BodyDecodeError):
        _through(body, sent, 4096)


@pytest.mark.skipif(importlib.util.find_spec("brotli") is None, reason="no brotli decoder")
def test_brotli_is_decoded():
    import brotli

    request = rr.RewriteRequest(PREFIX, "GET", _client())
    _, body = request.response_headers(
        200, _headers(Content_Type="text/css", Content_Encoding="br")
    )
    bomb = brotli.compress(b"a" * (32 * 1024 * 1024))
    pieces = _through(body, bomb, 1000)
    # brotli stops growing its buffer once past the limit: within twice the bound.
    assert (
        max(map(len, pieces)) <= 2 * body_decoders.DECODED_PIECE
        and sum(map(len, pieces)) == 32 << 20
    )
    _, body = request.response_headers(
        200, _headers(Content_Type="text/css", Content_Encoding="br")
    )
    with pytest.raises(body_decoders.BodyDecodeError):
        _through(body, brotli.compress(PAGE)[:-20], 1000)


def test_hub_routes_are_the_hubs_pages_on_this_origin() -> None:
    api = "http://127.0.0.1:8081/hub/api"
    assert rr.hub_routes(HubSettings()) == ()  # no hub
    assert rr.hub_routes(HubSettings(api_url=api)) == ("/hub/",)
    # Under another base URL, all of it is the hub's: an app writing /jhub/... knows the hub.
    assert rr.hub_routes(HubSettings(api_url=api, base_url="/jhub/")) == ("/jhub/",)
    # Subdomains: this server's origin is its own, the hub is elsewhere.
    own = HubSettings(api_url=api, oauth_callback_url="https://alice.hub.example/oauth_callback")
    assert rr.hub_routes(own) == ()
