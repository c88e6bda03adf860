"""Tailnets: each TailscaleTailnet's credentials checked, its API client kept, and its facts
(devices, Tailscale Services, the MagicDNS suffix) polled and published. Leader only.

- **Credentials.** The Secret the tailnet names (``credentials.secretRef``) is read with the
  operator's own identity; an OAuth client (Tailscale) or an API key (Tailscale or Headscale)
  becomes a :mod:`tsgw.tailscale` client, checked by listing devices. The tailnet's ``Ready``
  condition says whether that worked, and why not (``CredentialsNotFound``, ``AuthFailed``,
  ``RateLimited``, ``Unreachable``, ``APIError``), with the backend's capabilities in the message.
  A tailnet whose credentials fail affects only its own objects.
- **Facts**, every ``poll_interval`` (default 60 s; on a 429 the Retry-After, at least the
  interval), are written to a ConfigMap ``tsgw-tailnet-<name>`` in the operator's namespace
  (label ``gateway.tailscale.com/tailnet``), as compact JSON (:meth:`TailnetFacts.to_json`,
  about 100 bytes a device: some 10,000 devices fit the 1 MiB limit). Every replica reads it
  through its informer, so data still flows one way and every replica translates the same.
  The ConfigMap is written only when the facts change.
- **Identity**: the tailnet's users (display names) and its policy file's ``groups``
  (:class:`PolicyGroups`; Tailscale ``GET /api/v2/tailnet/-/acl``, scope ``policy_file:read``;
  Headscale ``GET /api/v1/policy``, database policy mode) travel in the facts with each user,
  for the caller-identity headers and ``groups`` access rules. Either may be unreadable: the
  facts then carry what is known and the Ready message says what is not.
- **Clients** are kept in a :class:`TailnetClients` registry that the auth-key controller uses.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from tsgw import api
from tsgw.controllers._metrics import observe_device_expiry
from tsgw.controllers._status import write_condition
from tsgw.kube import (
    CONFIGMAPS,
    SECRETS,
    APIError,
    Client,
    Invalid,
    Manager,
    NotFound,
    RawObject,
    Request,
    Resource,
    Result,
)
from tsgw.model import Condition
from tsgw.tailscale import (
    APIKey,
    AuthError,
    ClientOptions,
    HeadscaleClient,
    OAuthClientCredentials,
    RateLimitedError,
    TailscaleClient,
    TailscaleError,
    TransportError,
    owners_of,
)
from tsgw.tailscale import Client as TailscaleAPI
from tsgw.tailscale import User as TailscaleUser
from tsgw.translate import Device, TailnetFacts, User

__all__ = [
    "FACTS_KEY",
    "TAILNET_LABEL",
    "PolicyGroups",
    "TailnetClients",
    "TailnetReconciler",
    "facts_configmap_name",
]

log = structlog.get_logger("tsgw.controllers.tailnets")

FIELD_MANAGER = "tsgw"
TAILNET_LABEL = "gateway.tailscale.com/tailnet"
FACTS_KEY = "facts.json"


def facts_configmap_name(tailnet: str) -> str:
    return f"tsgw-tailnet-{tailnet}"


@dataclass
class _Entry:
    fingerprint: tuple[Any, ...]
    client: TailscaleAPI


@dataclass
class TailnetClients:
    """One API client per tailnet, rebuilt when its spec or credentials change."""

    _entries: dict[str, _Entry] = field(default_factory=dict)

    def get(self, tailnet: str) -> TailscaleAPI | None:
        e = self._entries.get(tailnet)
        return e.client if e is not None else None

    async def put(self, tailnet: str, fingerprint: tuple[Any, ...], make: Any) -> TailscaleAPI:
        e = self._entries.get(tailnet)
        if e is not None and e.fingerprint == fingerprint:
            return e.client
        if e is not None:
            await e.client.aclose()
        client: TailscaleAPI = make()
        self._entries[tailnet] = _Entry(fingerprint, client)
        return client

    async def drop(self, tailnet: str) -> None:
        e = self._entries.pop(tailnet, None)
        if e is not None:
            await e.client.aclose()

    async def aclose(self) -> None:
        for name in list(self._entries):
            await self.drop(name)


class _NoCredentials(Exception):
    pass


class _FactsRefused(Exception):
    pass


def _secret_value(secret: Mapping[str, Any], key: str) -> str:
    data = secret.get("data") or {}
    if key not in data:
        raise _NoCredentials(f"key {key!r} missing")
    return base64.b64decode(data[key]).decode().strip()


class TailnetReconciler:
    """Checks one TailscaleTailnet's credentials and publishes its facts."""

    def __init__(
        self,
        manager: Manager,
        resource: Resource,
        clients: TailnetClients,
        *,
        namespace: str,
        poll_interval: float = 60.0,
        operator_id: str = "",
    ) -> None:
        self.client: Client = manager.client
        self.resource = resource
        self.clients = clients
        self.operator_id = operator_id
        """This cluster's id: the facts carry only its claims (another cluster's claim by an
        object of the same kind, namespace and name is not this cluster's)."""
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.store = manager.informer(resource).store
        self._refused_reads: dict[str, dict[str, tuple[float, str]]] = {}
        self.facts_writes = 0
        """ConfigMap writes made (tests count them)."""

    async def reconcile(self, req: Request) -> Result | None:
        obj = self.store.get(req)
        if obj is None:
            await self.clients.drop(req.name)
            return None
        tailnet = api.load(obj)
        spec: api.TailscaleTailnetSpec = tailnet.spec
        try:
            ts = await self._client(req.name, spec)
            devices = await ts.list_devices()
            services = await ts.list_services() if ts.capabilities.services else []
        except _NoCredentials as e:
            await self._status(obj, False, "CredentialsNotFound", str(e))
            return Result(requeue_after=self.poll_interval)
        except AuthError as e:
            await self._status(obj, False, "AuthFailed", str(e))
            return Result(requeue_after=self.poll_interval)
        except RateLimitedError as e:
            wait = max(self.poll_interval, getattr(e, "retry_after", None) or 0.0)
            await self._status(obj, False, "RateLimited", f"{e}; next try in {wait:.0f} s")
            return Result(requeue_after=wait)
        except TransportError as e:
            await self._status(obj, False, "Unreachable", str(e))
            return Result(requeue_after=min(self.poll_interval, 10.0))
        except TailscaleError as e:
            await self._status(obj, False, "APIError", str(e))
            return Result(requeue_after=self.poll_interval)
        refused = self._refused_reads.setdefault(req.name, {})
        users, groups, notes = await _identities(ts, refused, time.monotonic())
        observe_device_expiry(req.name, devices)
        facts = _facts(devices, services, self.operator_id, users, groups)
        try:
            await self._publish(req.name, facts)
        except _FactsRefused as e:
            # The last published facts stay in use; the tailnet says why they are not updated.
            await self._status(obj, False, "FactsNotPublished", str(e))
            return Result(requeue_after=self.poll_interval)
        caps = ts.capabilities
        await self._status(
            obj,
            True,
            "Ready",
            f"{caps.backend}: {len(devices)} devices, {len(services)} Tailscale Services"
            + ("" if caps.services else " (no Tailscale Services on this control plane)")
            + "".join(f"; {n}" for n in notes),
            suffix=facts.magic_dns_suffix,
        )
        return Result(requeue_after=self.poll_interval)

    async def _client(self, name: str, spec: api.TailscaleTailnetSpec) -> TailscaleAPI:
        ref = spec.credentials.secret_ref
        try:
            secret = await self.client.get(SECRETS, ref.name, ref.namespace)
        except NotFound:
            raise _NoCredentials(f"Secret {ref.namespace}/{ref.name} not found") from None
        cp = spec.control_plane
        options = ClientOptions(base_url=cp.api_url or "", tailnet=spec.tailnet, name=name)
        if spec.credentials.oauth is not None:
            o = spec.credentials.oauth
            creds: OAuthClientCredentials | APIKey = OAuthClientCredentials(
                _secret_value(secret, o.client_id_key), _secret_value(secret, o.client_secret_key)
            )
        else:
            creds = APIKey(
                _secret_value(secret, spec.credentials.api_key.key if spec.credentials.api_key else "api_key")
            )
        fingerprint = (
            cp.type,
            cp.api_url,
            spec.tailnet,
            (secret.get("metadata") or {}).get("resourceVersion"),
        )
        if cp.type is api.ControlPlaneType.HEADSCALE:
            assert isinstance(creds, APIKey)
            return await self.clients.put(name, fingerprint, lambda: HeadscaleClient(creds, options))
        return await self.clients.put(name, fingerprint, lambda: TailscaleClient(creds, options))

    async def _publish(self, name: str, facts: TailnetFacts) -> None:
        text = orjson.dumps(facts.to_json(), option=orjson.OPT_SORT_KEYS).decode()
        cm_name = facts_configmap_name(name)
        live = None
        with contextlib.suppress(NotFound):
            live = await self.client.get(CONFIGMAPS, cm_name, self.namespace)
        if live is not None and (live.get("data") or {}).get(FACTS_KEY) == text:
            return
        try:
            await self.client.apply(
                CONFIGMAPS,
                {
                    "metadata": {
                        "name": cm_name,
                        "namespace": self.namespace,
                        "labels": {"app.kubernetes.io/managed-by": "tsgw", TAILNET_LABEL: name},
                    },
                    "data": {FACTS_KEY: text},
                },
                field_manager=FIELD_MANAGER,
            )
        except APIError as e:
            if not isinstance(e, Invalid) and e.status != 413:
                raise
            # More devices than a ConfigMap holds (1 MiB), or than a request may carry (3 MiB).
            raise _FactsRefused(f"the facts ({len(text)} bytes) were refused: {e}") from e
        self.facts_writes += 1

    async def _status(self, obj: RawObject, ok: bool, reason: str, message: str, *, suffix: str = "") -> None:
        ready = Condition("Ready", ok, reason, message[:1000])
        # The suffix is applied with Ready, by Ready's field manager: one it no longer applies
        # is removed, so a check that learnt none (a failed one) keeps the one already known.
        suffix = suffix or str((obj.get("status") or {}).get("magicDNSSuffix") or "")
        extra = {"magicDNSSuffix": suffix} if suffix else None
        if await write_condition(self.client, self.resource, obj, ready, extra=extra) and not ok:
            log.warning("tailnet not usable", tailnet=obj["metadata"]["name"], reason=reason, message=message)


