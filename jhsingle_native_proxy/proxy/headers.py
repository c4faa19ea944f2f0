"""Header and URL hygiene between the client and the app: pure functions, tested on their own."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

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


_USER_HEADER = canonical_name(USER_HEADER)
_USER_QUERY = canonical_name(USER_QUERY_ARG)


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

    Hop-by-hop headers go, `Expect` goes, forged identity goes, and the X-Forwarded-* family says
    where the request came from. X-Forwarded-Proto/Host already set by the hub's proxy are kept:
    they describe the browser's view, which is what the app needs to build URLs.
    """
    drop = HOP_BY_HOP | connection_tokens(connection_values) | {"expect"} | PROXY_SET
    out: list[tuple[str, str]] = []
    forwarded_for = []
    seen = set()
    for name, value in pairs:
        key = canonical_name(name)
        if key in drop or key == _USER_HEADER:
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


def strip_query_arg(query: str, name_canonical: str = _USER_QUERY) -> str:
    """Remove every `name=value` pair whose name matches, leaving the rest byte for byte.

    The name is compared after percent-decoding, without case, with `_` and `-` alike, so that no
    spelling of the identity argument slips through.
    """
    if not query:
        return query
    kept = []
    for part in query.split("&"):
        key = part.split("=", 1)[0]
        if canonical_name(unquote(key.replace("+", " "))) == name_canonical:
            continue
        kept.append(part)
    return "&".join(kept)


def rewrite_location(location: str, base_url: str, app_port: int | None) -> str:
    """Make a redirect from the app point under the prefix.

    `/path` becomes `{base_url}/path`, unless it already starts with the prefix (apps told their
    base URL add it themselves). An absolute URL pointing at the app's own loopback address
    becomes a path under the prefix. Anything else (relative paths, other hosts) is left alone.
    """
    if location.startswith("/") and not location.startswith("//"):
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
