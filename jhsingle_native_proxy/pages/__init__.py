"""Our own pages: plain HTML, inline CSS, no external assets, readable by screen readers.

Every value put into a page is HTML-escaped here, so callers pass plain text.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from string import Template

_PAGE = Template(files(__package__).joinpath("page.html").read_text(encoding="utf-8"))


def _render(
    title: str, body: str, *, refresh_seconds: float | None = None, script: str = ""
) -> str:
    refresh = ""
    if refresh_seconds is not None:
        refresh = f'<meta http-equiv="refresh" content="{max(1, round(refresh_seconds))}">'
        if script:
            # The script moves the page on; the reload is for browsers without JavaScript.
            refresh = f"<noscript>{refresh}</noscript>"
    return _PAGE.substitute(
        title=html.escape(title),
        body=body,
        refresh=refresh,
        script=f"<script>{script}</script>" if script else "",
    )


# Polls the status endpoint and reloads the page (same URL, so the user lands where they asked)
# once the app is ready, or once it has failed so that the error page shows.
_POLL_SCRIPT = """
(function () {
  var url = %s, delay = 300;
  function check() {
    fetch(url, {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && (s.state === "ready" || s.state === "failed")) { location.reload(); return; }
        delay = Math.min(delay * 1.5, 2000); setTimeout(check, delay);
      })
      .catch(function () { delay = Math.min(delay * 1.5, 2000); setTimeout(check, delay); });
  }
  setTimeout(check, delay);
})();
"""


def loading_page(status_url: str) -> str:
    body = (
        '<h1 role="status" aria-live="polite"><span class="spinner" aria-hidden="true"></span>'
        "Starting the app&hellip;</h1>"
        '<p class="muted">This page moves on by itself as soon as the app is ready.</p>'
    )
    return _render(
        "Starting the app", body, refresh_seconds=2, script=_POLL_SCRIPT % json.dumps(status_url)
    )


def app_failed_page(reason: str, output: list[str], retry_in: float | None) -> str:
    if retry_in is not None:
        next_step = (
            f"<p>It will be restarted in about {max(1, round(retry_in))} seconds; "
            "this page reloads by itself.</p>"
        )
        refresh = retry_in + 0.5
    else:
        next_step = (
            '<p><a class="button" href="">Try again</a> '
            '<span class="muted">(reloading this page starts the app again)</span></p>'
        )
        refresh = None
    shown = "\n".join(output) if output else "(the app printed nothing)"
    body = (
        "<h1>The app is not running</h1>"
        f"<p>The app {html.escape(reason)}.</p>{next_step}"
        f"<h2>Its last output</h2><pre>{html.escape(shown)}</pre>"
    )
    return _render("The app is not running", body, refresh_seconds=refresh)


def error_page(status: int, title: str, message: str) -> str:
    body = f"<h1>{status}: {html.escape(title)}</h1><p>{html.escape(message)}</p>"
    return _render(f"{status} {title}", body)


def not_yours_page(viewer: str, owner: str) -> str:
    body = (
        "<h1>403: This server is not yours</h1>"
        f"<p>You are signed in to JupyterHub as <strong>{html.escape(viewer)}</strong>. "
        f"This server belongs to <strong>{html.escape(owner)}</strong>, who has not shared it "
        "with you.</p>"
        "<p>Ask its owner for access, or go to your own server from the hub's home page.</p>"
    )
    return _render("403 This server is not yours", body)
