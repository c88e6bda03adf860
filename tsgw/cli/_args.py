"""Argument types of the `tsgw` command: addresses and ports, checked while parsing.

A bad value is a usage error (``tsgw run: error: argument --xds: ...``, exit 2) before anything
starts, rather than a traceback from a server that could not bind it. The reading of HOST:PORT
is the project's one parser, :func:`tsgw._address.parse_address` (re-exported here).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tsgw._address import parse_address, parse_port

__all__ = ["address", "auth_key_file", "bind_address", "parse_address", "parse_port", "port"]


def address(text: str) -> str:
    """argparse ``type=`` of a HOST:PORT flag: the text itself, once :func:`parse_address`
    accepts it."""
    try:
        parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def bind_address(text: str) -> str:
    """argparse ``type=`` of an address to listen on: HOST:PORT, or controller-runtime's
    ``:PORT`` (every interface), as the server that binds it reads it."""
    try:
        parse_address(text, empty_host="0.0.0.0")
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


def auth_key_file(text: str) -> bytes:
    """``--xds-auth-key-file PATH``: the key every xDS token is derived from (at least 16 bytes
    once surrounding whitespace is stripped)."""
    try:
        key = Path(text).read_bytes().strip()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text}: {e.strerror}") from None
    if len(key) < 16:
        raise argparse.ArgumentTypeError(f"{text}: a key needs at least 16 bytes, found {len(key)}")
    return key