@dataclass(frozen=True)
class PolicyGroups:
    """The ``groups`` of a tailnet policy file: ``group:name`` → its members as written.

    Members are user names as the control plane writes them in policies: Tailscale's login
    names (``alice@example.com``); Headscale's ``alice@`` (the user's name followed by ``@``)
    or the user's email. Groups do not nest (Tailscale refuses a group in a group); entries
    that are not user names (``autogroup:...``, tags) are ignored.
    """

    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any]) -> PolicyGroups:
        groups = policy.get("groups") if isinstance(policy, Mapping) else None
        if not isinstance(groups, Mapping):
            return cls()
        return cls(
            {
                str(g): tuple(str(m) for m in ms if isinstance(m, str) and ":" not in m)
                for g, ms in groups.items()
                if str(g).startswith("group:") and isinstance(ms, list)
            }
        )

    def of(self, login: str, email: str = "") -> tuple[str, ...]:
        """The groups that list a user, sorted."""
        names = {n for n in (login, f"{login}@", email) if n and n != "@"}
        return tuple(sorted(g for g, ms in self.members.items() if not names.isdisjoint(ms)))


REFUSED_READ_RETRY = 600.0
"""Seconds before a refused read of users or the policy file is tried again."""


async def _identities(
    ts: TailscaleAPI, refused: dict[str, tuple[float, str]] | None = None, now: float = 0.0
) -> tuple[list[TailscaleUser], PolicyGroups, list[str]]:
    """The tailnet's users and policy groups, for caller identity and ``groups`` rules. Either
    may be out of the credential's reach (Tailscale's scopes ``users:read`` and
    ``policy_file:read``; Headscale's policy in file mode): then display names fall back to the
    login and groups have no members, and the tailnet's Ready message says so. A refused read
    is remembered in ``refused`` (what → (monotonic time to ask again, why)) and not repeated
    before :data:`REFUSED_READ_RETRY` seconds, so a credential without the optional scopes
    does not fail half of every poll's requests."""
    refused = {} if refused is None else refused
    notes: list[str] = []
    users: list[TailscaleUser] = []
    groups = PolicyGroups()

    async def read(what: str, call: Any, note: str) -> Any:
        until, why = refused.get(what, (0.0, ""))
        if now < until:
            notes.append(f"{note} ({why})")
            return None
        try:
            value = await call()
        except (RateLimitedError, TransportError):
            raise
        except TailscaleError as e:
            refused[what] = (now + REFUSED_READ_RETRY, str(e))
            notes.append(f"{note} ({e})")
            return None
        refused.pop(what, None)
        return value

    users = await read("users", ts.list_users, "display names unknown") or []
    policy = await read("policy", ts.get_policy, "policy groups unknown, groups rules match nobody")
    if policy is not None:
        groups = PolicyGroups.from_policy(policy)
    return users, groups, notes


