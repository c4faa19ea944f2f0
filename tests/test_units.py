"""Pure logic, tested on its own: templates, header hygiene, redirects, singleuser flags,
repository URLs, building Settings."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from jhsingle_native_proxy import command, repo_url
from jhsingle_native_proxy import http_hygiene as h
from jhsingle_native_proxy.singleuser_flags import split_singleuser_traits


def test_substitute_fills_known_names_and_literal_braces():
    values = {"port": 9000, "base_url": "/user/a"}
    assert command.substitute_all(
        ["--port={port}", "{base_url}/", "{--}x", "{-}m", "{{json}}"], values
    ) == ["--port=9000", "/user/a/", "--x", "-m", "{json}"]


@pytest.mark.parametrize("bad", ["{prot}", "{port", "port}", "{a:b}"])
def test_placeholders_reject_typos_and_unbalanced_braces(bad):
    with pytest.raises(command.TemplateError):
        command.placeholders([bad])


def test_placeholders_lists_what_a_command_uses():
    assert command.placeholders(["x", "{port}", "{origin_host}:{port}", "{--}y"]) == {
        "port",
        "origin_host",
    }


ANGLE_VALUES = {"port": 9000, "base_url": "/user/a", "presentation_path": "/srv/<port>.py"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<port>", "9000"),
        ("--server.port=<port>", "--server.port=9000"),
        ("<base_url>/x<port>y", "/user/a/x9000y"),
        ("<-->server.port", "--server.port"),
        ("<->m", "-m"),
        ("<<port>>", "<9000>"),
        ("{{<port>}}", "{9000}"),
        ("<{port}>", "<9000>"),
        # A value is text: a path holding `<port>` is not filled in again.
        ("<presentation_path>", "/srv/<port>.py"),
        # Other angle brackets are the app's text.
        ("<b>bold</b>", "<b>bold</b>"),
        ("<3", "<3"),
        ("a<port", "a<port"),
        ("port>", "port>"),
        ("<unknown>", "<unknown>"),
        ("<PORT>", "<PORT>"),
        ("<port >", "<port >"),
        ("<--->", "<--->"),
        ("<>", "<>"),
    ],
)
def test_angle_brackets_spell_the_known_placeholders_only(text, expected):
    assert command.substitute(text, ANGLE_VALUES) == expected


def test_angle_placeholders_are_checked_and_listed_like_braces():
    used = ["<port>", "<origin_host>:<port>", "<-->y", "<b>", "<unknown>", "<3"]
    assert command.placeholders(used) == {"port", "origin_host"}
    assert command.spell_dashes("<-->server.port=<port>") == "--server.port={port}"
    # Only braces can misspell a placeholder: an unknown name in angle brackets is text.
    with pytest.raises(command.TemplateError, match="unknown placeholder"):
        command.placeholders(["{unknown}"])


def test_singleuser_traits_are_taken_out_and_app_options_kept():
    rest, traits = split_singleuser_traits(
        [
            "--SingleUserNotebookApp.default_url=/x",
            "streamlit",
            "--server.port",
            "1",
            "--ServerApp.root_dir",
            "/home/a",
            "--NotebookApp.allow_origin=*",
            "--NotebookApp.allow_origin",
        ]
    )
    # 0.8.3's bare boolean flag stays for click; the trait with a value is singleuser's.
    assert rest == ["streamlit", "--server.port", "1", "--NotebookApp.allow_origin"]
    assert traits == {
        "SingleUserNotebookApp.default_url": "/x",
        "ServerApp.root_dir": "/home/a",
        "NotebookApp.allow_origin": "*",
    }


def test_identity_header_is_dropped_in_every_spelling():
    pairs = [
        ("X-CDSDASHBOARDS-JH-USER", "a"),
        ("x_cdsdashboards_jh_user", "b"),
        ("X-Cdsdashboards-Jh_User", "c"),
        ("Accept", "*/*"),
    ]
    out = h.request_headers_for_app(
        pairs, [], client_ip="1.2.3.4", protocol="http", host="h", prefix="/p"
    )
    assert [n for n, _ in out if "cdsdashboards" in n.lower().replace("_", "-")] == []


@pytest.mark.parametrize(
    "query, expected",
    [
        ("a=1&CDSDASHBOARDS_JH_USER=x&b=%2F", "a=1&b=%2F"),
        ("cdsdashboards-jh-user=x", ""),
        ("CDSDASHBOARDS%5FJH%5FUSER=x&flag", "flag"),
        ("a=1&a=2&flag", "a=1&a=2&flag"),
        # `;` separates arguments for some parsers: the forged pair must go there too.
        ("a=1;CDSDASHBOARDS_JH_USER=x", "a=1"),
        ("CDSDASHBOARDS_JH_USER=x;a=1&b=2", "a=1&b=2"),
        ("a=1;b=2&c=3", "a=1;b=2&c=3"),
    ],
)
def test_identity_query_argument_is_dropped_in_every_spelling(query, expected):
    assert h.strip_query_arg(query) == expected


@pytest.mark.parametrize(
    "location, expected",
    [
        ("/x", "/user/a/x"),
        ("/user/a", "/user/a"),
        ("/user/a/x?y", "/user/a/x?y"),
        ("/user/ab", "/user/a/user/ab"),
        ("//cdn.example.org/x", "/user/a//cdn.example.org/x"),
        ("x/y", "x/y"),
        ("http://127.0.0.1:5000/z?q#f", "/user/a/z?q#f"),
        ("http://localhost:5000", "/user/a/"),
        ("http://127.0.0.1:5001/z", "http://127.0.0.1:5001/z"),
        ("https://example.org/z", "https://example.org/z"),
    ],
)
def test_rewrite_location(location, expected):
    assert h.rewrite_location(location, "/user/a", 5000) == expected


def test_rewrite_location_at_the_root_prefix_changes_nothing():
    assert h.rewrite_location("/x", "", 5000) == "/x"


@pytest.mark.parametrize(
    "location",
    [
        "//evil.example/x",
        "/\\evil.example/x",
        "\\\\evil.example/x",
        "/\t/evil.example/x",
        " //evil.example/x",
        "///evil.example/x",
        "http://127.0.0.1:5000//evil.example/x",
    ],
)
@pytest.mark.parametrize("base_url", ["/user/a", ""])
def test_a_redirect_meant_as_a_path_never_leaves_the_origin(location, base_url):
    """What a browser would read as another host stays a path on ours (issue 9, finding 3)."""
    from urllib.parse import urljoin

    rewritten = h.rewrite_location(location, base_url, 5000)
    # Browsers drop tabs and newlines and treat a backslash as a slash; so does this check.
    as_browser = rewritten.replace("\t", "").replace("\\", "/")
    landed = urljoin("https://hub.example.org/user/a/page", as_browser)
    assert landed.startswith("https://hub.example.org/"), rewritten
    assert "evil.example" in rewritten


@pytest.mark.parametrize(
    "host, expected",
    [
        ("example.org", ("example.org", None)),
        ("Example.ORG:8443", ("example.org", 8443)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8888", ("::1", 8888)),
        ("[::1]", ("::1", None)),
        ("my_host.local.", ("my_host.local", None)),
        ("x;touch$IFS'f'", None),
        ("x y", None),
        ("a.b:99999", None),
        ("a.b:", None),
        ("[zz::1]", None),
        ("$(id)", None),
        ("", None),
        ("a..b", None),
    ],
)
def test_split_host_accepts_only_host_and_port(host, expected):
    assert h.split_host(host) == expected


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("/p?token=abc&x=1", "/p?token=[secret]&x=1"),
        ("/p?x=1&TOKEN=abc", "/p?x=1&TOKEN=[secret]"),
        ("/oauth_callback?code=c1&state=s1", "/oauth_callback?code=[secret]&state=[secret]"),
        ("/p?x=1;access_token=abc", "/p?x=1;access_token=[secret]"),
        ("/p?mytoken=keep", "/p?mytoken=keep"),
        ("/p/token=path", "/p/token=path"),
        ("/p?%74oken=abc&x=1", "/p?%74oken=[secret]&x=1"),
        ("/p?x=1#token=abc", "/p?x=1#token=abc"),
        ("/p?_XSRF=abc", "/p?_XSRF=[secret]"),
    ],
)
def test_scrub_uri_hides_credentials(uri, expected):
    assert h.scrub_uri(uri) == expected


def _headers(**kw):
    return {k.replace("_", "-"): v for k, v in kw.items()}


@pytest.mark.parametrize(
    "method, headers, websocket, expected",
    [
        ("GET", {}, False, True),  # curl, requests, wget
        ("HEAD", {}, False, True),
        ("GET", {"Accept": "text/html"}, False, True),
        ("GET", {"Accept": "*/*"}, False, True),
        ("GET", {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, False, True),
        ("GET", {"Sec-Fetch-Mode": "cors"}, False, False),  # a page's fetch()
        ("GET", {"Sec-Fetch-Mode": "no-cors"}, False, False),  # an <img>
        ("GET", {"X-Requested-With": "XMLHttpRequest"}, False, False),
        ("GET", {"Accept": "application/json"}, False, False),
        ("GET", {"Accept": "application/json, text/html"}, False, True),
        ("GET", {}, True, False),  # a websocket
        ("POST", {}, False, False),
        ("DELETE", {"Accept": "text/html"}, False, False),
    ],
)
def test_login_redirect_rule(method, headers, websocket, expected):
    from jhsingle_native_proxy.auth import login_redirect_allowed

    assert login_redirect_allowed(method, headers, websocket=websocket) is expected


@pytest.mark.parametrize(
    "method, headers, refused",
    [
        ("GET", {}, False),
        ("GET", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, False),
        ("GET", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, True),
        ("GET", {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}, True),
        ("HEAD", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, True),
        ("GET", {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors"}, False),
        ("GET", {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, False),
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, True),
        ("POST", {}, False),
    ],
)
def test_forgery_rules_for_reads_and_writes(method, headers, refused):
    from jhsingle_native_proxy.auth import forgery_reason

    headers = {"Host": "hub.example.org", **headers}
    assert (forgery_reason(method, headers, "/user/a/") is not None) is refused


@pytest.mark.parametrize(
    "headers, status",
    [
        (
            {
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            None,
        ),
        (
            {
                "Connection": "keep-alive, Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            None,
        ),
        (
            {
                "Connection": "close",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            400,
        ),
        (
            {
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "8",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            426,
        ),
        ({"Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400),
        (
            {
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "not base64!",
            },
            400,
        ),
        (
            {
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "c2hvcnQ=",
            },
            400,
        ),
    ],
)
def test_websocket_handshake_is_checked_before_the_app_is_contacted(headers, status):
    """A handshake that tornado would refuse must be refused before the app's side opens."""
    from jhsingle_native_proxy.proxy.websocket import handshake_problem

    problem = handshake_problem({"Host": "h", **headers})
    assert (problem[0] if problem else None) == status
    if status is None:  # HTTP/1.0 allows a request without Host; tornado refuses the handshake
        assert handshake_problem(headers) == (400, "a websocket handshake needs a Host header")


