"""Auth keys and devices of proxy replicas, behind each replica's state Secret. Leader only.

The lifecycle is :class:`tsgw.tailscale.AuthKeyLifecycle` (one tagged, pre-authorized key per
replica, minted only when the replica has none; a new one when containerboot asks for it by
writing ``reissue_authkey``, an expired or revoked key; devices deleted by the ``device_id``
containerboot stored). This module gives it a store and a trigger:

- **Store** (:class:`SecretStateStore`): the replica's state Secret ``<pod>`` (containerboot's
  ``TS_KUBE_SECRET``), patched with JSON merge patches under the field manager ``tsgw-authkeys``,
  so the proxy-group controller's server-side applies never touch these fields.
- **Where the key goes**: the key a replica should log in with is kept in its state Secret as
  ``tsgw-authkey``; every replica's Kubernetes provider reads it from its Secret informer into
  the pipeline's inputs, and translation writes it into the replica's tailscaled config file
  (config-file mode). Once the device registered the field is removed, and the used key leaves
  the config file with it. So a key is minted once per replica and survives operator restarts:
  a restarted operator finds it in the Secret and mints nothing.
- **Devices**: each state Secret carries the finalizer ``gateway.tailscale.com/device-cleanup``
  (set by translation). When a state Secret is being deleted (scale-down pruning, the owner
  deleted, an uninstall) this controller deletes the device and revokes an unused key first,
  then removes the finalizer. Without working credentials the finalizer stays and the reason is
  logged; the object waits rather than leaking a device.
- **When no key can be minted** (the tailnet is missing or not Ready, or the API refuses the
  key), a replica's pod cannot start: the proxy-group controller holds the StatefulSet until
  every new replica has its key. The owner says so in its condition ``AuthKeysReady``: False with
  ``TailnetNotFound``, ``TailnetNotReady`` (the tailnet's own reason and message) or
  ``MintFailed`` (the API's answer), naming the tailnet, and a Warning Event of that reason;
  True (``Minted``) once every replica has a key or a device again. Written only when it
  changes, and never on an object that never lacked a key (no write in the common case).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from tsgw.controllers._proxygroup import MANAGED_SELECTOR
from tsgw.controllers._status import write_condition
from tsgw.controllers._tailnets import TAILNET_LABEL, TailnetClients
from tsgw.kube import (
    SECRETS,
    Client,
    EventRecorder,
    InformerOptions,
    Manager,
    NotFound,
    RawObject,
    Request,
    Resource,
    Result,
)
from tsgw.model import Condition
from tsgw.pipeline import Pipeline
from tsgw.tailscale import AuthKeyLifecycle, AuthKeyRequest, StateKeys, TailscaleError
from tsgw.translate import DEVICE_FINALIZER

__all__ = [
    "AUTHKEYS_READY",
    "AUTHKEY_FIELD",
    "AuthKeyReconciler",
    "SecretStateStore",
    "auth_keys_condition",
    "auth_keys_from_secrets",
]

log = structlog.get_logger("tsgw.controllers.authkeys")

FIELD_MANAGER = "tsgw-authkeys"
AUTHKEY_FIELD = "tsgw-authkey"
"""The state Secret's field holding the key the replica's config file should carry."""
OWNER_KIND = "gateway.tailscale.com/owner-kind"
OWNER_NAME = "gateway.tailscale.com/owner-name"
AUTHKEYS_READY = "AuthKeysReady"
"""The owner's condition saying whether its proxies' auth keys can be minted."""
_WAITS = "a proxy replica starts only once its key is in its config"


def _condition(obj: RawObject, type_: str) -> Mapping[str, Any] | None:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == type_), None
    )


def auth_keys_condition(
    tailnet: str, tailnet_obj: RawObject | None, failure: str | None, current: RawObject
) -> Condition | None:
    """The owner's ``AuthKeysReady`` condition after a reconcile, or None to leave it as it is.

    ``failure``: None when every replica that needed a key got one; ``""`` when no key could be
    asked for (the tailnet has no API client); else why the API refused one. ``current`` is the
    owner (its status: True is written only to clear a False). The tailnet's own ``Ready=False``
    explains a failure best, so it wins over the API's message."""
    if failure is None:
        had = _condition(current, AUTHKEYS_READY)
        if had is None or had.get("status") == "True":
            return None
        return Condition(AUTHKEYS_READY, True, "Minted", "every proxy replica has an auth key or a device")
    if tailnet_obj is None:
        return Condition(
            AUTHKEYS_READY,
            False,
            "TailnetNotFound",
            f"no auth key can be minted: TailscaleTailnet {tailnet!r} does not exist; {_WAITS}",
        )
    ready = _condition(tailnet_obj, "Ready")
    if ready is not None and ready.get("status") == "False":
        why = f"{ready.get('reason')}: {ready.get('message')}"
        return Condition(
            AUTHKEYS_READY,
            False,
            "TailnetNotReady",
            f"no auth key can be minted: tailnet {tailnet!r} is not Ready ({why}); {_WAITS}"[:1000],
        )
    if not failure:
        return None  # no client yet and no verdict on the tailnet: it is being checked
    return Condition(
        AUTHKEYS_READY,
        False,
        "MintFailed",
        f"tailnet {tailnet!r} refused an auth key: {failure}; {_WAITS}"[:1000],
    )


