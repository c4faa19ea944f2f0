"""Header and URL hygiene between the client and the app: pure functions, tested on their own."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

# RFC 9110 section 7.6.1 connection-specific fields, plus the legacy Proxy-Connection and the
# Expect handshake (tornado answers `100-continue` to the client itself).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# Identity the proxy vouches for. A client must never be able to send its own copy.
USER_HEADER = "X-CDSDASHBOARDS-JH-USER"
USER_QUERY_ARG = "CDSDASHBOARDS_JH_USER"
# Headers that only the proxy may set for the app.
PROXY_SET = frozenset({"x-forwarded-prefix"})


def canonical_name(name: str) -> str:
    """Header names compare without case, and `_` spells `-` for servers that map them alike."""
    return name.strip().lower().replace("_", "-")


_USER_QUERY = canonical_name(USER_QUERY_ARG)

# The viewer in the words of auth proxies (oauth2-proxy's X-Forwarded-* and its X-Auth-Request-*
# for nginx), and our signed token (viewer_identity.py). Apps written for such a proxy trust
# them, so a client's copies are dropped whether or not --forward-user-headers/-jwt is on.
FORWARDED_USER = "X-Forwarded-User"
FORWARDED_PREFERRED_USERNAME = "X-Forwarded-Preferred-Username"
FORWARDED_EMAIL = "X-Forwarded-Email"
FORWARDED_GROUPS = "X-Forwarded-Groups"
FORWARDED_JWT = "X-Forwarded-Access-Jwt"
IDENTITY_HEADERS = frozenset(
    canonical_name(n)
    for n in (
        USER_HEADER,
        FORWARDED_USER,
        FORWARDED_PREFERRED_USERNAME,
        FORWARDED_EMAIL,
        FORWARDED_GROUPS,
        FORWARDED_JWT,
        "X-Forwarded-Access-Token",
        "X-Auth-Request-User",
        "X-Auth-Request-Preferred-Username",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
        "X-Auth-Request-Access-Token",
        # Other auth proxies' spellings (Authelia and Authentik's forward auth, Apache's and
        # Kubernetes' front proxies, Grafana's auth proxy): we never send them, so an app set up
        # to trust one must never get a client's.
        "Remote-User",
        "Remote-Groups",
        "Remote-Email",
        "Remote-Name",
        "X-Remote-User",
        "X-Remote-Group",
        "X-Webauth-User",
    )
)


def connection_tokens(values: Iterable[str]) -> set[str]:
    """Header names listed in Connection headers: they are hop-by-hop too."""
    return {canonical_name(t) for v in values for t in v.split(",") if t.strip()}


def request_headers_for_app(
    pairs: Iterable[tuple[str, str]],
    connection_values: Iterable[str],
    *,
    client_ip: str,
    protocol: str,
    host: str,
    prefix: str,
) -> list[tuple[str, str]]:
    """The client's headers as the app should get them.

    Hop-by-hop headers go, `Expect` goes, forged identity goes (IDENTITY_HEADERS), and the
    X-Forwarded-* family says where the request came from. X-Forwarded-Proto/Host already set
    by the hub's proxy are kept: they describe the browser's view, which is what the app needs
    to build URLs.
    """
    drop = HOP_BY_HOP | connection_tokens(connection_values) | {"expect"} | PROXY_SET
    out: list[tuple[str, str]] = []
    forwarded_for = []
    seen = set()
    for name, value in pairs:
        key = canonical_name(name)
        if key in drop or key in IDENTITY_HEADERS:
            continue
        if key == "x-forwarded-for":
            forwarded_for.append(value)
            continue
        seen.add(key)
        out.append((name, value))
    forwarded_for.append(client_ip)
    out.append(("X-Forwarded-For", ", ".join(forwarded_for)))
    if "x-forwarded-proto" not in seen:
        out.append(("X-Forwarded-Proto", protocol))
    if "x-forwarded-host" not in seen and host:
        out.append(("X-Forwarded-Host", host))
    out.append(("X-Forwarded-Prefix", prefix))
    return out


def response_headers_for_client(
    pairs: Iterable[tuple[str, str]], connection_values: Iterable[str]
) -> list[tuple[str, str]]:
    """The app's response headers minus hop-by-hop ones; repeated headers all kept, in order."""
    drop = HOP_BY_HOP | connection_tokens(connection_values)
    return [(n, v) for n, v in pairs if canonical_name(n) not in drop]