@pytest.mark.parametrize(
    "ip, allow, host, expected",
    [
        ("127.0.0.1", (), "localhost", True),
        ("127.0.0.1", (), "127.0.0.5", True),
        ("127.0.0.1", (), "app.localhost", True),
        ("127.0.0.1", (), "::1", True),
        ("127.0.0.1", (), "evil.example", False),
        ("127.0.0.1", ("box.lan",), "box.lan", True),
        ("127.0.0.1", ("*",), "evil.example", True),
        ("0.0.0.0", (), "my-container", True),
        # Names listed: on a wildcard address too, only they (and addresses) are answered.
        ("0.0.0.0", ("box.lan",), "box.lan", True),
        ("0.0.0.0", ("box.lan",), "evil.example", False),
        ("0.0.0.0", ("box.lan",), "10.1.2.3", True),
        ("0.0.0.0", ("box.lan",), "localhost", True),
        ("10.1.2.3", (), "10.1.2.3", True),
    ],
)
def test_host_names_accepted_without_auth(ip, allow, host, expected):
    from jhsingle_native_proxy.settings import Settings

    settings = Settings(command=("x",), ip=ip, allow_hosts=allow, authtype="none")
    assert settings.host_allowed(host) is expected


def test_connection_listed_headers_are_hop_by_hop_in_responses():
    out = h.response_headers_for_client(
        [("Connection", "X-A"), ("X-A", "1"), ("Set-Cookie", "a"), ("Set-Cookie", "b")],
        ["X-A"],
    )
    assert out == [("Set-Cookie", "a"), ("Set-Cookie", "b")]


