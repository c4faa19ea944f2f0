"""Before the app's first start: the git checkout (if any), and the progress the page shows.

The checkout runs in a child process (`checkout_runner.py`, the other half of this protocol),
so that stopping the server ends git too. The child gets its request as JSON on stdin (the
credentials included: never on a command line nor in an environment) and answers with lines:
`P <progress>`, then one `R <json result>` or `E <error>`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections import deque
from collections.abc import Mapping

from .process import signal_group
from .settings import Settings

log = logging.getLogger("jhsingle_native_proxy")

PROGRESS_LINES_KEPT = 50
# Variables that may hold the repository's credentials: for the checkout's stdin only, never in
# the environment of the checkout child or of the app. The webhook's secret is the proxy's alone.
REPO_SECRET_VARIABLES = frozenset({"JHSNP_REPO", "JHSNP_REPO_TOKEN", "JHSNP_WEBHOOK_SECRET"})
# This server's token for the hub's API (under its name and its older one): never in the
# checkout child's environment; in the app's unless --hide-hub-token.
HUB_TOKEN_VARIABLES = frozenset({"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"})


class NotPrepared(Exception):
    """The checkout failed; the message says why, for the page and the log."""


class ProgressLog:
    """The lines the progress page shows while the app is prepared and started."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=PROGRESS_LINES_KEPT)

    def clear(self) -> None:
        self.lines.clear()

    def add(self, line: str) -> None:
        """Add a line; a percentage update replaces the line it updates (as a terminal would
        with a carriage return), so the page shows git's progress without a flood."""
        line = line.rstrip()
        if not line:
            return
        if self.lines and ":" in line:
            head = line.split(":", 1)[0]
            last = self.lines[-1]
            if last.split(":", 1)[0] == head and "%" in line and "%" in last:
                self.lines[-1] = line
                return
        self.lines.append(line)


def app_environment(environ: Mapping[str, str], *, hide_hub_token: bool = False) -> dict[str, str]:
    """The app's environment: everything but the repository's credentials; without the hub's
    token too with --hide-hub-token.

    By default the app keeps the hub's token, as a notebook's kernels do: an app may call the
    hub's API as its owner (list the owner's servers, read their groups). An owner who does not
    want their app to act with the hub hides it.
    """
    hidden = REPO_SECRET_VARIABLES | (HUB_TOKEN_VARIABLES if hide_hub_token else frozenset())
    return {k: v for k, v in environ.items() if k not in hidden}


def checkout_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The checkout child's environment: neither the repository's credentials (they come on
    stdin) nor the hub's token, which git, and whatever a repository makes it run, never need."""
    hidden = REPO_SECRET_VARIABLES | HUB_TOKEN_VARIABLES
    return {k: v for k, v in environ.items() if k not in hidden}


def warn_if_credentials_visible(settings: Settings) -> None:
    """`--repo https://user:token@host/...` works, but the process list shows it to everyone."""
    if settings.repo_credentials_on_command_line:
        log.warning(
            "--repo holds credentials, which anyone on this machine can read in the process "
            "list: give the URL in JHSNP_REPO, or the token in JHSNP_REPO_TOKEN or a file "
            "(--repo-token-file, JHSNP_REPO_TOKEN_FILE)"
        )


class Checkout:
    """One checkout in its child process; `stop()` ends the child (and git) from outside."""

    def __init__(self, settings: Settings, progress: ProgressLog):
        self.settings = settings
        self.progress = progress
        self._process: asyncio.subprocess.Process | None = None

    def stop(self) -> None:
        if self._process is not None:
            # A checkout under way ends now (git included); the next start repairs it.
            signal_group(self._process.pid, signal.SIGKILL)

    async def run(self) -> None:
        """Check the repository out, or raise NotPrepared.

        A token file is read again each time, so a rotated secret works on "Try again".
        """
        from .git_credentials import read_token_file

        s = self.settings
        password = s.repo_password
        if s.repo_token_file:
            try:
                password = read_token_file(s.repo_token_file)
            except ValueError as e:
                raise NotPrepared(str(e)) from None
        request = {
            "url": s.repo,
            "username": s.repo_username,
            "password": password,
            "folder": s.repofolder,
            "branch": s.repobranch,
            "depth": s.checkout_depth or None,
            "debug": s.debug,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jhsingle_native_proxy.checkout_runner",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=checkout_environment(s.environ),
        )
        self._process = process
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(request).encode())
            await process.stdin.drain()
            process.stdin.close()
            outcome = None
            async for raw in process.stdout:
                kind, _, text = raw.decode("utf-8", "replace").rstrip("\n").partition(" ")
                if kind == "P":
                    self.progress.add(text)
                elif kind in ("R", "E"):
                    outcome = (kind, text)
            code = await process.wait()
        finally:
            self._process = None
        if outcome is None or outcome[0] == "E":
            raise NotPrepared(outcome[1] if outcome else f"the checkout ended with status {code}")
        result = json.loads(outcome[1])
        self.progress.add(f"{result['action']}: {result['branch']} at {result['commit'][:12]}")
        for note in result["notes"]:
            self.progress.add(note)
