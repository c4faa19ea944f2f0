"""The webhook at `{prefix}_jhsnp/webhook` (issue 20): signatures, events, branches, bounds.

The handler is served by the proxy's own tornado Application (`app.make_app`) behind a real
HTTPServer with the server's pre-authorisation limits, on 127.0.0.1 in a thread, with a
recording stand-in for the deployment (the `--follow` deployment is another module's). The
route's absence, the secret's handling at start and the app's environment go through the real
CLI; the end-to-end test through `--follow` runs once that option exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import socket
import sys
import threading
from urllib.parse import urlencode

import pytest
from test_checkout import git

from conftest import ECHO_APP, cli_error, request, run_cli, wait_for
from jhsingle_native_proxy import webhook
from jhsingle_native_proxy.settings import build_settings
from jhsingle_native_proxy.webhook_secret import read_webhook_secret

SECRET = "s3cr3t-webhook-value"
PATH = "/user/alice/_jhsnp/webhook"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "a" * 40, "commits": []}).encode()


def github_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- pure parts --------------------------------------------------------------------------------


def test_a_signature_header_is_read_only_in_its_exact_shape():
    digest = hmac.new(b"k", b"body", hashlib.sha256).digest()
    good = digest.hex()
    assert webhook.expected_digest("sha256=", "sha256=" + good) == digest
    assert webhook.expected_digest("sha256=", "SHA256=" + good.upper()) == digest
    assert webhook.expected_digest("", good) == digest  # Gitea's X-Gitea-Signature
    for bad in (
        "sha1=" + good[:40],
        "sha512=" + good,
        "sha256=" + good[:-1],
        good,
        "sha256=" + good + "0",
        "sha256=" + "g" * 64,
        "sha256=",
        "",
    ):
        assert webhook.expected_digest("sha256=", bad) is None, bad
    assert webhook.expected_digest("", "sha256=" + good) is None


def test_a_signature_matches_its_body_and_secret_only():
    body = b'{"ref": "refs/heads/main"}'
    digest = bytes.fromhex(github_signature(body)[7:])
    assert webhook.signature_matches(SECRET.encode(), body, digest)
    assert not webhook.signature_matches(b"other", body, digest)
    assert not webhook.signature_matches(SECRET.encode(), body + b" ", digest)
    assert webhook.token_matches(SECRET.encode(), SECRET)
    for wrong in ("", SECRET[:-1], SECRET + "x", SECRET.upper()):
        assert not webhook.token_matches(SECRET.encode(), wrong)


def test_the_first_credential_header_is_the_one_checked():
    headers = {"X-Gitea-Signature": "ab", "X-Hub-Signature-256": " sha256=cd "}
    assert webhook.find_credential(headers) == ("X-Hub-Signature-256", "sha256=", "sha256=cd")
    assert webhook.find_credential({"X-Gitlab-Token": "t"}) == ("X-Gitlab-Token", None, "t")
    assert webhook.find_credential({"X-Signature-256": "x"})[1] == "sha256="
    assert webhook.find_credential({"Authorization": "token x"}) is None


@pytest.mark.parametrize(
    ("headers", "event"),
    [
        ({"X-GitHub-Event": "push"}, "push"),
        ({"X-GitHub-Event": "ping"}, "ping"),
        ({"X-GitHub-Event": "issues"}, "issues"),
        ({"X-Gitea-Event": "push", "X-GitHub-Event": "push"}, "push"),
        ({"X-Gitea-Event": "create"}, "create"),
        ({"X-Gitlab-Event": "Push Hook"}, "push"),
        ({"X-Gitlab-Event": "Tag Push Hook"}, "Tag Push Hook"),
        ({"X-Gitlab-Event": "Merge Request Hook"}, "Merge Request Hook"),
        ({}, "push"),  # a generic sender names no event
    ],
)
def test_events(headers, event):
    assert webhook.event_of(headers) == event


def test_the_pushed_ref_and_the_followed_branch():
    assert webhook.pushed_ref(PUSH, "application/json") == "refs/heads/main"
    form = urlencode({"payload": PUSH.decode()}).encode()
    assert webhook.pushed_ref(form, "application/x-www-form-urlencoded") == "refs/heads/main"
    for unreadable in (b"not json", b"[1]", b'{"ref": 3}', b"[" * 100000, b"\xff"):
        assert webhook.pushed_ref(unreadable, "application/json") is None
    assert webhook.ref_is_followed("refs/heads/main", "main")
    assert not webhook.ref_is_followed("refs/heads/dev", "main")
    assert not webhook.ref_is_followed("refs/heads/main/x", "main")
    assert not webhook.ref_is_followed("refs/tags/main", "main")
    assert webhook.ref_is_followed("refs/heads/dev", "")  # the default branch: not known here
    assert not webhook.ref_is_followed("refs/tags/v1", "")
    assert webhook.ref_is_followed(None, "main")  # the deployment looks at the branch itself


def test_the_secret_comes_from_a_file_or_the_environment(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    found = read_webhook_secret(str(secret_file), {})
    assert found == {"webhook_secret": SECRET, "webhook_secret_file": str(secret_file)}
    found = read_webhook_secret("", {"JHSNP_WEBHOOK_SECRET": f" {SECRET} "})
    assert found == {"webhook_secret": SECRET, "webhook_secret_file": ""}
    assert read_webhook_secret(None, {}) == {"webhook_secret": "", "webhook_secret_file": ""}
    options = {"authtype": "none", "webhook_secret_file": str(secret_file)}
    settings = build_settings(options, ["true"], {})
    assert settings.webhook_secret == SECRET and SECRET not in repr(settings)
    (tmp_path / "empty").write_text("\n")
    for path, environ, message in [
        (str(secret_file), {"JHSNP_WEBHOOK_SECRET": "x"}, "give the webhook's secret once"),
        (str(tmp_path / "empty"), {}, "is empty"),
        (str(tmp_path / "missing"), {}, "cannot be read"),
        ("", {"JHSNP_WEBHOOK_SECRET": "a\nb"}, "more than one line"),
    ]:
        with pytest.raises(ValueError, match=message) as raised:
            read_webhook_secret(path, environ)
        assert SECRET not in str(raised.value)


def test_a_secret_file_that_is_no_file_stops_the_start_at_once(tmp_path):
    # A FIFO blocked the start forever in open(); /dev/zero was read until memory ran out.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list = []

    def read() -> None:
        try:
            read_webhook_secret(str(fifo), {})
        except ValueError as e:
            outcome.append(str(e))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # still blocked in open(): a writer lets it go
        with open(fifo, "w"):
            pass
        reader.join(10)
    assert outcome and "is not a regular file" in outcome[0]
    with pytest.raises(ValueError, match="is not a regular file"):
        read_webhook_secret("/dev/zero", {})
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024))
    with pytest.raises(ValueError, match="too long"):
        read_webhook_secret(str(big), {})
    link = tmp_path / "link"  # a Kubernetes secret is a symlink to a regular file: it is read
    (tmp_path / "real").write_text(SECRET + "\n")
    link.symlink_to(tmp_path / "real")
    assert read_webhook_secret(str(link), {})["webhook_secret"] == SECRET


# -- the handler, over a real socket -----------------------------------------------------------


class RecordingTarget:
    """Stands in for the deployment: records what it is asked (from the server's thread)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def request_update(self, reason: str) -> None:
        self.reasons.append(reason)


def services_for(options: dict, environ: dict, deployment):
    """Real Services (call within a running loop: the app's session needs one), as the server
    builds them, from these options and environment, under the prefix /user/alice/."""
    from jhsingle_native_proxy.activity import ActivityTracker
    from jhsingle_native_proxy.base import Services
    from jhsingle_native_proxy.proxy.http import new_app_session
    from jhsingle_native_proxy.supervisor import AppSupervisor

    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", **environ}
    settings = build_settings({"authtype": "none", **options}, ["true"], environ)
    return Services(
        settings=settings,
        supervisor=AppSupervisor(settings),
        app_session=new_app_session(),
        activity=ActivityTracker(),
        deployment=deployment,
    )


@contextlib.contextmanager
def serving(secret: str = SECRET, branch: str = "main", target=None):
    """The proxy's Application with a webhook route, served on 127.0.0.1 from a thread."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from jhsingle_native_proxy.app import make_app
    from jhsingle_native_proxy.server import (
        HEADER_TIMEOUT,
        PRE_AUTH_BODY_LIMIT,
        PRE_AUTH_BODY_TIMEOUT,
    )

    loop = asyncio.new_event_loop()
    started = threading.Event()
    parts: dict = {}

    async def start() -> None:
        with_secret = {"JHSNP_WEBHOOK_SECRET": secret}
        services = services_for({"repobranch": branch}, with_secret, target)
        server = HTTPServer(
            make_app(services),
            max_body_size=PRE_AUTH_BODY_LIMIT,
            idle_connection_timeout=HEADER_TIMEOUT,
            body_timeout=PRE_AUTH_BODY_TIMEOUT,
        )
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        parts.update(server=server, session=services.app_session)
        parts["port"] = sockets[0].getsockname()[1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    async def stop() -> None:
        parts["server"].stop()
        await parts["server"].close_all_connections()
        await parts["session"].close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert started.wait(20)
        yield parts["port"]
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def target():
    return RecordingTarget()


@pytest.fixture
def hook(target):
    with serving(target=target) as port:
        yield port


def post(port: int, headers: dict, body: bytes = PUSH):
    return request(port, "POST", PATH, body=body, headers=headers, timeout=10)


def send_raw(port: int, head: str, body: bytes = b"") -> bytes:
    """Send a request's head and part of its body, keep the connection open, and read what the
    server answers (all it sends before closing, or within 5 s)."""
    answer = b""
    # A server that answers early may close before it has all we send: a reset then.
    closed = contextlib.suppress(socket.timeout, ConnectionResetError, BrokenPipeError)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, closed:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def head_of(headers: dict, length: int) -> str:
    lines = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    return "\r\n".join(lines + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n"


SIGNED = [
    ("github", lambda b: {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(b)}),
    ("gitea", lambda b: {"X-Gitea-Event": "push", "X-Gitea-Signature": github_signature(b)[7:]}),
    ("generic", lambda b: {"X-Signature-256": github_signature(b)}),
    ("gitlab", lambda b: {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}),
]


@pytest.mark.parametrize(("sender", "headers"), SIGNED, ids=[s for s, _ in SIGNED])
def test_a_signed_push_asks_for_one_update_at_once(hook, target, sender, headers):
    response = post(hook, {"Content-Type": "application/json", **headers(PUSH)})
    assert response.status == 202, response.body
    assert response.json() == {"update": True, "reason": "update requested"}
    assert target.reasons == ["webhook: a push to refs/heads/main"]


def test_githubs_form_encoded_push_counts_too(hook, target):
    body = urlencode({"payload": PUSH.decode()}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-GitHub-Event": "push"}
    response = post(hook, {**headers, "X-Hub-Signature-256": github_signature(body)}, body)
    assert response.status == 202 and target.reasons == ["webhook: a push to refs/heads/main"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Hub-Signature-256": github_signature(PUSH, "wrong")}, 403),
        ({"X-Hub-Signature-256": github_signature(PUSH + b" ")}, 403),
        ({"X-Gitea-Signature": github_signature(PUSH, "wrong")[7:]}, 403),
        ({"X-Signature-256": github_signature(PUSH, "wrong")}, 403),
        ({"X-Hub-Signature-256": "sha1=" + github_signature(PUSH)[7:47]}, 403),
        ({"X-Hub-Signature-256": github_signature(PUSH)[:-2]}, 403),
        ({"X-Gitlab-Token": "wrong"}, 403),
        ({"X-Gitlab-Token": ""}, 403),
    ],
)
def test_without_a_valid_signature_nothing_is_asked(hook, target, headers, status, caplog):
    with caplog.at_level(logging.WARNING, "jhsingle_native_proxy"):
        response = post(hook, {"X-GitHub-Event": "push", **headers})
    assert response.status == status
    assert target.reasons == []
    assert "Webhook refused from 127.0.0.1" in caplog.text
    assert SECRET not in caplog.text and "refs/heads" not in caplog.text


def test_refusals_are_warned_of_at_a_bounded_rate(hook, target, caplog):
    # Anyone may send refused requests; a log kept at WARNING (access lines are INFO) had one
    # line per request. Now a few a minute, then one line that counts the rest.
    with caplog.at_level(logging.WARNING, "jhsingle_native_proxy"):
        for _ in range(3 * webhook.WARNINGS_PER_MINUTE):
            assert post(hook, {"X-Gitlab-Token": "wrong"}).status == 403
    warned = [r for r in caplog.records if r.getMessage().startswith("Webhook refused")]
    assert len(warned) == webhook.WARNINGS_PER_MINUTE
    assert "no more warnings of refused webhooks this minute" in caplog.text


def test_the_warnings_of_the_next_minute_count_those_left_out():
    warnings = webhook.RefusalWarnings()
    said = [warnings.allow(now=100.0 + i) for i in range(webhook.WARNINGS_PER_MINUTE + 5)]
    assert said[: webhook.WARNINGS_PER_MINUTE] == [(True, 0)] * webhook.WARNINGS_PER_MINUTE
    assert said[webhook.WARNINGS_PER_MINUTE :] == [(False, 0)] * 5
    assert warnings.allow(now=161.0) == (True, 5)
    assert warnings.allow(now=162.0) == (True, 0)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Hub-Signature-256": "sha1=00"}, {"X-Gitlab-Token": "wrong"}],
)
def test_a_refused_client_is_answered_before_its_body_is_read(hook, target, headers):
    answer = send_raw(hook, head_of(headers, 50 * 1024 * 1024), b"x" * 1000)
    assert answer.split(b"\r\n")[0] in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 403 Forbidden")
    assert b"Connection: close" in answer
    assert target.reasons == []


def test_a_body_over_the_bound_is_refused_at_once(hook, target):
    headers = {"X-Hub-Signature-256": github_signature(PUSH)}
    answer = send_raw(hook, head_of(headers, webhook.BODY_LIMIT + 1), b"{" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert target.reasons == []
    # One at the bound is read and checked.
    body = PUSH + b" " * (webhook.BODY_LIMIT - len(PUSH))
    response = post(hook, {"X-Hub-Signature-256": github_signature(body)}, body)
    assert response.status == 202 and len(target.reasons) == 1


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b3", "+5", "-1", "1_0"])
def test_a_content_length_that_is_no_number_is_refused_without_an_error(hook, length, caplog):
    # "\u00b2".isdigit() holds, but int() refuses it: an anonymous 500 with a traceback logged.
    headers = {"X-Hub-Signature-256": github_signature(PUSH)}
    with caplog.at_level(logging.WARNING, "jhsingle_native_proxy"):
        head = head_of(headers, 0).replace("Content-Length: 0", f"Content-Length: {length}")
        answer = send_raw(hook, head, b"")
    assert answer.split(b" ")[1] in (b"400", b"413"), answer[:100]
    assert "Traceback" not in caplog.text and "Uncaught" not in caplog.text


def chunked(head: str) -> str:
    return head.replace("Content-Length: 0", "Transfer-Encoding: chunked")


def test_a_chunked_body_is_read_up_to_the_bound_and_no_further(hook, target):
    body = PUSH + b" " * (100 * 1024)  # over the server's 64 KiB before a login, under 1 MiB
    headers = {"X-Hub-Signature-256": github_signature(body)}
    answer = send_raw(
        hook, chunked(head_of(headers, 0)), b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:200]
    assert len(target.reasons) == 1
    body = PUSH + b" " * webhook.BODY_LIMIT
    headers = {"X-Hub-Signature-256": github_signature(body)}
    answer = send_raw(
        hook, chunked(head_of(headers, 0)), b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    assert answer.startswith(b"HTTP/1.1 400 ")  # tornado's, and the connection is closed
    assert len(target.reasons) == 1


def ended(sock: socket.socket) -> bool:
    """Whether the server has closed this connection without answering (not blocking)."""
    sock.setblocking(False)
    try:
        return sock.recv(100) == b""
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def test_slow_bodies_cannot_hold_every_turn_against_the_git_host(hook, target):
    # Anyone may send a well-formed signature and then its body slowly. Eight such connections,
    # renewed every 20 s, once turned every real push away with 503: now the newest comes in and
    # the body read the longest is dropped, so at most BODIES_AT_ONCE are still read at a time.
    junk = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    slow = []
    try:
        for _ in range(webhook.BODIES_AT_ONCE):
            sock = socket.create_connection(("127.0.0.1", hook), timeout=5)
            sock.sendall(head_of(junk, len(PUSH)).encode() + b"\r\n" + PUSH[:10])
            slow.append(sock)
        # A ninth pushes out the one the server took first: that connection ends unanswered.
        ninth = socket.create_connection(("127.0.0.1", hook), timeout=5)
        slow.append(ninth)
        ninth.sendall(head_of(junk, len(PUSH)).encode() + b"\r\n" + PUSH[:10])
        first = slow[:-1]
        wait_for(lambda: sum(map(ended, first)) == 1, 10, what="the oldest body to be dropped")
        response = post(hook, {"X-Hub-Signature-256": github_signature(PUSH)})
        assert response.status == 202, response.body
        assert target.reasons == ["webhook: a push to refs/heads/main"]
        assert sum(map(ended, first)) == 2  # the push pushed out one more; the rest are read
        assert not ended(ninth)
    finally:
        for sock in slow:
            sock.close()


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"X-GitHub-Event": "ping"}, 200, "pong"),
        ({"X-GitHub-Event": "issues"}, 202, "ignored: not a push (issues)"),
        ({"X-Gitea-Event": "create"}, 202, "ignored: not a push (create)"),
    ],
)
def test_events_other_than_a_push_ask_nothing(hook, target, headers, status, reason):
    response = post(hook, {**headers, "X-Hub-Signature-256": github_signature(PUSH)})
    assert (response.status, response.json()["reason"]) == (status, reason)
    assert target.reasons == []


def test_gitlab_events_other_than_a_push_ask_nothing(hook, target):
    response = post(hook, {"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": SECRET})
    assert response.status == 202 and target.reasons == []


def test_a_push_to_another_branch_asks_nothing(hook, target):
    body = json.dumps({"ref": "refs/heads/dev"}).encode()
    response = post(hook, {"X-Signature-256": github_signature(body)}, body)
    assert response.status == 202
    assert response.json()["reason"] == "ignored: a push to another branch"
    assert target.reasons == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_get_405(hook, target, method):
    response = request(hook, method, PATH, headers={"X-Gitlab-Token": SECRET}, timeout=10)
    assert response.status == 405 and response.header("Allow") == "POST"
    assert target.reasons == []


def routes_for(options: dict, environ: dict, deployment) -> list:
    """webhook_routes for real Services built from these options and environment."""

    async def routes() -> list:
        services = services_for(options, environ, deployment)
        try:
            return webhook.webhook_routes(services, "/user/alice/")
        finally:
            await services.app_session.close()

    return asyncio.run(routes())


def test_the_route_needs_a_secret_and_a_deployment(tmp_path, caplog):
    with_secret = {"JHSNP_WEBHOOK_SECRET": SECRET}
    assert routes_for({}, {}, RecordingTarget()) == []
    with caplog.at_level(logging.INFO, "jhsingle_native_proxy"):
        assert routes_for({}, with_secret, None) == []
        assert "without --follow there is no webhook" in caplog.text
        [(path, handler, _)] = routes_for({}, with_secret, RecordingTarget())
    assert (path, handler) == ("/user/alice/_jhsnp/webhook", webhook.WebhookHandler)
    assert "Webhook for git pushes at /user/alice/_jhsnp/webhook" in caplog.text
    assert "readable by every user" not in caplog.text
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    with caplog.at_level(logging.INFO, "jhsingle_native_proxy"):
        routes_for({"webhook_secret_file": str(secret_file)}, {}, RecordingTarget())
    assert f"The webhook secret file {secret_file} is readable by every user" in caplog.text
    assert SECRET not in caplog.text


# -- through the real CLI ----------------------------------------------------------------------


def test_without_follow_the_path_is_answered_as_any_other(start_proxy, tmp_path):
    """No --follow (or no secret): `_jhsnp/webhook` is one more path under the prefix, and its
    answer is that of any other unknown path: the app's, here the echo app's."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    for args in ([], ["--webhook-secret-file", str(secret_file)]):
        proxy = start_proxy(args, app=[sys.executable, ECHO_APP, "{port}"])
        headers = {"X-Hub-Signature-256": github_signature(PUSH)}
        mine = proxy.request("POST", "_jhsnp/webhook", body=PUSH, headers=headers)
        other = proxy.request("POST", "_jhsnp/webhooks", body=PUSH, headers=headers)
        assert mine.status == other.status
        assert mine.body.replace(b"webhook", b"webhooks") == other.body
        assert "app got POST /_jhsnp/webhook" in proxy.log()
        assert SECRET not in proxy.log()
        proxy.cleanup()


def test_the_secret_never_reaches_the_app(start_proxy):
    proxy = start_proxy(
        app=[sys.executable, ECHO_APP, "{port}", "--say-env", "JHSNP_WEBHOOK_SECRET"],
        env={"JHSNP_WEBHOOK_SECRET": SECRET},
    )
    assert "echo app env JHSNP_WEBHOOK_SECRET=\n" in proxy.log()
    assert SECRET not in proxy.log()


def test_the_app_and_checkout_environments_drop_the_secret():
    from jhsingle_native_proxy.prepare import app_environment, checkout_environment

    given = {"JHSNP_WEBHOOK_SECRET": SECRET, "HOME": "/home/alice"}
    assert app_environment(given) == checkout_environment(given) == {"HOME": "/home/alice"}


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        ("\n", {}, "is empty"),
        (None, {}, "cannot be read"),
        (SECRET, {"JHSNP_WEBHOOK_SECRET": "other"}, "give the webhook's secret once"),
    ],
)
def test_a_bad_secret_stops_the_start_with_one_line(tmp_path, content, env, message):
    secret_file = tmp_path / "secret"
    if content is not None:
        secret_file.write_text(content)
    args = ["--authtype", "none", "--webhook-secret-file", str(secret_file), "--", "true"]
    result = run_cli(args, env=env)
    assert message in cli_error(result.stderr, result.returncode)
    assert SECRET not in result.stderr and "other" not in result.stderr


