"""The one exception tree of :mod:`tsgw.xds`.

Everything the library raises on purpose derives from :class:`XdsError`, so a caller can catch
the library's failures without catching programming errors.
"""

from __future__ import annotations


class XdsError(Exception):
    """Base of every error :mod:`tsgw.xds` raises on purpose."""


class SnapshotError(XdsError):
    """A snapshot cannot be built: an unknown type, a malformed or duplicate resource."""


class InconsistentSnapshotError(SnapshotError):
    """A snapshot references a resource it does not hold, or holds one nothing references.

    ``missing`` and ``dangling`` name the offending resources as ``(type_url, name)`` pairs, so
    the message and the attributes both say what to fix.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: tuple[tuple[str, str], ...] = (),
        dangling: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.dangling = dangling


class UnknownGroupError(XdsError):
    """No snapshot is stored for the node group asked for."""


class UnknownVersionError(XdsError):
    """The snapshot history of a group holds no such version (it may have been evicted)."""


class ProtocolError(XdsError):
    """A client broke the xDS protocol (no node on the first request, no type URL on ADS)."""
