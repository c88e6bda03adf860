"""Headscale v0.29 through its own REST API (``/api/v1``, grpc-gateway over its gRPC service).

Released Headscale (v0.29.2) has no Tailscale-compatible ``/api/v2`` (that is on its main
branch only, for 0.30), so this maps the same :class:`~tsgw.tailscale.Client` calls onto
``/api/v1/preauthkey`` and ``/api/v1/node``. What Headscale lacks is declared in
:attr:`HeadscaleClient.capabilities`: no Tailscale Services, no OAuth, key descriptions are
dropped and keys always pre-authorize.

grpc-gateway writes protobuf JSON: lowerCamelCase names, 64-bit ids as strings, times as
RFC 3339, and maps gRPC codes to HTTP statuses (NotFound 404, InvalidArgument 400, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from . import _hujson as hujson
from ._client import Client, _strs, parse_time
from ._errors import InvalidRequestError, NotFoundError
from ._http import HTTPCore, Sleep, StaticToken
from ._types import APIKey, AuthKey, AuthKeyRequest, Capabilities, ClientOptions, Device, User

__all__ = ["HeadscaleClient"]

_DEFAULT_KEY_LIFETIME = timedelta(days=90)  # Tailscale's default, so both backends agree


class HeadscaleClient(Client):
    """Headscale's ``/api/v1`` with an API key (``headscale apikeys create``).

    ``options.base_url`` is Headscale's ``server_url`` (the REST API shares its listener).
    The stable node ID containerboot stores as ``device_id`` is Headscale's numeric node id,
    so ids from a replica's state work here unchanged.
    """

    def __init__(
        self,
        api_key: APIKey,
        options: ClientOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not options.base_url:
            raise ValueError("HeadscaleClient needs options.base_url (Headscale's server_url)")
        core = HTTPCore(
            options.base_url,
            timeout=options.timeout,
            retry=options.retry,
            transport=transport,
            sleep=sleep,
            backend="headscale",
            name=options.name,
        )
        core.tokens = StaticToken(api_key)
        super().__init__(core)
        self._user = options.headscale_user
        self._user_id: str | None = None
        self.capabilities = Capabilities(
            backend="headscale",
            services=False,
            oauth=False,
            auth_key_description=False,
            auth_key_preauthorized_choice=False,
        )

    async def _user_ref(self) -> str | None:
        """The numeric id of ``headscale_user`` (looked up once by name when not numeric)."""
        if not self._user:
            return None
        if self._user_id is None:
            if self._user.isdigit():
                self._user_id = self._user
            else:
                body = await self._core.request("GET", "/api/v1/user", params={"name": self._user})
                users = (body or {}).get("users") or []
                if not users:
                    raise NotFoundError(404, f"no Headscale user named {self._user!r}")
                self._user_id = str(users[0]["id"])
        return self._user_id

    # --- auth keys ---------------------------------------------------------------------
    async def _mint_body(self, request: AuthKeyRequest, mark: int) -> dict[str, Any]:
        # Headscale keeps no description, so the mark rides in the expiry's microseconds:
        # Headscale stores and lists the expiration as sent (sqlite: nanoseconds, PostgreSQL:
        # microseconds), so a lost create is found again by it.
        lifetime = (
            timedelta(seconds=request.expiry_seconds)
            if request.expiry_seconds is not None
            else _DEFAULT_KEY_LIFETIME
        )
        expires = (datetime.now(UTC) + lifetime).replace(microsecond=mark)
        expiration = expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body: dict[str, Any] = {
            "reusable": request.reusable,
            "ephemeral": request.ephemeral,
            "expiration": expiration,
            "aclTags": list(request.tags),
        }
        user = await self._user_ref()
        if user is not None:
            body["user"] = user
        elif not request.tags:
            raise InvalidRequestError(
                400, "Headscale needs tags or ClientOptions.headscale_user to own an untagged key"
            )
        return body

    async def _post_auth_key(self, body: dict[str, Any]) -> AuthKey:
        answer = await self._core.request("POST", "/api/v1/preauthkey", json=body, idempotent=False)
        return _key((answer or {}).get("preAuthKey") or {})

    def _minted_by(self, key: AuthKey, body: dict[str, Any]) -> bool:
        return (
            key.expires is not None
            and key.expires == parse_time(body["expiration"])
            and set(key.tags) == set(body["aclTags"])
            and (key.reusable, key.ephemeral) == (body["reusable"], body["ephemeral"])
        )

    async def list_auth_keys(self) -> list[AuthKey]:
        body = await self._core.request("GET", "/api/v1/preauthkey")
        return [_key(k, listing=True) for k in (body or {}).get("preAuthKeys") or []]

    async def get_auth_key(self, key_id: str) -> AuthKey:
        for k in await self.list_auth_keys():
            if k.id == key_id:
                return k
        raise NotFoundError(404, f"pre-auth key {key_id} not found", method="GET", path="/api/v1/preauthkey")

    async def delete_auth_key(self, key_id: str, *, missing_ok: bool = False) -> bool:
        if not key_id.isdigit():
            if missing_ok:
                return False
            raise NotFoundError(404, f"pre-auth key {key_id!r} not found")
        # Headscale answers a delete of an unknown id with success, so look first.
        try:
            await self.get_auth_key(key_id)
        except NotFoundError:
            if missing_ok:
                return False
            raise
        await self._core.request("DELETE", "/api/v1/preauthkey", params={"id": key_id})
        return True

    # --- devices -----------------------------------------------------------------------
    def _node(self, device_id: str) -> str:
        if not device_id.isdigit():
            # Headscale's ids are numbers; anything else cannot name a node of it.
            raise NotFoundError(404, f"node {device_id!r} not found", path="/api/v1/node")
        return f"/api/v1/node/{device_id}"

    async def list_devices(self) -> list[Device]:
        body = await self._core.request("GET", "/api/v1/node")
        return [_device(n) for n in (body or {}).get("nodes") or []]

    async def get_device(self, device_id: str) -> Device:
        body = await self._core.request("GET", self._node(device_id))
        return _device((body or {}).get("node") or {})

    async def delete_device(self, device_id: str, *, missing_ok: bool = False) -> bool:
        try:
            await self._core.request("DELETE", self._node(device_id))
        except NotFoundError:
            if missing_ok:
                return False
            raise
        return True

    async def set_device_tags(self, device_id: str, tags: Sequence[str]) -> None:
        await self._core.request("POST", f"{self._node(device_id)}/tags", json={"tags": list(tags)})

    async def list_users(self) -> list[User]:
        body = await self._core.request("GET", "/api/v1/user")
        return [
            User(
                login=str(u.get("name", "")),
                display_name=str(u.get("displayName", "")),
                email=str(u.get("email", "")),
                id=str(u.get("id", "")),
            )
            for u in (body or {}).get("users") or []
        ]

    async def get_policy(self) -> dict[str, Any]:
        # Database policy mode: the stored HuJSON text. In file mode Headscale answers 500
        # ("reading policy from path"), which no retry changes: not retried (only a 429 is).
        body = await self._core.request("GET", "/api/v1/policy", idempotent=False)
        text = str((body or {}).get("policy") or "")
        if not text.strip():
            return {}
        try:
            doc = hujson.loads(text)
        except ValueError as e:
            raise InvalidRequestError(
                200, f"the stored policy is not HuJSON: {e}", method="GET", path="/api/v1/policy"
            ) from e
        return doc if isinstance(doc, dict) else {}


def _key(k: Any, *, listing: bool = False) -> AuthKey:
    expires = parse_time(k.get("expiration"))
    expired = expires is not None and expires <= datetime.now(UTC)
    used = bool(k.get("used", False))
    reusable = bool(k.get("reusable", False))
    return AuthKey(
        id=str(k.get("id", "")),
        # Listings show a masked prefix, not the key: keep the secret only from create.
        key="" if listing else str(k.get("key", "")),
        tags=_strs(k.get("aclTags")),
        reusable=reusable,
        ephemeral=bool(k.get("ephemeral", False)),
        preauthorized=True,
        created=parse_time(k.get("createdAt")),
        expires=expires,
        invalid=expired or (used and not reusable),
    )


def _device(n: Any) -> Device:
    user = n.get("user") or {}
    online = n.get("online")
    return Device(
        id=str(n.get("id", "")),
        name=str(n.get("givenName", "")),
        hostname=str(n.get("name", "")),
        addresses=_strs(n.get("ipAddresses")),
        tags=_strs(n.get("tags")),
        user=str(user.get("name", "")) if isinstance(user, dict) else "",
        authorized=True,
        online=online if isinstance(online, bool) else None,
        ephemeral=bool((n.get("preAuthKey") or {}).get("ephemeral", False)),
        created=parse_time(n.get("createdAt")),
        last_seen=parse_time(n.get("lastSeen")),
        expires=parse_time(n.get("expiry")),
    )
