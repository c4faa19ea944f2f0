"""The security review of issue 23's sleeping apps and metrics (review 23b): who may wake the app
or keep it awake, who reads the metrics, and what a client can make the metrics hold or do.

Real CLI and the echo app; a real JupyterHub where who-is-who matters. The metrics' request
children as a unit on top.
"""

from __future__ import annotations

import pytest
import requests

from conftest import raw_exchange, rss_kib, wait_for
from jhsingle_native_proxy.metrics import METHODS, Metrics

METRICS = "_jhsnp/metrics"
# A method as long as the request line may be (64 KiB of headers): a token, so tornado takes it.
LONG_METHOD = 60_000


# -- the metrics -------------------------------------------------------------------------------


def test_metrics_public_still_answers_only_this_servers_host_names(start_proxy):
    """--authtype none on 127.0.0.1: a web site whose name is rebound to 127.0.0.1 is refused
    everywhere (SECURITY.md); --metrics-public dropped that check with the others, so such a
    page could read the metrics through the viewer's browser."""
    proxy = start_proxy(["--metrics-public"])
    rebound = proxy.get(METRICS, headers={"Host": f"rebind.example:{proxy.port}"})
    assert rebound.status == 403 and b"jhsnp_" not in rebound.body
    assert proxy.get("echo", headers={"Host": "rebind.example"}).status == 403  # as the app
    own = proxy.get(METRICS, headers={"Host": f"localhost:{proxy.port}"})
    assert own.status == 200 and b"jhsnp_requests_total" in own.body


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=abc",
        "application/openmetrics-text;version=1.x.0",
        "text/plain; version=one",
    ],
)
def test_an_unparsable_format_version_gets_the_text_format_not_a_traceback(start_proxy, accept):
    """prometheus_client compares the version it cannot parse and raises: every such scrape (an
    anonymous one with --metrics-public) was a 500 with a traceback in the log."""
    proxy = start_proxy(["--metrics-public", "--log-requests"])
    answer = proxy.get(METRICS, headers={"Accept": accept})
    assert answer.status == 200, answer.body[:200]
    # The text format; prometheus_client before 0.22 reads no OpenMetrics version at all and
    # answers in OpenMetrics, which is as good (the point is: no error).
    assert answer.header("Content-Type").startswith(
        ("text/plain; version=0.0.4", "application/openmetrics-text")
    )
    assert b"jhsnp_requests_total" in answer.body
    proxy.wait_log(f"200 GET {proxy.prefix}{METRICS}")
    assert "Traceback" not in proxy.log() and "Uncaught exception" not in proxy.log()


def test_invented_methods_cost_the_proxy_no_memory(start_proxy):
    """Anonymous requests with 300 invented 60 KB methods (a 405 each): the metrics kept each
    method as sent as a key of their cache, 256 of them, about 15 MiB for good."""
    proxy = start_proxy([])
    prefix = proxy.prefix.encode()
    for _ in range(20):  # the usual requests' own allocations first
        raw_exchange(proxy.port, b"GET %sx HTTP/1.1\r\nHost: localhost\r\n\r\n" % prefix)
    before = rss_kib(proxy.pid)
    for i in range(300):
        method = b"%05d" % i + b"X" * LONG_METHOD
        line = b"%s %sx HTTP/1.1\r\nHost: localhost\r\n\r\n" % (method, prefix)
        assert raw_exchange(proxy.port, line).startswith(b"HTTP/1.1 405 ")
    grown_kib = rss_kib(proxy.pid) - before
    assert grown_kib < 6 * 1024, f"the proxy grew by {grown_kib} KiB"
    metrics = proxy.get(METRICS).body.decode()
    assert 'jhsnp_requests_total{method="other",status_class="4xx"} 300.0' in metrics


