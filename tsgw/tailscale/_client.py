"""The one client interface, and its implementation for Tailscale's hosted API v2.

The operator depends on :class:`Client` only (the seam Tailscale's own operator has in
``k8s-operator/tsclient``: keys, devices, Tailscale Services); :class:`TailscaleClient` and
:class:`~tsgw.tailscale.HeadscaleClient` implement it, and :attr:`Client.capabilities` says
what a backend lacks so callers degrade instead of failing.
"""

from __future__ import annotations

import abc
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import structlog

from ._errors import (
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    ServerError,
    TailscaleError,
    TransportError,
    UnsupportedError,
)
from ._http import Clock, HTTPCore, OAuthTokenSource, Sleep, StaticToken
from ._types import (
    APIKey,
    AuthKey,
    AuthKeyRequest,
    Capabilities,
    ClientOptions,
    Device,
    OAuthClientCredentials,
    TailscaleService,
    User,
)

__all__ = ["Client", "TailscaleClient", "parse_time"]

log = structlog.get_logger("tsgw.tailscale")

TAILSCALE_API = "https://api.tailscale.com"
_SERVICE_NAME = re.compile(r"svc:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as Tailscale or grpc-gateway writes it (``Z``, up to nanoseconds)."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    v = re.sub(r"(\.\d{6})\d+", r"\1", value.strip())
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


def _strs(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class Client(abc.ABC):
    """A tailnet's control-plane API: auth keys, devices, Tailscale Services.

    Use it as an async context manager (or call :meth:`aclose`). Every method raises the
    :mod:`tsgw.tailscale` exception tree; deletes take ``missing_ok`` because "already gone"
    is success for a finalizer.
    """

    capabilities: Capabilities

    def __init__(self, core: HTTPCore) -> None:
        self._core = core

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._core.aclose()

    @property
    def base_url(self) -> str:
        return self._core.base_url

    @property
    def name(self) -> str:
        """The ``tailnet`` label of this client's metrics (``ClientOptions.name``)."""
        return self._core.name

    # --- auth keys ---------------------------------------------------------------------
    async def mint_ticket(self, request: AuthKeyRequest) -> str:
        """A ticket for one mint of ``request``: the create request with a fresh mark, as text.

        Store it where a successor will look (a replica's state) *before*
        ``create_auth_key(request, ticket=...)``: if this process dies between the server
        minting the key and its answer being stored, nobody holds that key, and whoever finds
        the ticket revokes it with :meth:`revoke_minted` before minting again. Carries no
        secret (the request's tags, expiry and mark)."""
        return json.dumps(await self._mint_body(request, secrets.randbelow(1_000_000)), sort_keys=True)

    async def revoke_minted(self, ticket: str) -> list[str]:
        """Revoke every live key minted with ``ticket`` (from :meth:`mint_ticket`); their ids.

        Nothing minted (the mint never reached the server) is an empty list. A failed look-up
        raises (the caller should not mint again until it knows); a ticket that does not
        parse raises :class:`InvalidRequestError`."""
        try:
            body = json.loads(ticket)
        except ValueError as e:
            raise InvalidRequestError(400, f"not a mint ticket: {e}") from e
        if not isinstance(body, dict):
            raise InvalidRequestError(400, "not a mint ticket: not a JSON object")
        return await self._sweep(body, keep="")

    async def create_auth_key(self, request: AuthKeyRequest, *, ticket: str | None = None) -> AuthKey:
        """Mint one key; the answer is the only place its secret ``key`` ever appears.

        Minting is not idempotent, so a lost answer must not simply be sent again: that would
        mint a second key while the first lives on, held by nobody. Each call marks its mint
        (:meth:`_mint_body`) and sends it, retried by the HTTP core only when the server
        certainly did not apply it (429, nothing sent). After an ambiguous failure (5xx, read
        timeout, connection dropped after sending) it lists the keys, revokes any carrying
        this call's mark (neither backend returns a key's secret after creation, so such a
        key cannot be adopted), and only then mints again. If a retry succeeds after such a
        failure, keys with the mark other than the returned one are revoked too (a slow first
        request applied late). The outcome is one live key returned, or none and an error:
        the mint's own :class:`ServerError`/:class:`TransportError` once the tries are spent,
        or :class:`OutcomeUnknownError` when the look-up itself failed.

        ``ticket`` (from :meth:`mint_ticket` for the same ``request``) sends that prepared
        request instead of a newly marked one.
        """
        body = (
            json.loads(ticket)
            if ticket is not None
            else await self._mint_body(request, secrets.randbelow(1_000_000))
        )
        attempts = max(1, self._core.retry.attempts)
        ambiguous = False
        for attempt in range(1, attempts + 1):
            try:
                key = await self._post_auth_key(body)
            except (ServerError, TransportError) as e:
                if not _maybe_applied(e):
                    raise
                ambiguous = True
                log.warning(
                    "tailscale.authkey_mint_ambiguous",
                    backend=self.capabilities.backend,
                    attempt=attempt,
                    error=type(e).__name__,
                    status=getattr(e, "status", None),
                )
                await self._revoke_marked(body, keep="", cause=e)
                if attempt == attempts:
                    raise
                await self._core.sleep(self._core.backoff(attempt, e))
                continue
            if ambiguous:
                await self._revoke_marked(body, keep=key.id, cause=None)
            return key
        raise AssertionError("unreachable")  # pragma: no cover

    @abc.abstractmethod
    async def _mint_body(self, request: AuthKeyRequest, mark: int) -> dict[str, Any]:
        """The create request, carrying ``mark`` (0..999999) where a listing shows it again."""

    @abc.abstractmethod
    async def _post_auth_key(self, body: dict[str, Any]) -> AuthKey:
        """Send one create request (``idempotent=False``) and decode the answer."""

    @abc.abstractmethod
    def _minted_by(self, key: AuthKey, body: dict[str, Any]) -> bool:
        """Whether a listed key is the one ``body`` would have minted (its mark matches)."""

    async def _listed_keys(self) -> list[AuthKey]:
        """Keys with the fields :meth:`_minted_by` reads (a backend may need more requests)."""
        return await self.list_auth_keys()

    async def _revoke_marked(self, body: dict[str, Any], *, keep: str, cause: TailscaleError | None) -> None:
        """Revoke every live key minted with ``body``'s mark except ``keep``.

        With ``cause`` (the mint failed) a failed look-up becomes :class:`OutcomeUnknownError`;
        without (a later try succeeded and this only sweeps) it is logged, never raised, so
        the key just minted is not lost with the error.
        """
        try:
            await self._sweep(body, keep=keep)
        except TailscaleError as e:
            if cause is None:
                log.warning(
                    "tailscale.authkey_sweep_failed",
                    backend=self.capabilities.backend,
                    error=type(e).__name__,
                )
                return
            raise OutcomeUnknownError(
                f"minting an auth key failed ambiguously ({cause}) and listing keys to find it failed"
                f" ({e}): a key may have been minted that nobody holds; it lives until it expires",
                cause=cause,
            ) from e

    async def _sweep(self, body: dict[str, Any], *, keep: str) -> list[str]:
        """Revoke every live key minted with ``body``'s mark except ``keep``; their ids."""
        revoked: list[str] = []
        for k in await self._listed_keys():
            mine = k.id != keep and not k.invalid and self._minted_by(k, body)
            if mine and await self.delete_auth_key(k.id, missing_ok=True):
                revoked.append(k.id)
        if revoked:
            log.warning(
                "tailscale.authkey_orphan_revoked", backend=self.capabilities.backend, key_ids=revoked
            )
        return revoked

    @abc.abstractmethod
    async def list_auth_keys(self) -> list[AuthKey]:
        """Every auth key the credential can see (secrets not included)."""

    @abc.abstractmethod
    async def get_auth_key(self, key_id: str) -> AuthKey:
        """One key by id (secret not included); :class:`NotFoundError` when absent."""

    @abc.abstractmethod
    async def delete_auth_key(self, key_id: str, *, missing_ok: bool = False) -> bool:
        """Revoke a key; False when it was already gone and ``missing_ok``."""

    # --- devices -----------------------------------------------------------------------
    @abc.abstractmethod
    async def list_devices(self) -> list[Device]:
        """Every device of the tailnet (the API does not paginate)."""

    @abc.abstractmethod
    async def get_device(self, device_id: str) -> Device:
        """One device by its stable node ID; :class:`NotFoundError` when absent."""

    @abc.abstractmethod
    async def delete_device(self, device_id: str, *, missing_ok: bool = False) -> bool:
        """Remove a device; False when it was already gone and ``missing_ok``."""

    @abc.abstractmethod
    async def set_device_tags(self, device_id: str, tags: Sequence[str]) -> None:
        """Replace a device's tags."""

    async def find_devices(self, *, hostname: str = "", tags: Sequence[str] = ()) -> list[Device]:
        """Devices with this hostname and carrying all these tags (filtered here)."""
        want = set(tags)
        return [
            d
            for d in await self.list_devices()
            if (not hostname or d.hostname == hostname) and want <= set(d.tags)
        ]

    # --- users and the policy file ------------------------------------------------------
    @abc.abstractmethod
    async def list_users(self) -> list[User]:
        """Every user of the tailnet (Tailscale: scope ``users:read``)."""

    @abc.abstractmethod
    async def get_policy(self) -> dict[str, Any]:
        """The tailnet policy file as a JSON object (Tailscale: scope ``policy_file:read``)."""

    # --- Tailscale Services ------------------------------------------------------------
    def _need_services(self) -> None:
        if not self.capabilities.services:
            raise UnsupportedError(f"{self.capabilities.backend} has no Tailscale Services")

    async def list_services(self) -> list[TailscaleService]:
        """Every Tailscale Service of the tailnet."""
        self._need_services()
        raise NotImplementedError  # pragma: no cover

    async def get_service(self, name: str) -> TailscaleService:
        """One Tailscale Service by its ``svc:`` name; :class:`NotFoundError` when absent."""
        self._need_services()
        raise NotImplementedError  # pragma: no cover

    async def put_service(self, service: TailscaleService) -> TailscaleService:
        """Create or replace a Tailscale Service exactly as given (send ``addrs`` on update)."""
        self._need_services()
        raise NotImplementedError  # pragma: no cover

    async def delete_service(self, name: str, *, missing_ok: bool = False) -> bool:
        """Delete a Tailscale Service; False when it was already gone and ``missing_ok``."""
        self._need_services()
        raise NotImplementedError  # pragma: no cover

    async def ensure_service(
        self,
        name: str,
        *,
        ports: Sequence[str],
        tags: Sequence[str] = (),
        comment: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> TailscaleService:
        """Create or update a Tailscale Service, keeping the VIPs control already assigned.

        The API has no conditional update for services (no ETag), so this reads, then
        writes back the existing ``addrs``: an update without them is refused, and new
        addresses would break every client that resolved the old ones.
        """
        self._need_services()
        try:
            current: TailscaleService | None = await self.get_service(name)
        except NotFoundError:
            current = None
        desired = TailscaleService(
            name=name,
            addrs=current.addrs if current else (),
            ports=tuple(ports),
            tags=tuple(tags),
            comment=comment,
            annotations=dict(annotations or {}),
        )
        if current is not None and current == desired:
            return current
        return await self.put_service(desired)


class TailscaleClient(Client):
    """Tailscale's hosted API v2 (``https://api.tailscale.com/api/v2``), or anything speaking it.

    ``credentials`` is an OAuth client (tokens minted and refreshed here) or an API key.
    ``transport`` and ``sleep`` exist for tests: an in-process ASGI transport, and a sleep
    that records the waits instead of waiting.
    """

    def __init__(
        self,
        credentials: OAuthClientCredentials | APIKey,
        options: ClientOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        opts = options or ClientOptions()
        core = HTTPCore(
            opts.base_url or TAILSCALE_API,
            timeout=opts.timeout,
            retry=opts.retry,
            transport=transport,
            sleep=sleep,
            backend="tailscale",
            name=opts.name,
        )
        super().__init__(core)
        if isinstance(credentials, OAuthClientCredentials):
            self._tokens: OAuthTokenSource | StaticToken = OAuthTokenSource(
                credentials, core, margin=opts.token_refresh_margin, clock=clock
            )
        else:
            self._tokens = StaticToken(credentials)
        core.tokens = self._tokens
        self._t = f"/api/v2/tailnet/{quote(opts.tailnet, safe='')}"
        self.capabilities = Capabilities(
            backend="tailscale",
            services=True,
            oauth=True,
            auth_key_description=True,
            auth_key_preauthorized_choice=True,
        )

    @property
    def token_grants(self) -> int:
        """OAuth tokens minted so far (0 with an API key)."""
        return self._tokens.grants if isinstance(self._tokens, OAuthTokenSource) else 0

    async def _delete(self, path: str, missing_ok: bool) -> bool:
        try:
            await self._core.request("DELETE", path)
        except NotFoundError:
            if missing_ok:
                return False
            raise
        return True

    # --- auth keys ---------------------------------------------------------------------
    async def _mint_body(self, request: AuthKeyRequest, mark: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "capabilities": {
                "devices": {
                    "create": {
                        "reusable": request.reusable,
                        "ephemeral": request.ephemeral,
                        "preauthorized": request.preauthorized,
                        "tags": list(request.tags),
                    }
                }
            }
        }
        if request.expiry_seconds is not None:
            body["expirySeconds"] = request.expiry_seconds
        body["description"] = mark_description(request.description, mark)
        return body

    async def _post_auth_key(self, body: dict[str, Any]) -> AuthKey:
        return _key(await self._core.request("POST", f"{self._t}/keys", json=body, idempotent=False))

    def _minted_by(self, key: AuthKey, body: dict[str, Any]) -> bool:
        return key.description == str(body["description"])

    async def _listed_keys(self) -> list[AuthKey]:
        # The API's older documentation lists keys as ids only: read those one by one.
        keys = []
        for k in await self.list_auth_keys():
            if k.created is None and not k.description:
                try:
                    k = await self.get_auth_key(k.id)
                except NotFoundError:
                    continue
            keys.append(k)
        return keys

    async def list_auth_keys(self) -> list[AuthKey]:
        body = await self._core.request("GET", f"{self._t}/keys")
        return [_key(k) for k in (body or {}).get("keys", [])]

    async def get_auth_key(self, key_id: str) -> AuthKey:
        return _key(await self._core.request("GET", f"{self._t}/keys/{quote(key_id, safe='')}"))

    async def delete_auth_key(self, key_id: str, *, missing_ok: bool = False) -> bool:
        return await self._delete(f"{self._t}/keys/{quote(key_id, safe='')}", missing_ok)

    # --- devices -----------------------------------------------------------------------
    async def list_devices(self) -> list[Device]:
        body = await self._core.request("GET", f"{self._t}/devices")
        return [_device(d) for d in (body or {}).get("devices", [])]

    async def get_device(self, device_id: str) -> Device:
        return _device(await self._core.request("GET", f"/api/v2/device/{quote(device_id, safe='')}"))

    async def delete_device(self, device_id: str, *, missing_ok: bool = False) -> bool:
        return await self._delete(f"/api/v2/device/{quote(device_id, safe='')}", missing_ok)

    async def set_device_tags(self, device_id: str, tags: Sequence[str]) -> None:
        await self._core.request(
            "POST", f"/api/v2/device/{quote(device_id, safe='')}/tags", json={"tags": list(tags)}
        )

    # --- Tailscale Services ------------------------------------------------------------
    async def list_users(self) -> list[User]:
        body = await self._core.request("GET", f"{self._t}/users")
        return [
            User(
                login=str(u.get("loginName", "")),
                display_name=str(u.get("displayName", "")),
                id=str(u.get("id", "")),
            )
            for u in (body or {}).get("users") or []
        ]

    async def get_policy(self) -> dict[str, Any]:
        # The client asks for JSON (Accept: application/json), which the API answers instead
        # of the stored HuJSON.
        body = await self._core.request("GET", f"{self._t}/acl")
        return body if isinstance(body, dict) else {}

    def _svc(self, name: str) -> str:
        if not _SERVICE_NAME.fullmatch(name):
            raise ValueError(f"not a Tailscale Service name (svc:<dns-label>): {name!r}")
        return f"{self._t}/vip-services/{quote(name, safe=':')}"

    async def list_services(self) -> list[TailscaleService]:
        body = await self._core.request("GET", f"{self._t}/vip-services")
        return [_service(s) for s in (body or {}).get("vipServices", [])]

    async def get_service(self, name: str) -> TailscaleService:
        return _service(await self._core.request("GET", self._svc(name)))

    async def put_service(self, service: TailscaleService) -> TailscaleService:
        # Empty fields are left out, as the official Go client's omitempty does: on create
        # that leaves "addrs" to control, which allocates them.
        body: dict[str, Any] = {"name": service.name}
        for field_name, value in (
            ("addrs", list(service.addrs)),
            ("comment", service.comment),
            ("annotations", dict(service.annotations)),
            ("ports", list(service.ports)),
            ("tags", list(service.tags)),
        ):
            if value:
                body[field_name] = value
        answer = await self._core.request("PUT", self._svc(service.name), json=body)
        if isinstance(answer, dict) and answer.get("name"):
            return _service(answer)
        # The PUT answer may be empty: read back to learn the allocated addresses.
        return await self.get_service(service.name)

    async def delete_service(self, name: str, *, missing_ok: bool = False) -> bool:
        return await self._delete(self._svc(name), missing_ok)


def mark_description(description: str, mark: int) -> str:
    """``description`` with this mint's mark appended (``tsgw proxy-0 042137``), within 50 chars.

    The mark is what finds the key again if the create answer is lost: digits and a space,
    characters every Tailscale description accepts.
    """
    suffix = f"{mark:06d}"
    head = description[: 50 - len(suffix) - 1].rstrip()
    return f"{head} {suffix}" if head else f"tsgw {suffix}"


def _maybe_applied(e: TailscaleError) -> bool:
    """Whether a failed create may still have minted its key on the server."""
    if isinstance(e, TransportError):
        return e.sent
    return isinstance(e, ServerError) and e.status != 501


def _key(k: Any) -> AuthKey:
    caps = ((k.get("capabilities") or {}).get("devices") or {}).get("create") or {}
    return AuthKey(
        id=str(k.get("id", "")),
        key=str(k.get("key", "")),
        tags=_strs(caps.get("tags") or k.get("tags")),
        reusable=bool(caps.get("reusable", False)),
        ephemeral=bool(caps.get("ephemeral", False)),
        preauthorized=bool(caps.get("preauthorized", False)),
        description=str(k.get("description", "")),
        created=parse_time(k.get("created")),
        expires=parse_time(k.get("expires")),
        invalid=bool(k.get("invalid", False) or k.get("revoked")),
    )


def _device(d: Any) -> Device:
    online = d.get("connectedToControl")
    return Device(
        id=str(d.get("nodeId") or d.get("id", "")),
        legacy_id=str(d.get("id", "")),
        name=str(d.get("name", "")),
        hostname=str(d.get("hostname", "")),
        addresses=_strs(d.get("addresses")),
        tags=_strs(d.get("tags")),
        user=str(d.get("user", "")),
        authorized=bool(d.get("authorized", True)),
        online=online if isinstance(online, bool) else None,
        ephemeral=bool(d.get("isEphemeral", False)),
        created=parse_time(d.get("created")),
        last_seen=parse_time(d.get("lastSeen")),
        expires=parse_time(d.get("expires")),
        os=str(d.get("os", "")),
        client_version=str(d.get("clientVersion", "")),
    )


def _service(s: Any) -> TailscaleService:
    ann = s.get("annotations") or {}
    return TailscaleService(
        name=str(s.get("name", "")),
        addrs=_strs(s.get("addrs")),
        ports=_strs(s.get("ports")),
        tags=_strs(s.get("tags")),
        comment=str(s.get("comment", "")),
        annotations={str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {},
    )
