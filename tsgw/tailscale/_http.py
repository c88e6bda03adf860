"""The HTTP core shared by both backends: credentials, retries, error mapping, logging.

One place decides what is retried (429, 5xx, transport errors; never another 4xx), how
long to wait (the server's Retry-After when it gives one, else exponential backoff with
jitter) and what reaches a log line (method, path without query, status, attempt: never a
header or a body, so no token or key can be logged).

A request marked ``idempotent=False`` (minting an auth key) is retried only when the server
certainly did not apply it: a 429, or a failure before the request left (connection refused,
connect timeout). A 5xx or a failure after sending goes back to the caller, which must find
out what happened before sending it again (see ``Client.create_auth_key``).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import structlog
import tenacity

from . import _metrics
from ._errors import (
    APIError,
    AuthError,
    RateLimitedError,
    ServerError,
    TailscaleError,
    TransportError,
    error_for_status,
)
from ._types import APIKey, OAuthClientCredentials, RetryOptions

__all__ = ["HTTPCore", "OAuthTokenSource", "StaticToken", "TokenSource", "parse_retry_after"]

log = structlog.get_logger("tsgw.tailscale")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _message(resp: httpx.Response) -> str:
    """The server's explanation, whichever of the known error shapes it used."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return text[:200] if text else resp.reason_phrase
    if isinstance(body, dict):
        for k in ("message", "error_description", "error", "detail", "title"):
            v = body.get(k)
            if isinstance(v, str) and v:
                return v
    return resp.reason_phrase


class _GrantFailed(Exception):
    """Carries an error of the token grant through the outer retry loop untouched:
    the grant already retried by the same policy, so the request must not retry it again."""

    def __init__(self, error: TailscaleError) -> None:
        super().__init__(str(error))
        self.error = error