def _decode(secret: Mapping[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.get("data") or {}).items()}


class SecretStateStore:
    """A :class:`tsgw.tailscale.ReplicaStateStore` on the replicas' state Secrets of one
    namespace."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    async def load(self, replica: str) -> Mapping[str, str] | None:
        try:
            return _decode(await self.client.get(SECRETS, replica, self.namespace))
        except NotFound:
            return None

    async def save(self, replica: str, changes: Mapping[str, str | None]) -> None:
        data = {
            k: (base64.b64encode(v.encode()).decode() if v is not None else None) for k, v in changes.items()
        }
        await self.client.patch(
            SECRETS, replica, {"data": data}, namespace=self.namespace, field_manager=FIELD_MANAGER
        )


def auth_keys_from_secrets(secrets: Iterable[RawObject]) -> dict[str, str]:
    """``namespace/pod`` of a proxy replica → the key its config file should carry, from the
    state Secrets (by namespace too: same-named groups in two namespaces have same-named pods)."""
    out: dict[str, str] = {}
    for s in secrets:
        value = (s.get("data") or {}).get(AUTHKEY_FIELD)
        if value:
            md = s.get("metadata") or {}
            out[f"{md.get('namespace')}/{md.get('name')}"] = base64.b64decode(value).decode()
    return out


def _settled(state: Mapping[str, str]) -> bool:
    """Registered and nothing waiting: no key in the config, no re-issue asked for.

    A re-issue request is the field's presence, not its value: containerboot writes the key its
    config held, which is empty once the used key left the file (the usual case: an admin
    deleted the device and the pod restarted)."""
    return bool(
        state.get(StateKeys.DEVICE_ID)
        and StateKeys.REISSUE_AUTHKEY not in state
        and state.get(AUTHKEY_FIELD) is None
    )


class AuthKeyReconciler:
    """For one proxy group owner: a key per replica that needs one, devices of replicas going
    away deleted. Requests are (namespace, owner name) of one owning kind."""

    def __init__(
        self,
        manager: Manager,
        owner: Resource,
        pipeline: Pipeline,
        clients: TailnetClients,
        *,
        tailnets: Resource | None = None,
        recorder: EventRecorder | None = None,
    ) -> None:
        """``tailnets`` (the TailscaleTailnet resource) lets the owner's ``AuthKeysReady``
        condition say why its tailnet cannot mint keys; without it that condition is not written.
        ``recorder`` adds a Warning Event whenever the condition turns False."""
        self.client: Client = manager.client
        self.owner = owner
        self.kind = owner.kind
        self.recorder = recorder
        self.tailnets = manager.informer(tailnets).store if tailnets is not None else None
        self.pipeline = pipeline
        self.clients = clients
        self.secrets = manager.informer(SECRETS, InformerOptions(label_selector=MANAGED_SELECTOR)).store
        self.owners = manager.informer(owner).store
        self._lifecycles: dict[tuple[str, int], AuthKeyLifecycle] = {}

    def _lifecycle(self, tailnet: str, namespace: str) -> AuthKeyLifecycle | None:
        ts = self.clients.get(tailnet)
        if ts is None:
            return None
        key = (namespace, id(ts))
        lc = self._lifecycles.get(key)
        if lc is None:
            lc = self._lifecycles[key] = AuthKeyLifecycle(ts, SecretStateStore(self.client, namespace))
        return lc

    def _state_secrets(self, req: Request) -> list[RawObject]:
        return [
            s
            for s in self.secrets.list(req.namespace)
            if ((s.get("metadata") or {}).get("labels") or {}).get(OWNER_KIND) == self.kind
            and (s.get("metadata") or {}).get("labels", {}).get(OWNER_NAME) == req.name
            and DEVICE_FINALIZER in ((s.get("metadata") or {}).get("finalizers") or ())
        ]

    async def reconcile(self, req: Request) -> Result | None:
        latest = self.pipeline.latest.value
        if latest is None:
            return None
        group = next(
            (
                g
                for g in latest.result.model.groups
                if (g.owner.kind, g.owner.namespace, g.owner.name) == (self.kind, req.namespace, req.name)
            ),
            None,
        )
        retry = False
        # Replicas going away: delete the device, then let the state Secret go.
        for s in self._state_secrets(req):
            md = s.get("metadata") or {}
            if not md.get("deletionTimestamp"):
                continue
            state = _decode(s)
            if not any(
                state.get(k)
                for k in (StateKeys.DEVICE_ID, StateKeys.AUTHKEY_ID, StateKeys.MINT_TICKET, AUTHKEY_FIELD)
            ):
                await self._drop_finalizer(s)  # no device, no key: nothing on the tailnet to clean
                continue
            tailnet = (md.get("labels") or {}).get(TAILNET_LABEL, "")
            lc = self._lifecycle(tailnet, req.namespace) if tailnet else None
            if lc is None:
                log.warning(
                    "cannot delete a proxy's device yet: its tailnet has no working client", secret=md["name"]
                )
                retry = True
                continue
            try:
                result = await lc.delete(md["name"])
            except TailscaleError as e:
                log.warning("device deletion failed; will retry", secret=md["name"], error=str(e))
                retry = True
                continue
            log.info("proxy device cleaned up", replica=md["name"], device_deleted=result.device_deleted)
            await self._drop_finalizer(s)
        owner = self.owners.get(req)
        if group is None or owner is None or (owner.get("metadata") or {}).get("deletionTimestamp"):
            # No group, or its owner gone or going (a result may lag behind the deletion):
            # no key for a proxy that will not run.
            return Result(requeue_after=5.0) if retry else None
        lc = self._lifecycle(group.tailnet, req.namespace)
        if lc is None:
            # The tailnet controller has not built its client yet, or cannot: say so if a replica
            # waits for a key.
            if any(
                not _settled(_decode(s)) and not (s.get("metadata") or {}).get("deletionTimestamp")
                for s in self._state_secrets(req)
            ):
                await self._report(owner, group.tailnet, "")
            return Result(requeue_after=5.0)
        failure: str | None = None
        unseen = False  # a replica's state Secret not there yet: no verdict on its key
        request = AuthKeyRequest(tags=group.pod.tags, preauthorized=True, description=f"tsgw {req.namespace}")
        store = SecretStateStore(self.client, req.namespace)
        for replica in group.replica_names():
            live = self.secrets.get((req.namespace, replica))
            if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
                retry = unseen = True  # the proxy-group controller creates it first
                continue
            state = _decode(live)
            if _settled(state):
                continue  # registered, nothing waiting: the common steady state
            # Not settled in the cache: read the Secret itself. The cache may not show this
            # reconciler's own last write yet (the key id and the key are two patches, and the
            # first one's event enqueues this replica again); deciding on it would mint a
            # second key and leak the first.
            fresh = await store.load(replica)
            if fresh is None:
                retry = unseen = True
                continue
            state = dict(fresh)
            if _settled(state):
                continue
            current = state.get(AUTHKEY_FIELD)
            try:
                # A new key is stored by the lifecycle with its id in one write.
                want = await lc.config_key(replica, request, current_key=current, key_field=AUTHKEY_FIELD)
            except TailscaleError as e:
                log.warning("auth key not minted; will retry", replica=replica, error=str(e))
                failure = failure or str(e) or type(e).__name__
                retry = True
                continue
            if want is None and current is not None:
                await store.save(replica, {AUTHKEY_FIELD: None})  # registered: the key leaves
        if failure is not None or not unseen:
            await self._report(owner, group.tailnet, failure)
        return Result(requeue_after=5.0) if retry else None

    async def _report(self, owner: RawObject, tailnet: str, failure: str | None) -> None:
        """The owner's ``AuthKeysReady`` condition (:func:`auth_keys_condition`), written only
        when it changes; a Warning Event when it turns False."""
        if self.tailnets is None:
            return
        condition = auth_keys_condition(tailnet, self.tailnets.get(Request("", tailnet)), failure, owner)
        if condition is None or not await write_condition(self.client, self.owner, owner, condition):
            return
        if not condition.status:
            md = owner.get("metadata") or {}
            log.warning(
                "proxies wait for auth keys",
                object=f"{md.get('namespace')}/{md.get('name')}",
                reason=condition.reason,
                message=condition.message,
            )
            if self.recorder is not None:
                self.recorder.event(owner, "Warning", condition.reason, condition.message)

    async def _drop_finalizer(self, secret: RawObject) -> None:
        """Remove the device finalizer, provided the finalizers are still the ones seen.

        The precondition is the finalizer list, not the resourceVersion: the lifecycle has just
        written the Secret's data (the key's id cleared), which changes the version but not the
        list, and a version test failed every such removal once (a 422 and a retry)."""
        md = secret.get("metadata") or {}
        seen = list(md.get("finalizers") or ())
        rest = [f for f in seen if f != DEVICE_FINALIZER]
        with contextlib.suppress(NotFound):
            await self.client.patch(
                SECRETS,
                md["name"],
                [
                    {"op": "test", "path": "/metadata/finalizers", "value": seen},
                    {"op": "replace", "path": "/metadata/finalizers", "value": rest},
                ],
                namespace=md.get("namespace"),
                patch_type="json",
                field_manager=FIELD_MANAGER,
            )
