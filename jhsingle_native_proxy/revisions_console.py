"""The console's part for publish mode (--follow): the revisions as JSON, and the buttons
"Update now", "Roll back" (one per previous revision) and "Follow the branch".

The same access as the console (`ConsoleBase`: `AuthorizedFirst`, then the owner and admins
only), and the buttons are POSTs that carry the console's form token, checked as Restart's is
(`RestartHandler.carries_form_token`). Registered (app.py) only in publish mode.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from tornado import web

from .console import ConsoleBase, RestartHandler

log = logging.getLogger("jhsingle_native_proxy")

# Paths under `{prefix}_jhsnp/`.
REVISIONS, UPDATE, ROLL_BACK, FOLLOW = "revisions.json", "update", "rollback", "follow"


class RevisionsHandler(ConsoleBase):
    """`{prefix}_jhsnp/revisions.json`: the live revision, the last ones and their state."""

    async def get(self) -> None:
        deployment = self.services.deployment
        if deployment is None:
            raise web.HTTPError(404)
        self.finish(deployment.view(with_output=True))


class RevisionAction(RestartHandler):
    """A POST of the console's revision buttons: the form token checked, then `act`."""

    action = ""

    async def post(self) -> None:
        deployment = self.services.deployment
        if deployment is None:
            raise web.HTTPError(404)
        if self.refused_as_forged():
            return
        who = (self.viewer or {}).get("name") or self.request.remote_ip
        log.info("%s asked by %s", self.action, who)
        answer = await self.act(deployment)
        if answer is None:
            return
        if "application/json" in self.request.headers.get("Accept", ""):
            self.finish(answer)
        else:
            self.redirect(self.console_url(), status=303)

    async def act(self, deployment) -> dict | None:
        raise NotImplementedError


class UpdateHandler(RevisionAction):
    """`{prefix}_jhsnp/update` (POST): look at the branch now (a failed commit is tried again)."""

    action = "Update now"

    async def act(self, deployment) -> dict | None:
        deployment.request_update("the console", retry_failed=True)
        return {"asked": True}


class FollowHandler(RevisionAction):
    """`{prefix}_jhsnp/follow` (POST): no longer pinned to a rolled-back revision."""

    action = "Follow the branch"

    async def act(self, deployment) -> dict | None:
        deployment.follow_branch()
        return {"asked": True}


class RollBackHandler(RevisionAction):
    """`{prefix}_jhsnp/rollback` (POST, `commit=`): switch to a previous revision."""

    action = "Roll back"

    async def act(self, deployment) -> dict | None:
        commit = parse_qs(self._form.decode("latin-1")).get("commit", [""])[0].strip()
        if not await deployment.roll_back(commit):
            self.send_error_page(409, "There is no previous revision with that commit to go to.")
            return None
        live = deployment.view(with_output=False)["live"]
        return {"live": live["commit"] if live else None}


ROUTES = ((REVISIONS, RevisionsHandler), (UPDATE, UpdateHandler), (ROLL_BACK, RollBackHandler),
          (FOLLOW, FollowHandler))  # fmt: skip
