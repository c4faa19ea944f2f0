"""The webhook's shared secret: its command-line option, and where it is read from.

The secret is `--webhook-secret-file FILE` (the file's content, stripped: a mounted Kubernetes
secret, say) or the environment variable JHSNP_WEBHOOK_SECRET; never a command-line value,
which every user of the machine can read in the process list. It is read once, at start: a
missing, unreadable or empty file stops the start with one `Error:` line. The variable is taken
out of the app's and the checkout child's environment (prepare.REPO_SECRET_VARIABLES), and the
secret is kept out of `repr(Settings)`, the log and every page.

Kept apart from webhook.py, which imports tornado: the command line and the settings need
this part only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

import click

from .git_credentials import read_token_file

SECRET_VARIABLE = "JHSNP_WEBHOOK_SECRET"


def webhook_option(f):
    """The click option, declared here so that cli.py only applies it."""
    return click.option(
        "--webhook-secret-file",
        default="",
        metavar="FILE",
        help="A file holding the shared secret of the webhook at _jhsnp/webhook, through "
        "which a git host (GitHub, Gitea, GitLab, or any generic HMAC sender) announces pushes "
        "to the branch a published app follows [default: the secret itself in "
        f"{SECRET_VARIABLE}]. Without a secret there is no webhook.",
    )(f)


def read_webhook_secret(file_option: object, environ: Mapping[str, str]) -> dict[str, str]:
    """`webhook_secret` and `webhook_secret_file` (made absolute) for Settings.

    Raises ValueError, with a message for the admin that holds no secret: the file cannot be
    read, is empty or holds several lines; the variable holds a line break; both are given.
    """
    path = str(file_option or "").strip()
    from_environ = environ.get(SECRET_VARIABLE, "").strip()
    if path and from_environ:
        raise ValueError(
            f"{SECRET_VARIABLE} and --webhook-secret-file are both set: give the webhook's "
            "secret once"
        )
    if any(c in from_environ for c in "\r\n\0"):
        raise ValueError(f"{SECRET_VARIABLE} holds more than one line")
    if not path:
        return {"webhook_secret": from_environ, "webhook_secret_file": ""}
    path = os.path.abspath(os.path.expanduser(path))
    secret = read_token_file(path, what="webhook secret file")
    return {"webhook_secret": secret, "webhook_secret_file": path}


def readable_by_everyone(path: str) -> bool:
    """Whether every user of the machine may read the file (worth a warning at start)."""
    try:
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False
