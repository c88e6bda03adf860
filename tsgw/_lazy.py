"""Names a package loads on first use (PEP 562), so importing the package does not import what
only some users need: ``tsgw.xds`` without grpclib, ``tsgw.tailscale`` without its HTTP clients.
A leaf like ``tsgw._address``: it imports nothing of tsgw, so the libraries may share it.

    __getattr__, __dir__ = lazy(__name__, {"AdsServer": "tsgw.xds._server"}, __all__)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy"]


def lazy(
    package: str, names: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: each name of ``names`` is
    imported from its module when first read, then kept in the package's namespace."""

    def getattr_(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(public)

    return getattr_, dir_
