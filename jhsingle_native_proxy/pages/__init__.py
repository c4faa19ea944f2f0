"""Our own pages: tornado templates (the *.html files here), inline CSS, no external assets.

Callers pass plain text. Every `{{ value }}` in a template is HTML-escaped by tornado's template
engine (autoescape is on, so a template cannot forget it); a value put into a `<script>` goes
through `script_json` instead, because HTML escaping does not apply inside a script element.
"""

from __future__ import annotations

import json
from importlib.resources import files

from tornado import template

# The script --rewrite-urls puts first in pages (proxy/rewrite_response.py), served by app.py.
REWRITE_SCRIPT = "rewrite.js"

# Read through importlib.resources, so the pages are found wherever the package is installed;
# compiled on first use (tornado's loader caches each template).
_LOADER = template.DictLoader(
    {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in files(__package__).iterdir()
        if entry.name.endswith(".html")
    },
    whitespace="all",
)

# In a script element the HTML parser ends the script at the first `</script`, whatever the
# JavaScript around it means, and `<!--` puts it in a mode where `<script` nests. Neither can
# appear once every `<` is written `\u003c`, which is the same character to JavaScript. `>` and
# `&` go too (as in Jinja's htmlsafe_json_dumps), and U+2028/U+2029, which JSON allows in
# strings but which end a line in JavaScript engines older than ES2019.
_SCRIPT_SAFE = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def script_json(value: object) -> str:
    """`value` as a JavaScript literal (JSON) that cannot end or escape a `<script>` element."""
    return json.dumps(value).translate(_SCRIPT_SAFE)


def _render(name: str, **values: object) -> str:
    return _LOADER.load(name).generate(script_json=script_json, **values).decode("utf-8")


def loading_page(
    status_url: str,
    phase: str = "",
    lines: list[str] | None = None,
    previous: str = "",
    waking: bool = False,
) -> str:
    """The progress page. `previous` says why the last attempt failed, if one did; `waking`:
    the app slept (--idle-stop) and this start wakes it."""
    return _render(
        "loading.html",
        status_url=status_url,
        phase=phase,
        shown="\n".join(lines or []),
        previous=previous,
        heading="Waking up your app" if waking else "Starting your app",
    )


def app_failed_page(reason: str, output: list[str] | None, retry_in: float | None) -> str:
    """Why the app is not running; `output` is None for a viewer who may not see it."""
    return _render(
        "app_failed.html",
        reason=reason,
        output=output,
        retry_in=None if retry_in is None else max(1, round(retry_in)),
        # Reloaded just after the restart is due; without one, only the person reloads.
        refresh=None if retry_in is None else max(1, round(retry_in + 0.5)),
    )


def error_page(status: int, title: str, message: str) -> str:
    return _render("error.html", status=status, title=title, message=message)


def not_yours_page(viewer: str, owner: str) -> str:
    return _render("not_yours.html", viewer=viewer, owner=owner)


def console_page(
    view: dict[str, object],
    *,
    status_url: str,
    restart_url: str,
    pull_url: str,
    app_url: str,
    repo: str = "",
    branch: str = "",
    form_token: str = "",
    deployment: dict | None = None,
    insight: dict | None = None,
) -> str:
    """The owner's console. `view` is what `console.console_view` reports (its JSON, too);
    `repo` must already be redacted. Without `pull_url` there is no "Pull and restart".
    `form_token` goes with the buttons' POSTs (console.form_token). `deployment`: publish
    mode's revisions (`Deployment.view`), or None. `insight`: console.insight_view's usage,
    last end and runs (nothing yet when None)."""
    from ..run_history import RUN_BYTES_KEPT, RUN_LINES_KEPT
    from ..usage_history import SAMPLE_INTERVAL

    console_url = restart_url.rsplit("/", 1)[0] + "/"
    return _render(
        "console.html",
        state=view["state"],
        uptime=view["uptime"],
        restarts=view["restarts"],
        pid=view["pid"],
        app=view.get("app") or "",
        reason=view.get("reason") or "",
        env_file_names=view.get("env_file_names") or [],
        shown="\n".join(view["lines"]),  # type: ignore[arg-type]
        status_url=status_url,
        restart_url=restart_url,
        pull_url=pull_url,
        app_url=app_url,
        repo=repo,
        branch=branch,
        form_token=form_token,
        deployment=deployment,
        console_url=console_url,
        insight=insight or {"usage": {"memory": "—", "cpu": "—"}, "last_end": "", "runs": []},
        usage_url=console_url + "usage.json",
        usage_interval=SAMPLE_INTERVAL,
        runs_url=console_url + "runs/",
        run_lines=RUN_LINES_KEPT,
        run_kib=RUN_BYTES_KEPT // 1024,
    )
