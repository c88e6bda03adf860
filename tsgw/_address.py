"""The one parser of `HOST:PORT` strings, shared by every room (a leaf: it imports nothing of
tsgw, so the three libraries may use it and stay publishable with it).

The host is a host name, an IPv4 address or a bracketed IPv6 address (``[::1]:18000``, as in a
URL, RFC 3986, and Go's net.JoinHostPort); the port is 0-65535 in decimal digits (0: any free
port, where the address is one to listen on). With ``empty_host`` set, controller-runtime's
``:8080`` form is accepted and means that host. Errors are one line, suitable for a CLI, and
quote at most 64 characters of the input.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["parse_address", "parse_port"]

_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?)*\.?"
)
_SHOWN = 64


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN else f"{text[:_SHOWN]!r}… ({len(text)} chars)"


def parse_port(text: str, lo: int = 0) -> int:
    """A port number, ``lo``-65535, in decimal digits. Raises ValueError saying why not."""
    if not text:
        raise ValueError("the PORT is missing")
    if not (text.isascii() and text.isdigit()) or not lo <= int(text) <= 65535:
        raise ValueError(f"a port is a number {lo}-65535, got {_shown(text)}")
    return int(text)


def parse_address(text: str, *, what: str = "", empty_host: str | None = None) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT``. Raises ValueError saying what is wrong (prefixed with
    ``what``, e.g. "xDS address", when given)."""
    try:
        return _parse(text, empty_host)
    except ValueError as e:
        if what:
            raise ValueError(f"{what}: {e}") from None
        raise


def _parse(text: str, empty_host: str | None) -> tuple[str, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"expected [IPv6]:PORT, a ']' is missing in {_shown(text)}")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{_shown(host)} in brackets is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:PORT, the PORT is missing in {_shown(text)}")
        return host, parse_port(rest[1:])
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {_shown(text)}")
    if ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets, as in [::1]:18000; got {_shown(text)}")
    if not host:
        if empty_host is None:
            raise ValueError(f"the HOST is missing in {_shown(text)}")
        host = empty_host
    elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{_shown(host)} is not a host name or an IP address")
    return host, parse_port(port_text)
