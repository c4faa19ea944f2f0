"""The Prometheus metrics at `{prefix}_jhsnp/metrics`, who may read them, and the access log's
levels (successes at DEBUG unless --log-requests): the real CLI in front of the echo app, and a
real JupyterHub for the access rules."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import console_form, request, wait_for
from jhsingle_native_proxy.metrics import AppCollector, status_class

METRICS = "_jhsnp/metrics"


def scrape(proxy, **kw) -> dict[tuple[str, tuple], float]:
    """The metrics as {(sample name, sorted labels): value}, parsed as Prometheus does."""
    answer = proxy.get(METRICS, **kw)
    assert answer.status == 200, answer.body[:300]
    assert answer.header("Content-Type").startswith("text/plain")
    return samples(answer.body.decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_of(values: dict, method: str, status_class: str) -> float:
    key = ("jhsnp_requests_total", (("method", method), ("status_class", status_class)))
    return values.get(key, 0.0)


def value(values: dict, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


# -- units ------------------------------------------------------------------------------------


def test_status_classes():
    assert [status_class(s) for s in (101, 200, 304, 404, 499, 503, 600)] == [
        "1xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx",
    ]  # fmt: skip


def test_the_apps_cpu_counter_never_goes_down_across_runs():
    collector = AppCollector(lambda: None)
    assert collector.app_cpu_seconds(10, 1.5) == 1.5
    assert collector.app_cpu_seconds(10, 2.0) == 2.0
    # A child exited and was not reaped into the tree's sum: the reading drops, the counter not.
    assert collector.app_cpu_seconds(10, 1.0) == 2.0
    assert collector.app_cpu_seconds(None, 0.0) == 2.0  # restarting: no run
    assert collector.app_cpu_seconds(11, 0.5) == 2.5  # the new run adds to the finished ones
    assert collector.app_cpu_seconds(12, 0.25) == 2.75


# -- the metrics through the real CLI -----------------------------------------------------------


def test_requests_bytes_and_websockets_are_counted(start_proxy):
    proxy = start_proxy()
    before = scrape(proxy)
    for _ in range(5):
        assert proxy.get("echo").status == 200
    assert request(proxy.port, "GET", "/elsewhere").status == 404  # outside the prefix
    body = b"x" * 3000
    assert proxy.request("POST", "echo", body=body).status == 200
    after = scrape(proxy)
    # The first scrape's own GET is counted too (after its answer was written).
    assert requests_of(after, "GET", "2xx") - requests_of(before, "GET", "2xx") == 6
    assert requests_of(after, "GET", "4xx") - requests_of(before, "GET", "4xx") == 1
    assert requests_of(after, "POST", "2xx") - requests_of(before, "POST", "2xx") == 1
    sent = value(after, "jhsnp_app_request_bytes_total")
    assert sent - value(before, "jhsnp_app_request_bytes_total") == len(body)
    got = value(after, "jhsnp_app_response_bytes_total")
    assert got - value(before, "jhsnp_app_response_bytes_total") > 6 * 100
    count = value(after, "jhsnp_request_duration_seconds_count")
    assert count - value(before, "jhsnp_request_duration_seconds_count") == 8
    assert value(after, "process_resident_memory_bytes") > 0  # the proxy's own process
    assert value(after, "jhsnp_app_state", state="ready") == 1
    assert value(after, "jhsnp_app_state", state="failed") == 0

    async def with_websocket() -> None:
        url = proxy.url("ws").replace("http://", "ws://")
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str("hello")
            assert (await ws.receive()).data == "hello"
            assert value(scrape(proxy), "jhsnp_websockets_open") == 1

    asyncio.run(with_websocket())
    wait_for(lambda: value(scrape(proxy), "jhsnp_websockets_open") == 0, what="the gauge at 0")


def test_the_apps_memory_and_restarts(start_proxy):
    proxy = start_proxy()
    running = scrape(proxy)
    assert value(running, "jhsnp_app_memory_bytes") > 0
    assert value(running, "jhsnp_app_processes") >= 1
    assert value(running, "jhsnp_app_ready_seconds_count") == 1
    cpu = value(running, "jhsnp_app_cpu_seconds_total")
    assert value(running, "jhsnp_app_restarts_total", reason="asked") == 0
    # A restart from the console: counted as asked.
    sent = console_form(proxy)
    origin = f"http://127.0.0.1:{proxy.port}"
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin", **sent["headers"]}
    assert proxy.request("POST", "_jhsnp/restart", body=sent["body"], headers=headers).status == 303
    proxy.wait_ready()
    # The app crashes: counted as exited.
    assert proxy.get("exit?code=3").status in (200, 502)
    wait_for(
        lambda: value(scrape(proxy), "jhsnp_app_restarts_total", reason="exited") == 1,
        what="the crash counted",
    )
    proxy.wait_ready()
    after = scrape(proxy)
    assert value(after, "jhsnp_app_restarts_total", reason="asked") == 1
    assert value(after, "jhsnp_app_ready_seconds_count") == 3
    assert value(after, "jhsnp_app_cpu_seconds_total") >= cpu


# -- the access log -----------------------------------------------------------------------------


def access_lines(proxy, status: int, path: str) -> list[str]:
    """The levels (I, D, W) of the access lines of `GET path` answered with `status`."""
    pattern = rf"^\[(\w) [^\]]*\] {status} GET {re.escape(path)} "
    return re.findall(pattern, proxy.log(), re.M)


def test_successes_are_logged_at_debug_and_errors_at_info(start_proxy):
    proxy = start_proxy()
    assert proxy.get("echo?first").status == 200
    assert request(proxy.port, "GET", "/elsewhere").status == 404
    proxy.wait_log("404 GET /elsewhere")
    assert access_lines(proxy, 404, "/elsewhere") == ["I"]
    assert access_lines(proxy, 200, proxy.prefix + "echo?first") == []


def test_log_requests_logs_every_request_at_info(start_proxy):
    proxy = start_proxy(["--log-requests"])
    assert proxy.get("echo?first").status == 200
    proxy.wait_log(f"200 GET {proxy.prefix}echo?first")
    assert access_lines(proxy, 200, proxy.prefix + "echo?first") == ["I"]


def test_debug_shows_the_successes(start_proxy):
    proxy = start_proxy(["--debug"])
    assert proxy.get("echo?first").status == 200
    proxy.wait_log(f"200 GET {proxy.prefix}echo?first")
    assert access_lines(proxy, 200, proxy.prefix + "echo?first") == ["D"]


# -- who may read them, on a real hub -----------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub import start_hub, stop_hub

    public = {"public": {"proxy": ["--metrics-public"]}}
    hub = start_hub(tmp_path_factory.mktemp("hub"), extra=public)
    try:
        hub.ensure_users("alice", "carol", "admin")
        hub.start_server("alice")
        yield hub
    finally:
        stop_hub(hub)


def test_the_metrics_are_the_owners_and_admins(hub):
    url = f"{hub.url}/user/alice/{METRICS}"
    owner = hub.get_as(hub.login("alice"), url)
    assert owner.status_code == 200 and "jhsnp_requests_total" in owner.text
    assert hub.get_as(hub.login("admin"), url).status_code == 200
    assert hub.get_as(hub.login("carol"), url).status_code == 403


def test_a_hub_token_in_a_header_reads_them_as_prometheus_does(hub):
    url = f"{hub.url}/user/alice/{METRICS}"
    scraper = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"}
    for user in ("alice", "admin"):
        token = hub.user_token(user)
        for scheme in ("Bearer", "token"):
            headers = {**scraper, "Authorization": f"{scheme} {token}"}
            answer = requests.get(url, headers=headers, allow_redirects=False, timeout=30)
            assert answer.status_code == 200, (user, scheme, answer.status_code)
            assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
            assert "jhsnp_requests_total" in answer.text and answer.text.endswith("# EOF\n")
    carols = {**scraper, "Authorization": f"Bearer {hub.user_token('carol')}"}
    assert requests.get(url, headers=carols, timeout=30).status_code == 403
    # Anonymous: a 401 a scraper can report, not the hub's login page; a browser logs in.
    for headers in (scraper, {"Accept": "*/*"}):
        anonymous = requests.get(url, headers=headers, allow_redirects=False, timeout=30)
        assert anonymous.status_code == 401, anonymous.status_code
    browser = requests.get(url, headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)
    assert browser.status_code == 302 and "/hub/" in browser.headers["Location"]


def test_metrics_public_needs_no_login(hub):
    hub.start_server("alice", "public")
    url = f"{hub.url}/user/alice/public/{METRICS}"
    answer = requests.get(url, allow_redirects=False, timeout=30)
    assert answer.status_code == 200 and samples(answer.text)
    # Only the metrics: the app itself still asks for a login.
    app = requests.get(f"{hub.url}/user/alice/public/echo", allow_redirects=False, timeout=30)
    assert app.status_code == 302