def test_page_scripts_are_valid_javascript(tmp_path):
    """A broken script leaves a person on a page that never moves on: have node parse it."""
    import re
    import shutil
    import subprocess

    from jhsingle_native_proxy import pages

    node = shutil.which("node")
    assert node, "node is needed (it comes with configurable-http-proxy)"
    page = pages.loading_page("/user/a/_jhsnp/status", "Getting x", ["a", "b"], "crashed")
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    path = tmp_path / "page.js"
    path.write_text(script)
    result = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _hub_oauth(base_url: str):
    from jhsingle_native_proxy.login_state import StatelessHubOAuth

    auth = StatelessHubOAuth(
        api_token="t" * 32,
        api_url="http://127.0.0.1:1/hub/api",
        oauth_client_id="jupyterhub-user-alice",
        base_url=base_url,
        hub_prefix="/hub/",
    )
    auth.verifier_secret = b"s" * 32
    return auth


@pytest.mark.parametrize("base_url", ["/user/alice/", "/"])
def test_login_state_keeps_its_data_in_itself_and_only_safe_return_addresses(base_url):
    import base64
    import json

    auth = _hub_oauth(base_url)
    verifier, challenge, _ = auth.generate_pkce_code_challenge()
    state = auth.generate_state(base_url + "page?x=1", code_verifier=verifier, cookie_name=None)
    assert auth.get_next_url(state) == base_url + "page?x=1"
    assert auth.get_code_verifier(state) == verifier
    assert auth.get_state_cookie_name(state) == auth.state_cookie_name
    # The verifier is not in the state, and cannot be made from it without the secret.
    assert (
        verifier not in state
        and verifier[32:] not in base64.urlsafe_b64decode(state.split(".")[1] + "==").decode()
    )
    # Addresses a browser would take off our origin, or too long, or outside the prefix.
    for bad in ("//evil.example", "/\\evil.example/", base_url + "x" * 3000, "/hub/admin"):
        if bad == "/hub/admin" and base_url == "/":
            continue  # at the root prefix every path is ours
        assert auth.get_next_url(auth.generate_state(bad)) == base_url, bad
        forged = "n." + base64.urlsafe_b64encode(json.dumps({"n": bad}).encode()).decode()
        assert auth.get_next_url(forged) == base_url, bad
    assert auth.get_next_url("garbage") == base_url
    assert auth.get_code_verifier("garbage") is None


