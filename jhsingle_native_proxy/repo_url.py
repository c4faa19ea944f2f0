"""Repository URLs as text: hiding their credentials, telling repositories apart, naming folders.

Pure string functions, kept out of `checkout` so that the settings and the supervisor can use
them (to show a URL in a message, to pick the default --repofolder) without importing GitPython:
that import fails where git is not installed, and costs start-up time whether a repository is
given or not. Only the standard library is imported here.

Splitting a URL into the clean URL and its credentials, for git itself, is `git_credentials`'s
job; here a URL's user info is only ever removed or masked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote

# scheme:// then the user info, up to the last @ before the host (a password may hold an @).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s'\"<>]*)@")


def redact(text: str) -> str:
    """Remove credentials from any URL in text: https://user:token@host -> https://***@host."""
    return _USERINFO.sub(r"\1***@", text)


def redact_all(text: str, secrets: Iterable[str]) -> str:
    """`redact`, and each of `secrets` masked wherever it shows up on its own (git or an
    installer may print a token bare). Give the longest first: a shorter one may be in it."""
    text = redact(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def without_credentials(url: str) -> str:
    """The URL as it may be stored and shown: no user name, no password."""
    return _USERINFO.sub(r"\1", url)


def url_secrets(url: str) -> list[str]:
    """The parts of the URL's user info that must never be shown, raw and percent-decoded.

    The password if there is one; otherwise the user name, which is the token in
    `https://TOKEN@host/...`. Very short values are left alone (`git@`), as replacing them
    everywhere would garble messages without protecting anything.
    """
    match = _USERINFO.search(url)
    if not match:
        return []
    userinfo = match.group(2)
    user, _, password = userinfo.partition(":")
    secret = password or user
    found = {secret, unquote(secret)}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def repo_name(url: str) -> str:
    """The repository's name in its URL, without `.git`; the host for a URL without a path."""
    text = without_credentials(url.strip())
    host = ""
    if "://" in text:
        text = re.split(r"[?#]", text, maxsplit=1)[0]
        host, _, text = text.split("://", 1)[1].partition("/")
    name = re.split(r"[/:\\]", text.rstrip("/"))[-1]
    if name.lower().endswith(".git"):
        name = name[:-4]
    if name in ("", ".", ".."):
        name = host.rpartition(":")[0] if re.search(r":\d+$", host) else host
    return name or "repo"


def default_folder(url: str, base: str) -> str:
    """Where to check out when --repofolder is not given: base/<repo name without .git>."""
    return os.path.join(base, repo_name(url))


def normalise(url: str) -> str:
    """A URL reduced to what tells repositories apart: no credentials, no trailing / or .git."""
    text = without_credentials(url.strip())
    if "://" in text:
        scheme, _, rest = re.split(r"[?#]", text, maxsplit=1)[0].partition("://")
        host, _, path = rest.partition("/")
        if scheme.lower() == "file":
            text = "/" + path
        else:
            text = f"{scheme.lower()}://{host.lower()}/{path}"
    elif re.match(r"^[^/]*@[^/:]+:", text):  # scp-like user@host:path
        text = text.split("@", 1)[1]
    text = text.rstrip("/")
    if text.endswith(".git"):
        text = text[:-4].rstrip("/")
    return text
