"""`--env-file` and the frozen `SecretSettings` that `Settings.secrets` carries; the warning
about secrets given with `--env`, which every local user can read in the process list.

Kept apart from cli.py and settings.py, as the package options are. The option's callback
reads each file once at launch, so a missing, unreadable or bad file is a usage error before
anything starts; the supervisor reads them again before every start (env_file.py says why).
Precedence, lowest first: the inherited environment; a preset's, the repository's and a
`--config` server's `env`; the `--env-file` files in their order; `--env` (launch.py).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import click

from .env_file import AppEnvironmentError, read_env_files
from .http_hygiene import scrub_uri
from .repo_url import url_secrets

F = TypeVar("F", bound=Callable)
log = logging.getLogger("jhsingle_native_proxy")

# Names that say a variable holds a credential, whatever its value looks like.
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE
)
# Values shaped like the tokens of well-known services (GitHub, GitLab, Hugging Face, OpenAI,
# Slack, AWS, a JWT), or a long word of mixed-case letters and digits, as generated keys are.
_TOKEN_SHAPED = re.compile(
    r"(?:gh[pousr]_|github_pat_|glpat-|hf_|sk-|xox[abpr]-|AKIA|eyJ)[A-Za-z0-9_\-.]{16,}"
)
_OPAQUE_WORD = re.compile(r"[A-Za-z0-9_\-+=]{24,}")


@dataclass(frozen=True)
class SecretSettings:
    """Where the app's secrets come from, and which variables the app needs."""

    # --env-file, absolute paths, in the order given (a later file's value wins).
    env_files: tuple[str, ...] = ()
    # The variables the repository's manifest says the app needs (`required_env`), laid in by
    # repository_app after each checkout; a start without one of them stops, naming it.
    required_env: tuple[str, ...] = ()


def _secret_settings(ctx: click.Context, param: click.Parameter, value) -> SecretSettings:
    """The files made absolute, and each read once now: a bad one is click's usage error."""
    files = tuple(os.path.abspath(os.path.expanduser(path)) for path in value or ())
    try:
        read_env_files(files)
    except AppEnvironmentError as e:  # names the file and line, never a value
        raise click.UsageError(str(e), ctx) from None
    return SecretSettings(env_files=files)


def secret_options(f: F) -> F:
    """The click option of the app's secrets: `--env-file`, given to Settings as `secrets`."""
    return click.option(
        "--env-file",
        "secrets",
        multiple=True,
        metavar="FILE",
        callback=_secret_settings,
        help="Set the app's environment from a dotenv file (NAME=VALUE lines, # comments, "
        "quotes), read again before every start: the way to give secrets, which --env shows "
        "to every local user. Under --env, over the environment; repeatable.",
    )(f)


def looks_secret(name: str, value: str) -> bool:
    """Whether `--env NAME=VALUE` looks like a credential: by its name, by the patterns our logs
    scrub (a URL's user info, a `token=` argument), or by the shape of well-known tokens."""
    if not value:
        return False
    return bool(
        _SECRET_NAME.search(name)
        or url_secrets(value)
        or scrub_uri(value) != value
        or _TOKEN_SHAPED.search(value)
        or any(_mixed(word) for word in _OPAQUE_WORD.findall(value))
    )


def _mixed(word: str) -> bool:
    """Upper and lower case letters and digits together: a generated key, not a word or a hash."""
    return (
        any(c.isupper() for c in word)
        and any(c.islower() for c in word)
        and any(c.isdigit() for c in word)
    )


def warn_secrets_on_command_line(given_env: Mapping[str, str]) -> None:
    """One warning per `--env` variable that looks like a credential, naming it (never its
    value): the process list shows the command line to every user of the machine."""
    for name, value in given_env.items():
        if looks_secret(name, value):
            log.warning(
                "--env %s looks like a secret, and every user of this machine can read it in "
                "the process list: give it in a file with --env-file instead",
                name,
            )