# Websocket frame headers (proxy/frames.py): the relay reads nothing else of a frame.


def _frame_head(opcode: int, n: int, *, fin: bool = True, rsv: int = 0, key: bytes | None = None):
    """A frame header as RFC 6455 5.2 lays it out, written independently of frames.py."""
    import struct

    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if key is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    return head + (key or b"")


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 2**32, 2**63 - 1])
@pytest.mark.parametrize("key", [None, b"\x01\x02\x03\x04"])
def test_frame_header_lengths_in_all_three_encodings(n, key):
    from jhsingle_native_proxy.proxy import frames

    head = _frame_head(frames.BINARY, n, key=key)
    parsed = frames.parse_header(b"junk" + head + b"payload", 4)
    assert parsed == frames.Header(True, 0, frames.BINARY, key is not None, n, len(head))
    # Any shorter prefix is "not all there yet", never a wrong header.
    for cut in range(len(head)):
        assert frames.parse_header(head[:cut]) is None


def test_frame_header_flags():
    from jhsingle_native_proxy.proxy import frames

    parsed = frames.parse_header(_frame_head(frames.CONTINUATION, 5, fin=False, rsv=5))
    assert (parsed.fin, parsed.rsv, parsed.opcode) == (False, 5, frames.CONTINUATION)


