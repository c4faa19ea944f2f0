"""Credentials for git over HTTP(S), kept off every command line and out of every file.

A URL such as `https://user:token@host/repo.git` is split, as early as possible, into the clean
URL (`https://host/repo.git`) and `Credentials`. Git only ever sees the clean URL, on its command
line and in `.git/config`; the credentials reach it through a credential helper of ours that
reads them from git's environment.

Why a credential helper, given with `-c` on git's command line:

- `-c credential.helper=` (an empty value, git >= 2.9) empties the list of helpers from the
  user's and the system's configuration, and `-c credential.<scheme>://<host>.helper=!...`
  then adds ours, for the repository's host only. So the user's helpers are neither asked
  (they might hand over other, stale credentials) nor told to store ours: with a URL holding
  the token, git "approves" it after a successful fetch to every configured helper, and
  `credential.helper=store` writes it in plain text to `~/.git-credentials`. A redirect to
  another host does not get the token either.
- The helper's command line holds no secret: the username and password are in the environment
  of git (`JHSNP_GIT_USERNAME`, `JHSNP_GIT_PASSWORD`), which the helper inherits. A process's
  environment is readable in `/proc/PID/environ` by the same user (and root) only; its command
  line is readable by everybody on the machine.
- It is git's own interface for this (git-credential(7)), stable since git 1.7.9, works
  with every command that talks to the remote (clone, fetch, ls-remote, pull), with any HTTP
  authentication scheme curl negotiates, and only after the server asks for authentication.
  GitPython passes the `env` it is given to git on top of `os.environ`, so nothing of GitPython
  is bypassed.

Rejected: `GIT_ASKPASS` is asked only after the user's helpers, keeps the store-in-the-user's-
helpers problem above, and must name an executable file (no arguments), which a pip-installed
package cannot rely on. `http.extraHeader` through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n` sends
the header with every request before any 401, allows only Basic, and `GIT_CONFIG_COUNT`
replaces whatever `GIT_CONFIG_*` configuration the user's environment already has.

The helper is this very file run as a script (`python -I -S git_credentials.py get`), so this
module imports nothing but the standard library: isolated mode keeps the checkout folder and
the package's own folder off `sys.path`, and `PYTHON*` variables out.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
from urllib.parse import unquote

# For a token given without a user name. GitHub accepts any non-empty user name with a personal
# access token and uses `x-access-token` for its app tokens; GitLab accepts any non-empty user
# name with personal, project and group access tokens. Bitbucket wants `x-token-auth`.
DEFAULT_USERNAME = "x-access-token"

USERNAME_VARIABLE = "JHSNP_GIT_USERNAME"
PASSWORD_VARIABLE = "JHSNP_GIT_PASSWORD"

# The schemes for which git uses its credential system (through curl). Other URLs (ssh, git,
# file, scp-like `user@host:path`) are left alone: their user name is not a secret.
_SPLIT = re.compile(
    r"(?is)^(?P<scheme>https?|ftps?)://(?:(?P<userinfo>[^/?#]*)@)?(?P<host>[^/?#]*)(?P<rest>.*)$"
)


class Credentials:
    """A user name and a password (or token) for the repository's host; never shown.

    `repr` and `str` hide both: in the form `https://TOKEN@host` the user name is the token.
    """

    __slots__ = ("username", "password")

    def __init__(self, username: str, password: str = ""):
        for value in (username, password):
            # A line break would add lines of its own to git's credential protocol.
            if any(c in value for c in "\r\n\0"):
                raise ValueError("the repository's user name or token holds a line break")
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return "Credentials(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.username, self.password) == (other.username, other.password)

    def __hash__(self) -> int:
        return hash((self.username, self.password))

    def secrets(self) -> list[str]:
        """What must be scrubbed from any text shown: the password, else the user name (which
        is the token in `https://TOKEN@host/...`). Values under 4 characters are left alone:
        replacing them everywhere would garble messages without protecting anything."""
        secret = self.password or self.username
        return [secret] if len(secret) >= 4 else []


def takes_credentials(url: str) -> bool:
    """Whether git would use a user name and password for this URL (http, https, ftp, ftps)."""
    return _SPLIT.match(url.strip()) is not None


def split_url(url: str) -> tuple[str, Credentials | None]:
    """`https://user:token@host/r.git` -> (`https://host/r.git`, Credentials("user", "token")).

    User name and password are percent-decoded, as git decodes them. URLs of other schemes are
    returned as they are (stripped of surrounding spaces), with no credentials.
    """
    url = url.strip()
    match = _SPLIT.match(url)
    if not match or match.group("userinfo") is None:
        return url, None
    clean = f"{match.group('scheme')}://{match.group('host')}{match.group('rest')}"
    username, _, password = match.group("userinfo").partition(":")
    if not username and not password:
        return clean, None
    return clean, Credentials(unquote(username), unquote(password))


def with_token(credentials: Credentials | None, token: str, username: str = "") -> Credentials:
    """The credentials once a token is given apart from the URL: the token is the password, the
    user name is the URL's, else `username`, else DEFAULT_USERNAME."""
    name = (credentials.username if credentials else "") or username or DEFAULT_USERNAME
    return Credentials(name, token)