# -- end to end, once --follow exists (issue 20's deployment) ----------------------------------


def _follow_exists() -> bool:
    """Whether `--help` lists a `--follow` option (not merely mentions it, as ours does)."""
    return re.search(r"^\s+--follow[\s,/]", run_cli(["--help"]).stdout, re.MULTILINE) is not None


APP_SOURCE = """import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Say(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(__file__.replace("app.py", "text.txt"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(sys.argv[1])), Say).serve_forever()
"""


def test_a_signed_push_goes_live_through_follow(start_proxy, tmp_path):
    if not _follow_exists():
        pytest.skip("--follow is not an option of this build (the deployment's branch)")
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(upstream, "init", "--quiet", "--initial-branch=main")
    (upstream / "app.py").write_text(APP_SOURCE)
    (upstream / "text.txt").write_text("revision one")
    git(upstream, "add", ".")
    git(upstream, "commit", "--quiet", "-m", "one")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    args = [
        "--repo",
        upstream.as_uri(),
        "--repobranch",
        "main",
        "--repofolder",
        str(tmp_path / "published"),
        "--follow",
        "--follow-interval",
        "0",
        "--webhook-secret-file",
        str(secret_file),
    ]
    proxy = start_proxy(args, app=[sys.executable, "app.py", "{port}"])
    assert proxy.get().body == b"revision one"
    (upstream / "text.txt").write_text("revision two")
    git(upstream, "commit", "--quiet", "-am", "two")
    body = json.dumps({"ref": "refs/heads/main", "after": git(upstream, "rev-parse", "HEAD")})
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(body.encode())}
    response = proxy.request("POST", "_jhsnp/webhook", body=body, headers=headers)
    assert response.status == 202
    wait_for(lambda: proxy.get().body == b"revision two", 60, what="the push to go live")
    assert SECRET not in proxy.log()
