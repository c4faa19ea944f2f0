"""The proxy's Prometheus metrics: what the handlers and the supervisor report, in one registry.

One job: keep the numbers. Handlers and the supervisor *feed* it through the small calls below
(`request_done`, `app_ready`, `app_ended`, `step`, the websockets' gauge); only `exposition` writes
Prometheus' text, for `metrics_handler.py`. The registry is our own, not prometheus_client's
global one, so nothing another library registers there shows up (nor the other way round); it
holds the proxy's own process collector (`process_*`).

What is read at scrape time, not fed: the app's state and its process tree's memory and CPU
(`process_tree.tree_usage` of the live supervisor's app, about a millisecond for a few hundred
processes). The tree's CPU is a counter across restarts: the sum of the finished runs (each
run's last reading) plus the current run's, and never reported lower than before. CPU that a
run used after the last scrape before it ended is not counted.

Cost. prometheus_client is imported with the first `current()` (about 35 ms), when the server
builds its routes, after the app was launched, never before. A finished request costs one
call (`request_done`, from the access-log hook): a counter, a histogram and, for the app's
answers, two byte counters; the children for each label pair are kept in a dict.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .process_tree import tree_usage

if TYPE_CHECKING:
    from .supervisor import AppSupervisor

# The request methods named in labels; any other (a client's invention, refused) is "other",
# so a client cannot make series without end.
# (HTTP's and WebDAV's, as proxy/http.PROXIED_METHODS, which tornado lets through).
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND")
    + ("PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "MKCALENDAR")
)
# Seconds: small GETs take about a millisecond through the proxy; streams last minutes.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Seconds: an app ready in a second, a checkout or an install of packages in minutes.
SLOW_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
# Preparation steps and the outcomes of each.
STEPS = ("checkout", "install", "switch")
OK, FAILED, STOPPED = "ok", "failed", "stopped"


def status_class(status: int) -> str:
    """`2xx` for 204, ...; our own CLIENT_GONE (499) is a 4xx; out of range: `5xx`."""
    first = status // 100
    return f"{first}xx" if 1 <= first <= 5 else "5xx"


class AppCollector:
    """The app's state and process tree, read when Prometheus scrapes."""

    def __init__(self, supervisor: Callable[[], AppSupervisor | None]):
        self._supervisor = supervisor
        self._last_pid: int | None = None
        self._last_run_cpu = 0.0  # the current run's last reading
        self._finished_cpu = 0.0  # the sum of the runs before it
        self._reported_cpu = 0.0

    def app_cpu_seconds(self, pid: int | None, run_cpu: float) -> float:
        """The counter's value for this reading of run `pid` (None: no run now)."""
        if pid != self._last_pid:
            self._finished_cpu += self._last_run_cpu
            self._last_pid, self._last_run_cpu = pid, 0.0
        if pid is not None:
            self._last_run_cpu = max(self._last_run_cpu, run_cpu)
        self._reported_cpu = max(self._reported_cpu, self._finished_cpu + self._last_run_cpu)
        return self._reported_cpu

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from .app_state import AppState

        supervisor = self._supervisor()
        if supervisor is None:
            return
        status = supervisor.status()
        state = GaugeMetricFamily(
            "jhsnp_app_state", "The app's state: 1 for the current one.", labels=["state"]
        )
        for each in AppState:
            state.add_metric([each.value], 1.0 if each is status.state else 0.0)
        yield state
        usage = tree_usage(status.pid)
        yield GaugeMetricFamily(
            "jhsnp_app_memory_bytes",
            "Resident memory of the app's process tree (shared pages counted in each).",
            value=usage.rss_bytes,
        )
        yield GaugeMetricFamily(
            "jhsnp_app_processes", "Live processes in the app's tree.", value=usage.processes
        )
        yield CounterMetricFamily(
            "jhsnp_app_cpu_seconds",
            "CPU time of the app's process tree, summed over its runs.",
            value=self.app_cpu_seconds(status.pid, usage.cpu_seconds),
        )


