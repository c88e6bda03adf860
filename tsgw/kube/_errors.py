"""Every exception ``tsgw.kube`` raises, in one tree (factored out so any module can import it).

::

    KubeError
    ├── APIError                   the API server answered with a failure Status
    │   ├── BadRequest             400
    │   ├── Unauthorized           401
    │   ├── Forbidden              403
    │   ├── NotFound               404
    │   ├── Conflict               409 (stale resourceVersion, SSA field conflict)
    │   │   └── AlreadyExists      409 with reason AlreadyExists
    │   ├── Gone                   410 Expired/Gone: the resourceVersion is too old; relist
    │   ├── Invalid                422
    │   ├── TooManyRequests        429, with ``retry_after`` from the Retry-After header
    │   └── ServerError            5xx
    │       └── ServerTimeout      504 (``too_large_resource_version`` when the RV is in the future)
    ├── TransportError             no answer at all: refused, reset, timed out, TLS
    ├── ShutDown                   a work queue that was shut down was asked for an item
    ├── CacheSyncError             an informer did not sync in time
    ├── AlreadyOwnedError          a second controller owner reference was refused
    ├── LeaderElectionLost         the manager lost its Lease and must stop acting
    └── TerminalError              a reconcile failure that must not be retried

:func:`error_from_response` is the one place that maps an HTTP status to a class, so callers
test ``except NotFound`` rather than status codes.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "APIError",
    "AlreadyExists",
    "AlreadyOwnedError",
    "BadRequest",
    "CacheSyncError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeError",
    "LeaderElectionLost",
    "NotFound",
    "ServerError",
    "ServerTimeout",
    "ShutDown",
    "TerminalError",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "error_from_response",
    "error_from_status",
]


class KubeError(Exception):
    """The root of every error this library raises."""


class APIError(KubeError):
    """The API server answered with a failure; ``status`` is the HTTP code, ``body`` the Status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str = "",
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}
        self.retry_after = retry_after

    @property
    def causes(self) -> list[dict[str, Any]]:
        details = self.body.get("details") or {}
        return list(details.get("causes") or [])


class BadRequest(APIError):
    """400: the request itself is malformed."""


class Unauthorized(APIError):
    """401: the credentials were refused."""


class Forbidden(APIError):
    """403: RBAC (or an admission rule) forbids it."""


class NotFound(APIError):
    """404: no such object (or resource type)."""


class Conflict(APIError):
    """409: the object changed since it was read, or an SSA field conflict."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: a create of a name that exists."""


class Gone(APIError):
    """410 (reason Expired or Gone): the resourceVersion was compacted away; list again."""


class Invalid(APIError):
    """422: the object failed validation."""


class TooManyRequests(APIError):
    """429: API priority and fairness (or a not-ready watch cache) asks to come back later."""


class ServerError(APIError):
    """5xx: the server failed; retrying with backoff is reasonable."""


class ServerTimeout(ServerError):
    """504; with cause ResourceVersionTooLarge it means the RV is ahead of the server."""

    @property
    def too_large_resource_version(self) -> bool:
        return any(c.get("reason") == "ResourceVersionTooLarge" for c in self.causes) or (
            "too large resource version" in self.message.lower()
        )


class TransportError(KubeError):
    """No HTTP answer: connection refused or reset, TLS failure, read timeout."""


class ShutDown(KubeError):
    """The work queue is shut down; workers stop when they see it."""


class CacheSyncError(KubeError):
    """Informers did not report synced within the timeout."""


class AlreadyOwnedError(KubeError):
    """The object already has another controller owner reference."""


class LeaderElectionLost(KubeError):
    """The Lease could not be renewed within the renew deadline; the process must stop acting."""


class TerminalError(KubeError):
    """Raised from a reconcile to record a failure that retrying cannot fix: no requeue."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
    504: ServerTimeout,
}


def error_from_status(status: int, body: dict[str, Any], retry_after: float | None = None) -> APIError:
    """The error for a Status object (from a response or an ERROR watch event)."""
    code = int(body.get("code") or status)
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "")
    cls: type[APIError]
    if code == 409 and reason == "AlreadyExists":
        cls = AlreadyExists
    elif code in _BY_STATUS:
        cls = _BY_STATUS[code]
    elif code >= 500:
        cls = ServerError
    else:
        cls = APIError
    if retry_after is None and code == 429:
        details = body.get("details") or {}
        if details.get("retryAfterSeconds"):
            retry_after = float(details["retryAfterSeconds"])
    return cls(code, message, reason=reason, body=body, retry_after=retry_after)


def error_from_response(status: int, content: bytes, headers: Any = None) -> APIError:
    """Map a failed HTTP response to the tree; the body is a Status when the server sent one."""
    body: dict[str, Any] = {}
    try:
        parsed = orjson.loads(content) if content else {}
        if isinstance(parsed, dict):
            body = parsed
    except orjson.JSONDecodeError:
        body = {"message": content[:500].decode(errors="replace")}
    retry_after = None
    if headers is not None:
        value = headers.get("Retry-After")
        if value:
            try:
                retry_after = float(value)
            except ValueError:
                retry_after = None
    body.setdefault("code", status)
    return error_from_status(status, body, retry_after)
