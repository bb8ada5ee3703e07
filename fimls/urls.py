"""Base URLs: which hosts count as this machine, when plain http is refused, and a URL safe to show."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

# Characters that make URL parsers disagree about where the host ends: a backslash is a path
# separator for WHATWG parsers (and so for some HTTP clients) but part of the userinfo for
# urllib, so ``http://evil.example\@127.0.0.1/`` would pass a check and go elsewhere.
_AMBIGUOUS = frozenset("\\ \t\r\n\x00")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is this machine: a loopback IP address (IPv4 ``127.0.0.0/8``, IPv6 ``::1``,
    IPv4-mapped ``::ffff:127.x.y.z``) or exactly the name ``localhost``.

    The name is matched without regard to case, with or without a trailing dot; brackets around an
    IPv6 address are accepted. Anything else is not, including other spellings of 127.0.0.1 that some
    resolvers accept (``0x7f.1``, ``127.1``, ``2130706433``, ``127.0.0.1.``) and names under localhost.
    """
    name = host
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _split(url: str) -> SplitResult:
    """``urlsplit`` that also rejects what parsers disagree on and malformed ports."""
    if any(ch in _AMBIGUOUS or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("it contains a backslash, a space or a control character")
    parsed = urlsplit(url)
    parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    return parsed


def insecure_reason(url: str, allow_insecure_http: bool) -> str | None:
    """Why fimls refuses to send code to ``url``, or ``None`` when it may.

    ``https`` is always allowed; ``http`` only to this machine (see :func:`is_loopback_host`)
    unless ``allow_insecure_http``; any other scheme or a malformed URL is refused.
    """
    try:
        parsed = _split(url.strip())
    except ValueError as error:
        return f"the base URL{_shown(url)} is not a valid URL: {error}"
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        return f"unsupported URL scheme {scheme!r} in the base URL (use https://)"
    host = parsed.hostname
    if not host:
        return f"the base URL{_shown(url)} has no host"
    if scheme == "https" or allow_insecure_http or is_loopback_host(host):
        return None
    return (
        f"refusing to send code over plain http:// to {host}; use https:// or set allowInsecureHttp to true"
    )


def public_url(url: str) -> str:
    """``url`` without user name, password, query or fragment, for messages and logs; an empty
    string when it cannot be parsed into scheme and host (nothing of it is safe to show then)."""
    try:
        parsed = urlsplit(url.strip())
        host = parsed.hostname or ""
        port = parsed.port
    except ValueError:
        return ""
    if not parsed.scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parsed.scheme}://{netloc}{parsed.path}"


def _shown(url: str) -> str:
    shown = public_url(url)
    return f" {shown!r}" if shown else ""
