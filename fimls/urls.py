"""URL rules: what counts as this machine, and what may be shown of a URL."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is this machine: a loopback address, or the name ``localhost``."""
    host = host.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def insecure_reason(url: str, allow_insecure_http: bool) -> str | None:
    """Why fimls refuses to send code to ``url``, or ``None`` when it may."""
    try:
        parsed = urlsplit(url.strip())
        parsed.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return f"the base URL {public_url(url)!r} is not a valid URL"
    if parsed.scheme == "https":
        return None
    if parsed.scheme != "http":
        return f"unsupported URL scheme {parsed.scheme!r} in the base URL"
    host = parsed.hostname or ""
    if allow_insecure_http or is_loopback_host(host):
        return None
    return (
        f"refusing to send code over plain http:// to {host}; use https:// or set allowInsecureHttp to true"
    )


def public_url(url: str) -> str:
    """``url`` without credentials, query or fragment, for display."""
    try:
        parsed = urlsplit(url.strip())
    except ValueError:
        return "<invalid URL>"
    host = parsed.netloc.rpartition("@")[2]
    return f"{parsed.scheme}://{host}{parsed.path}".rstrip("/")
