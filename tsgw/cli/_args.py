"""Argument types of the `tsgw` command: addresses and ports, checked while parsing.

A bad value is a usage error (``tsgw run: error: argument --xds: ...``, exit 2) before anything
starts, rather than a traceback from a server that could not bind it. :func:`parse_address` is
the one reading of HOST:PORT: the host is required, the port is 0-65535, and an IPv6 address
goes in brackets (``[::1]:18000``), as in a URL (RFC 3986) and Go's net.JoinHostPort.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable

__all__ = ["address", "parse_address", "parse_port", "port"]

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


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT``: a host name, an IPv4 address or a bracketed IPv6 address,
    and a port 0-65535 (0: any free port, where the address is one to listen on). Raises
    ValueError saying what is wrong."""
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
        raise ValueError(f"the HOST is missing in {_shown(text)}")
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{_shown(host)} is not a host name or an IP address")
    return host, parse_port(port_text)


def address(text: str) -> str:
    """argparse ``type=`` of a HOST:PORT flag: the text itself, once :func:`parse_address`
    accepts it."""
    try:
        parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def port(lo: int = 0) -> Callable[[str], int]:
    """argparse ``type=`` of a port flag: a number ``lo``-65535."""

    def port_arg(text: str) -> int:
        try:
            return parse_port(text, lo)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return port_arg
