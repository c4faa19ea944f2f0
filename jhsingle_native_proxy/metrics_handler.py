"""`{prefix}_jhsnp/metrics`: the Prometheus metrics (metrics.py) for a scraper.

Who reads them: as the console, the owner and hub admins (with --authtype none, whoever
reaches the proxy), by their login cookie or by a hub API token in an `Authorization: Bearer
<token>` or `token <token>` header, which is what a Prometheus job sends. Another viewer gets
403. An anonymous request gets 401 unless it asks for HTML (a person's browser, sent to the
hub's login as everywhere): a scraper cannot log in, and a 401 shows as an error in Prometheus'
targets where a redirect would end in a login page that does not parse. With
--metrics-public, nobody is asked who they are (a private network only); the Host still is.

The metrics hold no output of the app, no URLs and no names: counts, durations, sizes.
"""

from __future__ import annotations

from tornado import web

from .base import Services
from .console import ConsoleBase

METRICS_PATH = "metrics"


class MetricsHandler(ConsoleBase):
    """The metrics for the console's viewers (and for hub tokens of the same people)."""

    def login_redirect_wanted(self) -> bool:
        # A person in a browser logs in; a scraper (Accept: text/plain or OpenMetrics) gets 401.
        return self.wants_html()

    async def get(self) -> None:
        accept = self.request.headers.get("Accept", "")
        body, content_type = self.services.metrics.exposition(accept)
        self.set_header("Content-Type", content_type)
        self.finish(body)


class PublicMetricsHandler(MetricsHandler):
    """--metrics-public: the same answer, without authentication.

    The Host is still checked (`host_acceptable`): with --authtype none on a loopback address,
    a web site's page that rebinds its own name to 127.0.0.1 would otherwise read the metrics.
    """

    async def allowed_in(self) -> bool:
        return self.host_acceptable()


def metrics_handler(services: Services) -> type[web.RequestHandler]:
    """The handler for the metrics' path, by --metrics-public and the auth type."""
    # The live supervisor (publish mode switches it) is read at each scrape.
    services.metrics.watch_app(lambda: services.supervisor)
    if services.settings.monitoring.metrics_public:
        return PublicMetricsHandler
    if services.hub_auth is not None:
        from .hub_login import with_hub_login

        return with_hub_login(MetricsHandler)
    return MetricsHandler