_QUERY_SEPARATORS = re.compile(r"([&;])")


def strip_query_arg(query: str, name_canonical: str = _USER_QUERY) -> str:
    """Remove every `name=value` pair whose name matches, leaving the rest byte for byte.

    The name is compared after percent-decoding, without case, with `_` and `-` alike, so that no
    spelling of the identity argument slips through. Pairs are split on `;` as well as `&`: some
    parsers (older Python, Java servlet containers) take `;` as a separator, and would otherwise
    read `a=1;NAME=forged` as a forged value that we never saw.
    """
    if not query:
        return query
    pieces = _QUERY_SEPARATORS.split(query)
    kept: list[str] = []
    # pieces alternate: pair, separator, pair, separator, ..., pair
    for i in range(0, len(pieces), 2):
        part = pieces[i]
        key = part.split("=", 1)[0]
        if canonical_name(unquote(key.replace("+", " "))) == name_canonical:
            continue
        if kept:
            kept.append(pieces[i - 1])
        kept.append(part)
    return "".join(kept)


# Query arguments that carry credentials: a hub token, an OAuth code or state, an XSRF token.
_SECRET_ARGS = frozenset(
    canonical_name(n) for n in ("token", "access_token", "code", "state", "_xsrf")
)


def scrub_uri(uri: str) -> str:
    """A request URI fit for a log line: the values of credential arguments replaced.

    `?token=...` authenticates with the hub, and `?code=...&state=...` finishes a login; either in
    a log file would let whoever reads it act as the viewer. Names are compared as the server
    reads them (percent-decoded, without case, `&` or `;` between pairs), so `%74oken=` is
    scrubbed too.
    """
    path, sep, rest = uri.partition("?")
    if not sep or "=" not in rest:
        return uri
    query, hash_sep, fragment = rest.partition("#")
    pieces = _QUERY_SEPARATORS.split(query)
    for i in range(0, len(pieces), 2):
        key, eq, _ = pieces[i].partition("=")
        if eq and canonical_name(unquote(key.replace("+", " "))) in _SECRET_ARGS:
            pieces[i] = key + "=[secret]"
    return f"{path}?{''.join(pieces)}{hash_sep}{fragment}"


# The most of a request's method and URI one access line shows: a client may send up to
# tornado's header limit (64 KiB) of either, and every refused request is logged at INFO.
LOGGED_METHOD_CHARS = 32
LOGGED_URI_CHARS = 2048


def loggable_request(method: str, uri: str) -> tuple[str, str]:
    """A request's method and URI for an access line: credentials scrubbed first, then each cut
    to a bound (marked with an ellipsis), so one client's request cannot make a line of 64 KiB."""

    def cut(text: str, limit: int) -> str:
        return text if len(text) <= limit else text[:limit] + "…"

    return cut(method, LOGGED_METHOD_CHARS), cut(scrub_uri(uri), LOGGED_URI_CHARS)


# Query arguments that carry the viewer's hub token (JupyterHub reads `token`; `access_token` is
# the OAuth spelling): a page's address must not keep them, or its Referer hands them on.
_TOKEN_ARGS = (canonical_name("token"), canonical_name("access_token"))


def without_token_args(query: str) -> str:
    """`query` without `token` and `access_token`, in every spelling `strip_query_arg` knows."""
    for name in _TOKEN_ARGS:
        query = strip_query_arg(query, name)
    return query


def referer_without_tokens(referer: str, host: str) -> str:
    """A Referer from our own origin (`host`) without the token arguments of its query.

    A viewer who came with `?token=` is sent on to the same address without it, but a page
    that an older version served, or one the viewer opened before, may still carry it: every
    request its page makes would hand the viewer's token to the app in Referer.
    """
    head, sep, rest = referer.partition("?")
    # Most queries name no token (and hide no name behind a percent-encoding): left at once.
    if not sep or ("oken" not in rest.lower() and "%" not in rest):
        return referer
    try:
        if urlsplit(head).netloc.lower() != host.lower():
            return referer
    except ValueError:
        return referer
    query, hash_sep, fragment = rest.partition("#")
    query = without_token_args(query)
    return f"{head}{'?' + query if query else ''}{hash_sep}{fragment}"


# A host name's label (RFC 1123): letters, digits and hyphens, at most 63, never a hyphen first
# or last, so that no Host can read as an option (`--help`) where `{origin_host}` lands in a
# command. `_` is tolerated as a letter: Docker Compose's container names hold it, browsers send
# it, and it means nothing to a shell or an option parser.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?)\]"
    rf"|(?P<name>{_LABEL}(?:\.{_LABEL})*\.?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