@pytest.mark.parametrize(
    "sequence, masked, limit, error",
    [
        ([(1, 10, True)], True, 100, None),
        ([(2, 60, False), (9, 4, True), (0, 40, True)], True, 100, None),  # a ping in between
        ([(2, 60, False), (0, 41, True)], True, 100, 1009),  # fragments add up
        ([(2, 101, True)], True, 100, 1009),
        ([(2, 2**62, True)], True, None, None),  # no limit
        ([(1, 10, True)], False, 100, 1002),  # a client must mask
        ([(0, 10, True)], True, 100, 1002),  # continuation without a start
        ([(1, 1, False), (2, 1, True)], True, 100, 1002),  # a new message inside one
        ([(3, 1, True)], True, 100, 1002),  # reserved opcode
        ([(9, 126, True)], True, 1000, 1002),  # control frame over 125 bytes
        ([(10, 1, False)], True, 100, 1002),  # fragmented control frame
    ],
)
def test_message_tracker_enforces_the_rules_a_header_shows(sequence, masked, limit, error):
    from jhsingle_native_proxy.proxy import frames

    tracker = frames.MessageTracker(masked=True, limit=limit)
    key = b"abcd" if masked else None
    raised = None
    try:
        for opcode, n, fin in sequence:
            tracker.check(frames.parse_header(_frame_head(opcode, n, fin=fin, key=key)))
    except frames.FrameError as e:
        raised = e.code
    assert raised == error


def test_reserved_bits_are_refused_without_extensions():
    from jhsingle_native_proxy.proxy import frames

    tracker = frames.MessageTracker(masked=False, limit=None)
    with pytest.raises(frames.FrameError) as e:
        tracker.check(frames.parse_header(_frame_head(frames.TEXT, 3, rsv=4)))
    assert e.value.code == 1002


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"", (1000, "")),
        (b"\x0f\xa1bye \xe2\x9c\x93", (4001, "bye ✓")),
        (b"\x03\xe8", (1000, "")),
        (b"\x03", 1002),  # one byte
        (b"\x03\xe7", 1002),  # 999
        (b"\x03\xed", 1002),  # 1005: "no status", never sent
        (b"\x13\x88", 1002),  # 5000
        (b"\x03\xe8\xff", 1007),  # reason not UTF-8
    ],
)
def test_close_frames_are_read_and_checked(mask, payload, expected):
    from jhsingle_native_proxy.proxy import frames

    key = b"\x9a\x01\x7f\x33" if mask else None
    body = frames.unmask(payload, key) if key else payload
    frame = _frame_head(frames.CLOSE, len(payload), key=key) + body
    header = frames.parse_header(frame)
    if isinstance(expected, int):
        with pytest.raises(frames.FrameError) as e:
            frames.read_close(header, frame)
        assert e.value.code == expected
    else:
        assert frames.read_close(header, frame) == expected


@pytest.mark.parametrize("mask", [False, True])
def test_frames_of_our_own_read_back(mask):
    from jhsingle_native_proxy.proxy import frames

    reason = "é" * 100  # over 123 bytes: cut at a character boundary
    frame = frames.close_frame(4000, reason, mask=mask)
    header = frames.parse_header(frame)
    assert header.masked is mask and header.size + header.length == len(frame)
    code, got = frames.read_close(header, frame)
    assert code == 4000 and reason.startswith(got) and len(got.encode()) in (122, 123)
    ping = frames.build_frame(frames.PING, mask=mask)
    assert frames.parse_header(ping) == frames.Header(True, 0, frames.PING, mask, 0, len(ping))