def test_one_request_makes_one_access_line_of_bounded_length(start_proxy):
    """A refused request is logged at INFO with its method and URI: a client sending 60 KB of
    either wrote a 60 KB log line per request. Both are cut (method 32, URI 2048 characters)."""
    proxy = start_proxy(["--log-requests"])
    prefix = proxy.prefix.encode()
    method = b"M" + b"X" * LONG_METHOD
    line = b"%s %sinvented HTTP/1.1\r\nHost: localhost\r\n\r\n" % (method, prefix)
    assert raw_exchange(proxy.port, line).startswith(b"HTTP/1.1 405 ")
    long_query = "echo?x=" + "q" * LONG_METHOD + "&token=abc123secret"
    assert proxy.get(long_query).status == 200
    proxy.wait_log("405 MXXXX")
    proxy.wait_log(f"200 GET {proxy.prefix}echo?x=qqqq")
    access = [line for line in proxy.log().splitlines() if ".access]" in line]
    access = [line for line in access if "MXXX" in line or "?x=qqq" in line]
    assert len(access) == 2, [line[:200] for line in access]
    assert all(len(line) < 2300 for line in access), [len(line) for line in access]


def test_the_request_cache_is_keyed_by_label_not_by_the_method_sent():
    metrics = Metrics()
    for i in range(1000):
        metrics.request_done(f"M{i}" + "X" * 100, 405, 0.001, 0, 0)
    metrics.request_done("GET", 200, 0.001, 0, 0)
    assert {method for method, _ in metrics._request_children} <= METHODS | {"other"}
    assert ("GET", 2) in metrics._request_children


# -- sleeping apps, on a real hub ---------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub import start_hub, stop_hub

    sleepy = {"sleepy": {"proxy": ["--idle-stop", "2"]}}
    hub = start_hub(tmp_path_factory.mktemp("hub"), extra=sleepy)
    try:
        hub.ensure_users("alice", "carol", "dave")
        hub.start_server("alice", "sleepy")
        yield hub
    finally:
        stop_hub(hub)


def test_unauthorised_clients_neither_keep_it_awake_nor_wake_it(hub):
    """Anonymous requests, a probe like the hub's, another user's token: none is use of the app,
    so it falls asleep under them; none of them wakes it, nor does the console's Wake from
    anyone but the owner (a shared viewer gets 403 there: their visit wakes it instead)."""
    base = f"{hub.url}/user/alice/sleepy/"
    alice, carol = hub.login("alice"), hub.login("carol")
    dave = {"Authorization": f"token {hub.user_token('dave')}"}
    plain = {"Accept": "*/*"}

    def state() -> str:
        return hub.get_as(alice, base + "_jhsnp/status", headers=plain).json()["state"]

    assert state() in ("ready", "sleeping")

    def refused_all() -> None:
        anonymous = requests.get(base + "echo", allow_redirects=False, timeout=30)
        assert anonymous.status_code in (302, 401)
        probe = requests.get(base + "api", allow_redirects=False, timeout=30)
        assert probe.status_code in (302, 401)
        assert requests.get(base + "echo", headers=dave, timeout=30).status_code == 403

    def asleep_while_refused() -> bool:
        refused_all()
        return state() == "sleeping"

    wait_for(asleep_while_refused, timeout=60, interval=0.2, what="sleep under refused requests")
    refused_all()
    wake = base + "_jhsnp/wake"
    assert requests.post(wake, allow_redirects=False, timeout=30).status_code == 401
    assert requests.post(wake, headers=dave, allow_redirects=False, timeout=30).status_code == 403
    # carol may use the app (the friends group), not its console: her Wake is refused...
    assert hub.get_as(carol, base + "_jhsnp/status", headers=plain).status_code == 200
    own_page = {"Referer": base + "_jhsnp/", "Origin": hub.url}
    refused = carol.post(wake, headers=own_page, allow_redirects=False, timeout=30)
    assert refused.status_code == 403
    assert state() == "sleeping"
    # ... and her visit wakes it.
    visit = hub.get_as(carol, base + "echo?carol", headers=plain, timeout=60)
    assert visit.status_code == 200 and "/echo?carol" in visit.json()["uri"]
    assert state() == "ready"
