"""The one parser of `HOST:PORT` strings, shared by every room (a leaf: it imports nothing of
tsgw, so the three libraries may use it and stay publishable with it).

Accepted: `host:port`, `[v6]:port`, and with ``empty_host`` set, controller-runtime's `:port`
(every interface is the caller's choice of default host). Ports are 0–65535 (0: any free port,
where the caller binds); a host is required otherwise. Errors are one line, suitable for a CLI.
"""

from __future__ import annotations

__all__ = ["parse_address"]


def parse_address(text: str, *, what: str = "address", empty_host: str | None = None) -> tuple[str, int]:
    """(host, port) of `text`; raises ValueError naming `what` and the problem in one line."""
    shown = text if len(text) <= 80 else f"{text[:77]}... ({len(text)} characters)"
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{what} must be HOST:PORT, got {shown!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{what}: put an IPv6 host in brackets ([::1]:PORT), got {shown!r}")
    if not host:
        if empty_host is None:
            raise ValueError(f"{what} must name a host (HOST:PORT), got {shown!r}")
        host = empty_host
    if not port.isascii() or not port.isdigit():
        raise ValueError(f"{what}: port must be a number, got {shown!r}")
    number = int(port)
    if number > 65535:
        raise ValueError(f"{what}: port {number} is out of range (0-65535)")
    return host, number