# --- repository URLs (repo_url: no GitPython needed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://alice:s3cr3t@host/x.git", "https://***@host/x.git"),
        ("https://ghp_TOKEN123@github.com/o/r", "https://***@github.com/o/r"),
        (
            "fatal: unable to access 'http://u:p@127.0.0.1:1/x.git/': refused",
            "fatal: unable to access 'http://***@127.0.0.1:1/x.git/': refused",
        ),
        ("a https://x:y@h1/a and ssh://git@h2/b", "a https://***@h1/a and ssh://***@h2/b"),
        ("https://user:p@ss@host/r", "https://***@host/r"),
    ],
)
def test_redact_removes_credentials_from_urls(text, expected):
    assert repo_url.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    ["https://github.com/o/r.git", "git@github.com:o/r.git", "mail me at bob@example.com", ""],
)
def test_redact_leaves_text_without_credentials_alone(text):
    assert repo_url.redact(text) == text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cr3t@host/x.git", "https://host/x.git"),
        ("https://TOKEN@host/x.git", "https://host/x.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ],
)
def test_without_credentials_drops_the_user_info_of_a_url(url, expected):
    assert repo_url.without_credentials(url) == expected


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("https://alice:s3cr3t@host/x.git", ["s3cr3t"]),
        ("https://ghp_TOKEN123@host/x.git", ["ghp_TOKEN123"]),
        ("https://alice:p%40ss%2Fw0rd@host/x.git", ["p%40ss%2Fw0rd", "p@ss/w0rd"]),
        ("ssh://git@host/x.git", []),  # too short to be worth hiding everywhere
        ("https://host/x.git", []),
    ],
)
def test_url_secrets_are_the_password_else_the_user_name_raw_and_decoded(url, secrets):
    assert repo_url.url_secrets(url) == secrets


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com/org/dashboard.git", "dashboard"),
        ("https://alice:tok@github.com/org/dashboard.git/", "dashboard"),
        ("https://github.com/org/dashboard", "dashboard"),
        ("git@github.com:org/dashboard.git", "dashboard"),
        ("file:///srv/repos/dashboard.git", "dashboard"),
        ("/srv/repos/dashboard/", "dashboard"),
        ("https://example.com/", "example.com"),
    ],
)
def test_default_folder_is_the_repository_name_in_base(url, name):
    assert repo_url.default_folder(url, "/home/jovyan") == os.path.join("/home/jovyan", name)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/o/r.git", "https://GitHub.com/o/r/"),
        ("https://alice:tok@github.com/o/r", "HTTPS://github.com/o/r.git"),
        ("file:///srv/r.git", "/srv/r"),
        ("git@github.com:o/r.git", "github.com:o/r"),
    ],
)
def test_normalise_tells_the_same_repository_apart_from_its_spellings(a, b):
    assert repo_url.normalise(a) == repo_url.normalise(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/o/r.git", "https://github.com/o/other.git"),
        ("https://github.com/o/r.git", "https://gitlab.com/o/r.git"),
    ],
)
def test_normalise_keeps_different_repositories_apart(a, b):
    assert repo_url.normalise(a) != repo_url.normalise(b)