# A token file holds one line; anything longer is not one (and is not read into memory).
TOKEN_FILE_LIMIT = 64 * 1024


def read_token_file(path: str, what: str = "token file") -> str:
    """The token in a file (a mounted Kubernetes secret, say), without surrounding whitespace:
    `echo TOKEN > file` and `kubectl create secret --from-file` leave a final newline. `what`
    names the file in messages (the webhook's secret file uses this too).

    Raises ValueError, with a message for the admin, if it cannot be read, is empty or holds
    several lines.
    """
    try:
        # Not blocking in open(): a FIFO would hold the start forever. A regular file only (a
        # symlink to one, as Kubernetes mounts secrets, is fine), read up to a bound: /dev/zero
        # would be read until memory runs out.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"the {what} {path} is not a regular file")
            data = f.read(TOKEN_FILE_LIMIT + 1)
        if len(data) > TOKEN_FILE_LIMIT:
            raise ValueError(f"the {what} {path} is too long for a token")
        token = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or e
        raise ValueError(f"the {what} {path} cannot be read: {reason}") from None
    if not token:
        raise ValueError(f"the {what} {path} is empty")
    if any(c in token for c in "\r\n\0"):
        raise ValueError(f"the {what} {path} holds more than one line")
    return token


def credential_origin(clean_url: str) -> str:
    """`scheme://host[:port]` of an http(s) URL: what the helper is configured for."""
    match = _SPLIT.match(clean_url.strip())
    if not match:
        raise ValueError("credentials can only be used with http:// or https:// URLs")
    return f"{match.group('scheme').lower()}://{match.group('host')}"


def helper_command() -> str:
    """The helper as git runs it (through `sh -c`, with the action appended): no secret in it."""
    python = sys.executable or "python3"
    return f"!{shlex.quote(python)} -I -S {shlex.quote(os.path.abspath(__file__))}"


def git_config_args(clean_url: str, credentials: Credentials | None) -> list[str]:
    """`-c` options for every git command of a checkout: with credentials, only our helper, for
    the repository's host; without, nothing (the user's own helpers still apply)."""
    if credentials is None:
        return []
    origin = credential_origin(clean_url)
    return ["-c", "credential.helper=", "-c", f"credential.{origin}.helper={helper_command()}"]


def git_environment(credentials: Credentials | None) -> dict[str, str]:
    """The variables the helper reads, for git's environment only (never its command line)."""
    if credentials is None:
        return {}
    return {USERNAME_VARIABLE: credentials.username, PASSWORD_VARIABLE: credentials.password}


def main(argv: list[str] | None = None) -> int:
    """The credential helper: answer `get` from the environment; `store` and `erase` keep and
    forget nothing, as there is nothing to keep."""
    args = sys.argv[1:] if argv is None else argv
    if args[-1:] != ["get"]:
        return 0
    for line in sys.stdin:  # git's request (protocol, host): read it all before answering
        if not line.strip():
            break
    username = os.environ.get(USERNAME_VARIABLE)
    password = os.environ.get(PASSWORD_VARIABLE)
    if username is None and password is None:
        return 0
    sys.stdout.write(f"username={username or ''}\npassword={password or ''}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
