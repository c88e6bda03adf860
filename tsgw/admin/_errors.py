"""The one exception tree of :mod:`tsgw.admin`."""

from __future__ import annotations


class AdminError(Exception):
    """Base of every error :mod:`tsgw.admin` raises on purpose."""


class AdminUnavailableError(AdminError):
    """The admin API could not be reached (wrong address, operator not running)."""


class AdminNotFoundError(AdminError):
    """The group or snapshot version asked for is not stored."""