def test_settings_and_repo_urls_import_neither_gitpython_nor_change_its_logging():
    code = (
        "import logging, sys\n"
        "import jhsingle_native_proxy.settings, jhsingle_native_proxy.repo_url\n"
        "assert 'git' not in sys.modules, 'GitPython imported'\n"
        "import jhsingle_native_proxy.checkout\n"
        "assert not logging.getLogger('git.cmd').filters, 'a filter added on import'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- building Settings


def test_build_settings_refuses_an_option_it_does_not_know():
    from jhsingle_native_proxy.settings import UnknownSettingError, build_settings

    options = {"authtype": "none", "ready_timout": 99}
    with pytest.raises(UnknownSettingError, match="'ready_timout'.*did you mean 'ready_timeout'"):
        build_settings(options, ["x"], {})


def test_build_settings_refuses_an_option_for_a_field_it_works_out_itself():
    from jhsingle_native_proxy.settings import UnknownSettingError, build_settings

    with pytest.raises(UnknownSettingError, match="'prefix'.*works it out itself"):
        build_settings({"authtype": "none", "prefix": "/x/"}, ["x"], {})


def test_build_settings_takes_every_option_by_its_field_name():
    from jhsingle_native_proxy.settings import build_settings

    options = {"authtype": "none", "ready_timeout": 42.0, "destport": 9, "port": None}
    settings = build_settings(options, ["x"], {})
    assert (settings.ready_timeout, settings.destport, settings.port) == (42.0, 9, 8888)


def test_every_command_line_option_is_a_setting_with_the_same_default():
    """click declares the options; Settings must have each one, under the same name, with the
    same default (for a Settings built directly, as the tests do)."""
    from jhsingle_native_proxy.cli import _command
    from jhsingle_native_proxy.settings import DERIVED_FIELDS, OPTION_NAMES, Settings

    # Consumed by the command line itself (parse_args), or the app's command.
    cli_only = {
        *("config_file", "server_name", "list_servers", "disable_user_config", "command"),
        *("app", "list_apps"),  # steer the command line, as --config does (presets.py)
    }
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    names = set()
    # Publish mode's options are the fields of one Settings.publish (publish_options.py).
    from jhsingle_native_proxy.publish_options import OPTION_KEYS, PublishSettings
    from jhsingle_native_proxy.sleep_options import SleepSettings

    publish = PublishSettings()
    from jhsingle_native_proxy.monitoring_options import MonitoringSettings

    monitoring_fields = {f.name for f in dataclasses.fields(MonitoringSettings)}
    publish_fields = dict(zip(OPTION_KEYS, ("follow", "interval", "drain_timeout"), strict=True))
    from jhsingle_native_proxy.identity_options import IdentitySettings

    identity_fields = {"forward_user_headers": "headers", "forward_user_jwt": "jwt"}
    for param in _command.params:
        if not param.expose_value or param.name in cli_only:
            continue
        if param.name in publish_fields:
            assert getattr(publish, publish_fields[param.name]) == param.default, param.name
            continue
        if param.name in ("install_requirements", "env_cache"):  # Settings.packages
            continue
        if param.name in ("idle_stop", "idle_shutdown"):  # Settings.sleep (sleep_options.py)
            assert getattr(SleepSettings(), param.name) == param.default, param.name
            continue
        if param.name in monitoring_fields:  # Settings.monitoring (monitoring_options.py)
            assert getattr(MonitoringSettings(), param.name) == param.default, param.name
            continue
        if param.name in identity_fields:  # Settings.identity (identity_options.py)
            assert getattr(IdentitySettings(), identity_fields[param.name]) == param.default
            continue
        names.add(param.name)
        assert param.name in OPTION_NAMES, f"--{param.name} is no field of Settings"
        if isinstance(param.default, (str, int, float)):  # not None nor click's UNSET
            assert defaults[param.name] == param.default, param.name
    assert DERIVED_FIELDS.issubset(defaults)
    # The options that come from elsewhere: server descriptions (serverproxy.merge_server) and
    # jupyterhub-singleuser's flags (parse_args), the command line's choice of app
    # (app_choice.py) and the repository's description of it (repository_app.py).
    assert OPTION_NAMES - names == {
        "publish",
        "sleep",
        *("given_app", "app_name", "app_source"),
        "packages",
        "monitoring",
        "identity",
        "command_factory",
        "server_env",
        "server_mappath",
        "server_request_header",
        "server_ignored",
        "server_label",
        "ignored_flags",
    }


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://10.0.0.5:9000/user/a/", ("10.0.0.5", 9000)),
        ("http://10.0.0.5/user/a/", ("10.0.0.5", 80)),
        ("https://jupyter-a/user/a/", ("jupyter-a", 443)),
        ("", ("127.0.0.1", 8888)),
    ],
)
def test_listen_address_from_jupyterhub_service_url(url, expected):
    """As jupyterhub-singleuser: a service URL without a port means its scheme's port."""
    from jhsingle_native_proxy.settings import listen_address

    environ = {"JUPYTERHUB_SERVICE_URL": url} if url else {}
    assert listen_address(None, None, environ) == expected


def test_an_empty_query_survives_the_pooled_clients_url():
    """yarl has no empty query: `/echo?` must still be the request line's target (.ci/floors
    runs this at yarl's floor)."""
    from jhsingle_native_proxy.proxy.http import app_url

    assert app_url("http://127.0.0.1:9/echo?").raw_path_qs == "/echo?"
    assert app_url("http://127.0.0.1:9/?").raw_path_qs == "/?"
    assert app_url("http://127.0.0.1:9/a%20b?x=1").raw_path_qs == "/a%20b?x=1"
    assert app_url("http://127.0.0.1:9/a").raw_path_qs == "/a"
