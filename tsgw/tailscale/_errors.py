"""The one exception tree of ``tsgw.tailscale``.

Callers branch on the *kind* of failure, not on HTTP details: a reconciler treats
:class:`NotFoundError` on delete as "already gone", requeues after ``retry_after`` on
:class:`RateLimitedError`, and reports :class:`AuthError`/:class:`ForbiddenError` as a
configuration problem the user must fix (wrong OAuth scopes, tags not owned)::

    TailscaleError
    ├── TransportError          the request never got an HTTP answer (connect, timeout)
    ├── OutcomeUnknownError     a key may have been minted, and tsgw could not find out
    ├── UnsupportedError        the backend lacks the feature (Headscale: Tailscale Services)
    └── APIError                the control plane answered with status >= 400
        ├── AuthError           401, or the OAuth token grant was refused
        ├── ForbiddenError      403: missing scope, or tags the credential does not own
        ├── NotFoundError       404
        ├── ConflictError       409, or 412 when a conditional update lost a race
        ├── InvalidRequestError any other 4xx (400, 422, ...)
        ├── RateLimitedError    429, with ``retry_after`` seconds when the server said
        └── ServerError         5xx

Messages carry the server's own ``message`` text and never a credential or a key.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthError",
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotFoundError",
    "OutcomeUnknownError",
    "RateLimitedError",
    "ServerError",
    "TailscaleError",
    "TransportError",
    "UnsupportedError",
]


class TailscaleError(Exception):
    """Base of every error raised by ``tsgw.tailscale``."""


class TransportError(TailscaleError):
    """No HTTP response arrived (connection refused, reset, timeout).

    ``sent`` is False when the request certainly never reached the server (connection refused,
    connect timeout, no pooled connection free): then even a non-idempotent request is safe to
    send again. True otherwise (read timeout, connection dropped after sending): the request
    may or may not have been applied. Idempotent requests are retried either way, like a 5xx.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class OutcomeUnknownError(TailscaleError):
    """Minting an auth key failed ambiguously and tsgw could not settle whether it happened.

    Raised by ``create_auth_key`` when the mint got no clear answer (a 5xx, a read timeout, a
    connection dropped after the request was sent) **and** the look-up that finds and revokes
    the key it may have minted failed too. A key may then exist that nobody holds; it is
    single use, is found by its mark (the description on Tailscale, the sub-second part of its
    expiry on Headscale) and dies at its expiry. ``cause`` is the mint's own failure; the
    look-up's failure is ``__cause__``. Retrying later is safe: each call mints at most one
    key it returns.
    """

    def __init__(self, message: str, *, cause: TailscaleError) -> None:
        super().__init__(message)
        self.cause = cause


class UnsupportedError(TailscaleError):
    """The backend does not offer this feature (see ``Client.capabilities``).

    Raised before any request is sent, so callers can degrade (for example: no Tailscale
    Services on Headscale v0.29, so ingress falls back to per-replica device addresses).
    """


class APIError(TailscaleError):
    """The control plane answered with an error status.

    ``status`` is the HTTP status, ``message`` the server's explanation (Tailscale's
    ``{"message": ...}``, RFC 6749's ``error_description``, or grpc-gateway's ``message``),
    ``method`` and ``path`` say which call failed (the path has no query string, so no
    secret can hide there).
    """

    def __init__(self, status: int, message: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{status} {message}".strip())


class AuthError(APIError):
    """401: the credential is wrong, expired or revoked, or the OAuth grant was refused."""


class ForbiddenError(APIError):
    """403: authenticated but not allowed (a scope is missing, or a tag is not owned)."""


class NotFoundError(APIError):
    """404: the key, device or Tailscale Service does not exist (treat as gone on delete)."""


class ConflictError(APIError):
    """409, or 412 Precondition Failed: the object changed under a conditional update."""


class InvalidRequestError(APIError):
    """Any other 4xx: the request itself is wrong and retrying it cannot help."""


class RateLimitedError(APIError):
    """429 after the retries ran out; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, method=method, path=path)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx after the retries ran out (or 501, which the API uses for unsupported requests).

    ``retry_after`` is the server's Retry-After hint in seconds when a 503 carried one.
    """

    retry_after: float | None = None


def error_for_status(
    status: int,
    message: str,
    *,
    method: str = "",
    path: str = "",
    retry_after: float | None = None,
) -> APIError:
    """The exception class that names what went wrong for an HTTP ``status``."""
    kind: type[APIError]
    if status == 429:
        return RateLimitedError(status, message, method=method, path=path, retry_after=retry_after)
    if status == 401:
        kind = AuthError
    elif status == 403:
        kind = ForbiddenError
    elif status == 404:
        kind = NotFoundError
    elif status in (409, 412):
        kind = ConflictError
    elif status >= 500:
        kind = ServerError
    else:
        kind = InvalidRequestError
    return kind(status, message, method=method, path=path)
