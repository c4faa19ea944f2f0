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


# Polls the status endpoint and shows what happens now: the phase and its latest lines (git's
# progress, then the app's output). Once the app is ready it reloads the page (same URL, so the
# user lands where they asked). If the start fails it shows why, with a button to try again,
# and stops polling: retrying is the person's decision, not a loop of ours.
_POLL_SCRIPT = r"""
(function () {
  var url = %s, delay = 400;
  function el(id) { return document.getElementById(id); }
  function check() {
    fetch(url, {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && s.state === "ready") { location.reload(); return; }
        if (s && s.state === "failed" && s.retry_in !== undefined) { location.reload(); return; }
        if (s && s.phase) { el("phase").textContent = s.phase + "\u2026"; }
        if (s && s.lines && s.lines.length) {
          el("lines").textContent = s.lines.join("\n"); el("lines").hidden = false;
          el("lines").scrollTop = el("lines").scrollHeight;
        }
        if (s && s.state === "failed") {
          el("heading").textContent = "Your app could not be started";
          el("reason").textContent = "The app " + s.reason + ".";
          el("failure").hidden = false; el("spinner").hidden = true; el("phase").hidden = true;
          return;
        }
        setTimeout(check, delay);
      })
      .catch(function () { delay = Math.min(delay * 1.5, 3000); setTimeout(check, delay); });
  }
  setTimeout(check, 200);
})();
"""


def loading_page(
    status_url: str, phase: str = "", lines: list[str] | None = None, previous: str = ""
) -> str:
    """The progress page. `previous` says why the last attempt failed, if one did."""
    shown = "\n".join(lines or [])
    earlier = (
        f'<p class="muted">The last attempt failed: the app {html.escape(previous)}. '
        "Trying again now.</p>"
        if previous
        else ""
    )
    body = (
        '<h1><span id="spinner" class="spinner" aria-hidden="true"></span>'
        '<span id="heading">Starting your app</span></h1>'
        f'<p id="phase" role="status" aria-live="polite">{html.escape(phase or "Starting the app")}'
        f"&hellip;</p>{earlier}"
        '<div id="failure" hidden role="alert"><p id="reason"></p>'
        '<p><a class="button" href="">Try again</a></p></div>'
        f'<pre id="lines" aria-label="Latest progress"{"" if shown else " hidden"}>'
        f"{html.escape(shown)}</pre>"
        '<p class="muted">This page moves on by itself as soon as the app is ready.</p>'
    )
    return _render(
        "Starting your app", body, refresh_seconds=5, script=_POLL_SCRIPT % json.dumps(status_url)
    )


def app_failed_page(reason: str, output: list[str] | None, retry_in: float | None) -> str:
    """Why the app is not running; `output` is None for a viewer who may not see it."""
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
    if output is None:
        last = '<p class="muted">Its owner can see the app\'s output here.</p>'
    else:
        shown = "\n".join(output) if output else "(the app printed nothing)"
        last = f"<h2>Its last output</h2><pre>{html.escape(shown)}</pre>"
    body = f"<h1>The app is not running</h1><p>The app {html.escape(reason)}.</p>{next_step}{last}"
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