class TokenSource:
    """Supplies the ``Authorization`` header value; may refresh it."""

    async def authorization(self) -> str:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget a cached token (after a 401 the server may have revoked it)."""

    @property
    def refreshable(self) -> bool:
        return False


class StaticToken(TokenSource):
    """An API key sent as a bearer token."""

    def __init__(self, key: APIKey) -> None:
        self._header = f"Bearer {key.key}"

    async def authorization(self) -> str:
        return self._header

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class OAuthTokenSource(TokenSource):
    """OAuth client-credentials tokens, cached and re-minted ``margin`` seconds before expiry.

    One grant at a time: concurrent requests that find the token stale wait on the same
    refresh instead of each minting one.
    """

    def __init__(
        self,
        credentials: OAuthClientCredentials,
        core: HTTPCore,
        *,
        token_path: str = "/api/v2/oauth/token",
        margin: float = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._creds = credentials
        self._core = core
        self._path = token_path
        self._margin = margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = anyio.Lock()
        self.grants = 0
        """How many tokens were minted (for tests and metrics)."""

    @property
    def refreshable(self) -> bool:
        return True

    def invalidate(self) -> None:
        self._token = None
        self._expires_at = 0.0

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - self._margin

    async def authorization(self) -> str:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._grant()
        return f"Bearer {self._token}"

    async def _grant(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._creds.resolved_client_id(),
            "client_secret": self._creds.client_secret,
        }
        if self._creds.scopes:
            form["scope"] = " ".join(self._creds.scopes)
        if self._creds.tags:
            form["tags"] = ",".join(self._creds.tags)
        started = self._clock()
        try:
            body = await self._core.request("POST", self._path, form=form, authenticated=False)
        except APIError as e:
            if e.status in (400, 401, 403):
                # RFC 6749 §5.2: invalid_client / unauthorized_client come as 400 or 401.
                raise AuthError(e.status, e.message, method="POST", path=self._path) from None
            raise
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(200, "token response without access_token", method="POST", path=self._path)
        expires_in = body.get("expires_in", 3600)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        self._token = token
        self._expires_at = started + lifetime
        self.grants += 1
        log.info("tailscale.oauth_token_minted", expires_in=lifetime, scope=body.get("scope", ""))

    def __repr__(self) -> str:
        return f"OAuthTokenSource(client_id={self._creds.resolved_client_id()!r})"


class HTTPCore:
    """Sends one logical request: authenticate, retry by policy, map errors, decode JSON."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retry: RetryOptions,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        backend: str = "tailscale",
        name: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        """The ``tailnet`` label of this client's metrics."""
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "tsgw", "Accept": "application/json"},
            follow_redirects=False,
        )
        self._retry = retry
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=retry.backoff_initial, max=retry.backoff_max, jitter=retry.backoff_initial
        )
        self._sleep: Sleep = sleep or anyio.sleep
        self._backend = backend
        self.tokens: TokenSource | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float):
            return float(hint)
        return float(self._backoff(state))

    @property
    def retry(self) -> RetryOptions:
        return self._retry

    def _retryable(self, exc: BaseException, *, idempotent: bool = True) -> bool:
        if isinstance(exc, RateLimitedError):
            # A hint longer than we are willing to sleep goes back to the caller to requeue.
            return exc.retry_after is None or exc.retry_after <= self._retry.retry_after_max
        if isinstance(exc, TransportError):
            return idempotent or not exc.sent
        if isinstance(exc, ServerError):
            # 501: "not supported", the same answer every time. Any other 5xx may come after
            # the server applied the request, so only an idempotent one is sent again blindly.
            return idempotent and exc.status != 501
        return False

    def backoff(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait before try ``attempt + 1``: the server's hint, else exponential."""
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, int | float):
            return min(float(hint), self._retry.retry_after_max)
        base = min(self._retry.backoff_max, self._retry.backoff_initial * 2.0 ** max(0, attempt - 1))
        return min(self._retry.backoff_max, base + random.uniform(0, self._retry.backoff_initial))

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        authenticated: bool = True,
        idempotent: bool = True,
    ) -> Any:
        """The decoded JSON body (``None`` for an empty one); raises the mapped error.

        ``idempotent=False`` limits retries to failures after which the request certainly
        was not applied (429, nothing sent); the caller settles every other failure.
        """

        async def sleep(seconds: float) -> None:
            await self._sleep(seconds)

        def retryable(exc: BaseException) -> bool:
            return self._retryable(exc, idempotent=idempotent)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max(1, self._retry.attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception(retryable),
            sleep=sleep,
            reraise=True,
        )
        try:
            return await self._request(retrying, method, path, json, form, params, authenticated)
        except _GrantFailed as e:
            raise e.error from None

    async def _request(
        self,
        retrying: tenacity.AsyncRetrying,
        method: str,
        path: str,
        json: Any,
        form: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        authenticated: bool,
    ) -> Any:
        reauthed = False
        async for attempt in retrying:
            with attempt:
                n = attempt.retry_state.attempt_number
                try:
                    return await self._once(method, path, json, form, params, authenticated, n)
                except AuthError:
                    # A cached OAuth token may have been revoked early: mint once more, then give up.
                    if authenticated and not reauthed and self.tokens and self.tokens.refreshable:
                        reauthed = True
                        self.tokens.invalidate()
                        return await self._once(method, path, json, form, params, authenticated, n)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        json: Any,
        form: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        authenticated: bool,
        attempt: int,
    ) -> Any:
        headers: dict[str, str] = {}
        if authenticated and self.tokens is not None:
            try:
                headers["Authorization"] = await self.tokens.authorization()
            except TailscaleError as e:
                raise _GrantFailed(e) from None
        started = time.monotonic()
        try:
            resp = await self._http.request(
                method,
                path,
                json=json,
                data=dict(form) if form is not None else None,
                params=params,
                headers=headers,
            )
        except httpx.TransportError as e:
            # Only these fail before any byte of the request left; after a write, read or
            # protocol error the server may have received (and applied) it.
            sent = not isinstance(e, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            _metrics.API_REQUESTS.labels(self.name, self._backend, method, "<error>").inc()
            log.warning(
                "tailscale.request_failed",
                backend=self._backend,
                method=method,
                path=path,
                attempt=attempt,
                error=type(e).__name__,
                sent=sent,
            )
            raise TransportError(f"{method} {path}: {type(e).__name__}", sent=sent) from None
        _metrics.API_REQUESTS.labels(self.name, self._backend, method, str(resp.status_code)).inc()
        log.debug(
            "tailscale.request",
            backend=self._backend,
            method=method,
            path=path,
            status=resp.status_code,
            attempt=attempt,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        if resp.status_code >= 400:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            err = error_for_status(
                resp.status_code, _message(resp), method=method, path=path, retry_after=retry_after
            )
            if isinstance(err, ServerError):
                err.retry_after = retry_after
            if isinstance(err, RateLimitedError | ServerError):
                log.info(
                    "tailscale.request_retryable",
                    backend=self._backend,
                    method=method,
                    path=path,
                    status=resp.status_code,
                    attempt=attempt,
                    retry_after=retry_after,
                )
            raise err
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return None
