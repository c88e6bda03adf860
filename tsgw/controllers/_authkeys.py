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
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from tsgw.controllers._proxygroup import MANAGED_SELECTOR
from tsgw.controllers._tailnets import TAILNET_LABEL, TailnetClients
from tsgw.kube import (
    SECRETS,
    Client,
    InformerOptions,
    Manager,
    NotFound,
    RawObject,
    Request,
    Resource,
    Result,
)
from tsgw.pipeline import Pipeline
from tsgw.tailscale import AuthKeyLifecycle, AuthKeyRequest, StateKeys, TailscaleError
from tsgw.translate import DEVICE_FINALIZER

__all__ = ["AUTHKEY_FIELD", "AuthKeyReconciler", "SecretStateStore", "auth_keys_from_secrets"]

log = structlog.get_logger("tsgw.controllers.authkeys")

FIELD_MANAGER = "tsgw-authkeys"
AUTHKEY_FIELD = "tsgw-authkey"
"""The state Secret's field holding the key the replica's config file should carry."""
OWNER_KIND = "gateway.tailscale.com/owner-kind"
OWNER_NAME = "gateway.tailscale.com/owner-name"


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
        self, manager: Manager, owner: Resource, pipeline: Pipeline, clients: TailnetClients
    ) -> None:
        self.client: Client = manager.client
        self.kind = owner.kind
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
            if not any(state.get(k) for k in (StateKeys.DEVICE_ID, StateKeys.AUTHKEY_ID, AUTHKEY_FIELD)):
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
            return Result(requeue_after=5.0)  # the tailnet controller has not built its client yet
        request = AuthKeyRequest(tags=group.pod.tags, preauthorized=True, description=f"tsgw {req.namespace}")
        store = SecretStateStore(self.client, req.namespace)
        for replica in group.replica_names():
            live = self.secrets.get((req.namespace, replica))
            if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
                retry = True  # the proxy-group controller creates it first
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
                retry = True
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
                retry = True
                continue
            if want is None and current is not None:
                await store.save(replica, {AUTHKEY_FIELD: None})  # registered: the key leaves
        return Result(requeue_after=5.0) if retry else None

    async def _drop_finalizer(self, secret: RawObject) -> None:
        md = secret.get("metadata") or {}
        rest = [f for f in md.get("finalizers") or () if f != DEVICE_FINALIZER]
        with contextlib.suppress(NotFound):
            await self.client.patch(
                SECRETS,
                md["name"],
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": md.get("resourceVersion")},
                    {"op": "replace", "path": "/metadata/finalizers", "value": rest},
                ],
                namespace=md.get("namespace"),
                patch_type="json",
                field_manager=FIELD_MANAGER,
            )