def _facts(
    devices: list[Any],
    services: list[Any],
    operator_id: str = "",
    users: list[TailscaleUser] | None = None,
    groups: PolicyGroups | None = None,
) -> TailnetFacts:
    """The facts of a tailnet; a service's claims are this operator's only (all when
    ``operator_id`` is empty), as ``Kind/namespace/name``; users (those that own a device or
    that the API lists) with their display names and policy groups."""
    names = [d.name for d in devices if "." in d.name.rstrip(".")]
    suffix = ""
    if names:
        suffix = names[0].rstrip(".").split(".", 1)[1]
    out = tuple(
        sorted(
            (
                Device(
                    d.name.rstrip(".") or d.hostname,
                    tuple(d.addresses),
                    tuple(d.tags),
                    d.user,
                    d.online is not False,
                )
                for d in devices
            ),
            key=lambda d: d.name,
        )
    )
    svcs = {s.name: tuple(s.addrs) for s in services}
    claims = {
        s.name: tuple(
            sorted(
                {
                    f"{o.kind}/{o.namespace}/{o.name}"
                    for o in owners
                    if not operator_id or o.operator_id == operator_id
                }
            )
        )
        for s in services
        if (owners := owners_of(s)) is not None
    }
    groups = groups or PolicyGroups()
    known = {u.login: u for u in users or () if u.login}
    people: dict[str, User] = {}
    for login in sorted(set(known) | {d.user for d in devices if d.user and not d.tags}):
        u = known.get(login)
        name, mail = (u.display_name, u.email) if u is not None else ("", "")
        entry = User(name, groups.of(login, mail))
        if entry != User():
            people[login] = entry
    return TailnetFacts(suffix, out, svcs, claims, people)


def facts_from_configmaps(
    configmaps: list[RawObject], previous: Mapping[str, tuple[str, TailnetFacts]]
) -> dict[str, tuple[str, TailnetFacts]]:
    """Tailnet name → (resourceVersion, facts) from the facts ConfigMaps; an unchanged ConfigMap
    keeps its previous facts object (translation caches by identity)."""
    out: dict[str, tuple[str, TailnetFacts]] = {}
    for cm in configmaps:
        md = cm.get("metadata") or {}
        name = (md.get("labels") or {}).get(TAILNET_LABEL)
        text = (cm.get("data") or {}).get(FACTS_KEY)
        if not name or text is None:
            continue
        rv = str(md.get("resourceVersion") or "")
        old = previous.get(name)
        if old is not None and old[0] == rv:
            out[name] = old
            continue
        try:
            out[name] = (rv, TailnetFacts.from_json(orjson.loads(text)))
        except (ValueError, TypeError) as e:
            log.warning("unreadable tailnet facts", tailnet=name, error=str(e))
    return out