MAX_HOST_NAME = 253


def split_host(host: str) -> tuple[str, int | None] | None:
    """`host[:port]` or `[ipv6][:port]` from a Host header, or None if it is anything else.

    A name is RFC 1123's (labels of letters, digits and inner hyphens; `_` tolerated, see
    `_LABEL`), at most 253 characters; an IPv6 literal must parse. A Host header is client input,
    and it can end up in the app's command line through `{origin_host}`.
    """
    match = _HOST.fullmatch(host or "")
    if match is None:
        return None
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    ipv6 = match.group("ipv6")
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6.split("%25", 1)[0])
        except ValueError:
            return None
        return ipv6.lower(), int(port) if port else None
    name = match.group("name").lower().rstrip(".")
    if len(name) > MAX_HOST_NAME:
        return None
    return name, int(port) if port else None


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def is_loopback_name(name: str) -> bool:
    """`localhost`, `*.localhost` (which browsers resolve to loopback) or a loopback address."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# What a browser ignores when it parses a URL: tab, CR and LF anywhere, C0 controls and spaces
# at either end.
_URL_IGNORED = re.compile(r"[\t\r\n]")
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))


def leaves_origin(location: str) -> bool:
    """True for a path-looking Location that a browser would read as another host.

    `//host/x`, `/\\host/x` and `\\\\host/x` are network-path references to a browser: a
    backslash counts as a slash in http URLs, and whitespace is dropped before parsing.
    """
    text = _URL_IGNORED.sub("", location).lstrip(_C0_AND_SPACE)
    return len(text) >= 2 and text[0] in "/\\" and text[1] in "/\\"


def rewrite_location(location: str, base_url: str, app_port: int | None) -> str:
    """Make a redirect from the app point under the prefix, and never off our origin by mistake.

    `/path` becomes `{base_url}/path`, unless it already starts with the prefix (apps told their
    base URL add it themselves). An absolute URL pointing at the app's own loopback address
    becomes a path under the prefix. `//host/...` (and its backslash and whitespace spellings) is
    what an app answers when it was asked for the path `//host/...`, which `{prefix}//host` gives
    it: it meant a path, so it stays one, under the prefix (at the root prefix its leading slashes
    fold into one). Relative paths and explicit `scheme://other.host/` links are the app's own
    business and are left alone.
    """
    if leaves_origin(location):
        path = _URL_IGNORED.sub("", location).lstrip(_C0_AND_SPACE + "/\\")
        return f"{base_url}//{path}" if base_url else "/" + path
    if location.startswith("/"):
        if not base_url or location == base_url or location.startswith(base_url + "/"):
            return location
        return base_url + location
    if app_port is not None and "://" in location:
        try:
            parts = urlsplit(location)
            port = parts.port
        except ValueError:
            return location
        if parts.hostname in ("127.0.0.1", "localhost", "::1") and port == app_port:
            path = parts.path or "/"
            return rewrite_location(
                urlunsplit(("", "", path, parts.query, parts.fragment)), base_url, None
            )
    return location


def cookie_path_under_prefix(set_cookie: str, base_url: str) -> str:
    """A Set-Cookie from the app, with a `Path` outside the prefix moved under it.

    The app's `/` is the prefix (it is stripped on the way in), so `Path=/` means
    `{base_url}/` and `Path=/x` means `{base_url}/x`, as a redirect's `/x` does. Left as they
    were, on a hub whose servers share one origin, the browser would send the cookie to every
    other user's server: a visitor's session with their own app, handed to the app of whoever's
    page they open. A cookie without a `Path` (or with one that is not a path) gets the
    request's folder from the browser, which is under the prefix already. Every `Path` is
    rewritten, as a browser takes the last. `base_url` is '' at the root prefix and for apps
    that see the whole URL (--absolute-url), which are left alone.
    """
    if not base_url:
        return set_cookie
    parts = set_cookie.split(";")
    changed = False
    for i in range(1, len(parts)):
        attribute, eq, value = parts[i].partition("=")
        path = value.strip()
        if attribute.strip().lower() != "path" or not path.startswith("/"):
            continue
        if path == base_url or path.startswith(base_url + "/"):
            continue
        parts[i] = f" Path={base_url}{path}"
        changed = True
    return ";".join(parts) if changed else set_cookie


def service_worker_scope(allowed: str, request_path: str, prefix: str, base_url: str) -> str | None:
    """The app's `Service-Worker-Allowed` kept under the prefix, or None to drop it.

    The header widens how much of the origin a service worker may control. On a hub whose
    servers share one origin, `Service-Worker-Allowed: /` would let one user's app install a
    worker that answers for the hub and every other user's server, in the browser of whoever
    visits it. The value is read as the browser reads it (a URL relative to the script's, which
    is `request_path`); the app's `/` is the prefix unless it sees the whole URL (`base_url`
    is '' then). What still lands outside the prefix is dropped: the browser then keeps the
    worker within the script's folder, which is under the prefix. What is kept goes out
    percent-encoded as checked, so a browser cannot read a dot segment into it.
    """
    value = allowed.strip()
    app_rooted = base_url and value.startswith("/") and not value.startswith("//")
    if app_rooted and not (value == base_url or value.startswith(base_url + "/")):
        value = base_url + value
    try:
        resolved = urlsplit(urljoin(request_path, value))
    except ValueError:
        return None
    if resolved.scheme or resolved.netloc:
        return None
    path = posixpath.normpath(unquote(resolved.path))
    if value.endswith("/") or resolved.path.endswith("/"):
        path = path.rstrip("/") + "/"
    if "\\" in path or not (path + "/").startswith(prefix.rstrip("/") + "/"):
        return None
    # Sent encoded again, so that the browser, which decodes it once more, reads the path that
    # was checked: `%252e` decoded here is `%2e`, a dot segment to a browser; a decoded tab
    # would be dropped by its URL parser (`.\t.` is `..`).
    return quote(path, safe="/")


_NOT_VISIBLE_ASCII = re.compile(r"[^\x21-\x7e]")


def target_problem(uri: str) -> str | None:
    """Why a request target cannot reach the app byte for byte, or None.

    A target may hold visible ASCII only (RFC 9112): raw bytes above 0x7E would reach the app
    re-encoded (the HTTP client speaks UTF-8 where the server read latin-1), and a `#` starts a
    fragment, which a client never sends and the way to the app would cut off.
    """
    if "#" in uri:
        return "a '#' (a fragment) is not part of a request target"
    if _NOT_VISIBLE_ASCII.search(uri):
        return "the request target holds characters that must be percent-encoded"
    return None


def value_for_app(value: str) -> str:
    """A header value, read by tornado as latin-1, made to reach the app as the same bytes.

    The client to the app writes header values as UTF-8: a value whose bytes are UTF-8 (a
    cookie with accents, say) is decoded as such, so it is written back unchanged; raises
    ValueError for one that is not UTF-8, which cannot be passed on byte for byte.
    """
    if value.isascii():
        return value
    return value.encode("latin-1").decode("utf-8")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LINE_BREAK_OR_NUL = re.compile("[\r\n\0]")


def value_for_client(value: str) -> str:
    """An app's header value, as aiohttp decoded it, made to reach the client as the same bytes.

    aiohttp reads header bytes as UTF-8, keeping undecodable bytes as surrogates; tornado
    writes a value as latin-1. A value with raw UTF-8 in it (a `Content-Disposition` file name)
    is turned back into its bytes, one character each, so that tornado writes them unchanged.
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


def header_problem(name: str, value: str) -> str | None:
    """Why `name: value` cannot be sent as a header, or None (a token, and no line break).

    Checked for every header the app gets, from the client or from us: a bare CR passed on into
    a request written by hand (the app's websocket upgrade) starts a header of the client's own
    for an app that reads CR as a line end (Python's `email` parser: http.server, Werkzeug).
    """
    if not _HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a header name"
    if _LINE_BREAK_OR_NUL.search(value):
        return f"the value of {name} holds a line break or NUL"
    return None


def without_credentials(
    headers: list[tuple[str, str]], is_credential_cookie, *, drop_authorization: bool
) -> list[tuple[str, str]]:
    """Remove the viewer's hub credentials: hub cookies, and the token header if it was one.

    Other cookies (the app's own) stay, in their order and spelling.
    """
    out = []
    for name, value in headers:
        key = canonical_name(name)
        if key == "authorization" and drop_authorization:
            continue
        if key == "cookie":
            kept = [
                part
                for part in value.split(";")
                if part.strip() and not is_credential_cookie(part.split("=", 1)[0])
            ]
            if not kept:
                continue
            value = ";".join(kept).strip()
        out.append((name, value))
    return out