class Metrics:
    """The registry and its metrics; one per process (`current`)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
        )

        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "jhsnp_requests",
            "Requests answered, by method and status class.",
            ["method", "status_class"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "jhsnp_request_duration_seconds",
            "Time from a request's start to its last byte (a websocket: to its handshake).",
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.bytes_to_app = Counter(
            "jhsnp_app_request_bytes",
            "Request body bytes relayed to the app.",
            registry=registry,
        )
        self.bytes_to_client = Counter(
            "jhsnp_app_response_bytes",
            "Bytes of the app's answers relayed to clients (bodies, after any rewriting).",
            registry=registry,
        )
        self.websockets = Gauge(
            "jhsnp_websockets_open", "Websockets relayed to the app now.", registry=registry
        )
        self.restarts = Counter(
            "jhsnp_app_restarts",
            "Times the app ended and was to be started again, by why it ended: asked (the "
            "console), exited, not_ready, not_started, not_prepared, idle (put to sleep by "
            "--idle-stop; the next visit starts it).",
            ["reason"],
            registry=registry,
        )
        self.ready_seconds = Histogram(
            "jhsnp_app_ready_seconds",
            "Time from the app's spawn to its first answer.",
            buckets=SLOW_BUCKETS,
            registry=registry,
        )
        self.steps = Counter(
            "jhsnp_preparation_steps",
            "Preparation steps (checkout, install of packages, publish-mode switch), by outcome.",
            ["step", "outcome"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "jhsnp_preparation_step_duration_seconds",
            "How long each preparation step took, whatever its outcome.",
            ["step"],
            buckets=SLOW_BUCKETS,
            registry=registry,
        )
        for step in STEPS:
            self.step_seconds.labels(step)
        self._request_children: dict[tuple[str, int], Any] = {}
        self._observe_request = self.request_seconds.observe
        self._app: AppCollector | None = None

    def watch_app(self, supervisor: Callable[[], AppSupervisor | None]) -> None:
        """Read the app of `supervisor()` (the live one, in publish mode) at each scrape."""
        if self._app is None:
            self._app = AppCollector(supervisor)
            self.registry.register(self._app)
        else:
            self._app._supervisor = supervisor

    def request_done(
        self, method: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        """One finished request (the access-log hook calls this once per request)."""
        # Keyed by the label, never by the method as sent: a client's invented methods (up to
        # the 64 KiB of a request line) would otherwise be kept here, one per key.
        key = (method if method in METHODS else "other", status // 100)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(key[0], status_class(status))
            if len(self._request_children) < 256:
                self._request_children[key] = child
        child.inc()
        self._observe_request(seconds)
        if bytes_in:
            self.bytes_to_app.inc(bytes_in)
        if bytes_out:
            self.bytes_to_client.inc(bytes_out)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format the scraper's `Accept` asks for (OpenMetrics, or
        Prometheus' text format of the version it names, else 0.0.4), and its Content-Type."""
        from prometheus_client.exposition import choose_encoder, generate_latest

        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):
            # prometheus_client compares a `version=` it cannot parse (`version=abc`) and
            # raises: any scraper's header would be a 500 and a traceback in the log.
            encoder, content_type = generate_latest, TEXT_0_0_4
        return encoder(self.registry), content_type


_current: Metrics | None = None
# Prometheus' text format as every prometheus_client writes it; spelled out here because the
# library names it CONTENT_TYPE_PLAIN_0_0_4 only since 0.22 (0.5.0, our floor, lacks the name).
TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"


def current() -> Metrics:
    """The process's metrics, made (and prometheus_client imported) at the first call."""
    global _current
    if _current is None:
        _current = Metrics()
    return _current


# -- what the supervisor, the preparation and the deployment report ------------------------------


def app_ready(seconds: float) -> None:
    """The app answered, `seconds` after its spawn."""
    current().ready_seconds.observe(seconds)


def app_ended(reason: str) -> None:
    """An instance ended (or never started) and the supervisor goes on: `reason` as above."""
    current().restarts.labels(reason).inc()


def step_done(step: str, outcome: str, seconds: float) -> None:
    """One preparation step ended (`step` in STEPS, `outcome` ok, failed or stopped)."""
    m = current()
    m.steps.labels(step, outcome).inc()
    m.step_seconds.labels(step).observe(seconds)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as preparation step `name`: ok if it ends, failed if it raises an
    Exception, stopped if it is cancelled."""
    began = time.monotonic()
    outcome = FAILED
    try:
        yield
        outcome = OK
    except Exception:
        raise
    except BaseException:
        outcome = STOPPED
        raise
    finally:
        step_done(name, outcome, time.monotonic() - began)
