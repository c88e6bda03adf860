"""The one exception tree of tsgw.api."""

from __future__ import annotations


class APIError(Exception):
    """Base of every error tsgw.api raises."""


class ValidationError(APIError):
    """An object does not match its schema: the same verdict the API server gives, with the
    JSON path of the offending field, so standalone mode (no API server) rejects what a cluster
    rejects and says where.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
