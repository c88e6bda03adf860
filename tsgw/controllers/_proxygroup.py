"""Proxy groups: the Kubernetes objects each group's proxies run on, applied and pruned. Leader
only.

For an object that owns a proxy group (TailscaleEndpoints, TailscaleServices, TailscaleGateway),
the desired objects are the pipeline's (:attr:`tsgw.translate.Result.objects`: ServiceAccount,
Role, RoleBinding, per-replica state and config Secrets, the Envoy bootstrap ConfigMap, for
ingress the serve ConfigMap, for egress the ClusterIP Service, and the StatefulSet). The
reconciler:

- applies each desired object by server-side apply (field manager ``tsgw``, forced) **only when
  the cached object does not already hold it** (every field and list item tsgw sets is present
  with that value), so a steady state makes no writes and a drift (someone edits the
  StatefulSet) is put back;
- writes in three waves, each concurrently: the replicas' state Secrets (the auth-key
  controller mints for them meanwhile) and the Role, then every other object, then the
  StatefulSet;
- prunes objects it owns for this owner (labels ``gateway.tailscale.com/owner-kind`` and
  ``owner-name``) that the desired set no longer contains (a port removed, a replica scaled
  away);
- holds the StatefulSet (and a scale-up's new replicas) until each replica's config Secret
  carries its auth key or its device is registered, so a proxy pod's first mount of its config
  already has the key (a key written later reaches a running pod only with the kubelet's next
  Secret sync: ~15 s on the bed, up to a minute and more on a cluster);
- runs again when the pipeline publishes a change of the group, or when an owned object changes.

Owner references make the garbage collector delete everything when the owner goes. Devices and
auth keys (which live on the tailnet, not in Kubernetes) are the auth-key controller's.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import orjson
import structlog

from tsgw.kube import (
    CONFIGMAPS,
    SECRETS,
    SERVICES,
    Client,
    Controller,
    InformerOptions,
    Manager,
    MapFunc,
    NotFound,
    RawObject,
    Request,
    Resource,
    Result,
    controller_managed_by,
)
from tsgw.pipeline import Pipeline, Published
from tsgw.tailscale import StateKeys

__all__ = [
    "MANAGED_SELECTOR",
    "OWNED_RESOURCES",
    "ProxyGroupReconciler",
    "add_proxygroup_controllers",
    "contains",
    "enqueue_changed_groups",
    "owner_of",
]

log = structlog.get_logger("tsgw.controllers.proxygroup")

FIELD_MANAGER = "tsgw"
OWNER_KIND = "gateway.tailscale.com/owner-kind"
OWNER_NAME = "gateway.tailscale.com/owner-name"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=tsgw"
"""The label selector of every object tsgw owns (its informers watch only these)."""

SERVICEACCOUNTS = Resource("v1", "ServiceAccount", "serviceaccounts")
ROLES = Resource("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
STATEFULSETS = Resource("apps/v1", "StatefulSet", "statefulsets")
OWNED_RESOURCES: tuple[Resource, ...] = (
    SERVICEACCOUNTS,
    ROLES,
    ROLEBINDINGS,
    SECRETS,
    CONFIGMAPS,
    SERVICES,
    STATEFULSETS,
)
"""What a proxy group is made of, in the order they are applied."""
_BY_KIND = {r.kind: r for r in OWNED_RESOURCES}
_CONCURRENT_WRITES = 8
"""Writes of one group in flight at once (a group has ~10 objects with one replica)."""


def contains(live: Any, want: Any) -> bool:
    """Whether ``live`` holds everything ``want`` sets: dicts by key (recursively), lists item
    by item with equal length, scalars by equality. What server-side apply would change if
    ``want`` were applied is exactly what makes this False (defaults the server adds are not
    in ``want``)."""
    if isinstance(want, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(k in live and contains(live[k], v) for k, v in want.items())
    if isinstance(want, list | tuple):
        if not isinstance(live, list | tuple) or len(live) != len(want):
            return False
        return all(contains(a, b) for a, b in zip(live, want, strict=True))
    if isinstance(want, int) and not isinstance(want, bool) and isinstance(live, str):
        return str(want) == live  # resource quantities come back as strings
    return bool(live == want)


def _as_stored(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Secret's ``stringData`` as the API server stores it (base64 ``data``)."""
    if obj.get("kind") != "Secret" or "stringData" not in obj:
        return obj
    out = {k: v for k, v in obj.items() if k != "stringData"}
    data = dict(out.get("data") or {})
    for k, v in obj["stringData"].items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    out["data"] = data
    return out


class ProxyGroupReconciler:
    """Applies and prunes one owning kind's proxy-group objects."""

    def __init__(self, manager: Manager, owner: Resource, pipeline: Pipeline) -> None:
        self.client: Client = manager.client
        self.owner = owner
        self.pipeline = pipeline
        self.owners = manager.informer(owner).store
        self.owned = {
            r.kind: manager.informer(r, InformerOptions(label_selector=MANAGED_SELECTOR))
            for r in OWNED_RESOURCES
        }
        self.settle = 5.0
        """Seconds to wait for the cache to show an object this reconciler just applied before
        applying it again (a drift after that is put back)."""
        self._applied: dict[tuple[str, str, str], tuple[bytes, float]] = {}
        self.writes = 0
        self.writes_by_namespace: collections.Counter[str] = collections.Counter()
        """Applies and deletes made (tests and benchmarks count them)."""

    def desired(self, latest: Published, req: Request) -> list[RawObject]:
        for g in latest.result.model.groups:
            o = g.owner
            if (o.kind, o.namespace, o.name) == (self.owner.kind, req.namespace, req.name):
                return list(latest.result.objects[(g.namespace, g.name)])
        return []

    def current(self, req: Request) -> list[RawObject]:
        out: list[RawObject] = []
        for inf in self.owned.values():
            for obj in inf.store.list(req.namespace):
                labels = (obj.get("metadata") or {}).get("labels") or {}
                if labels.get(OWNER_KIND) == self.owner.kind and labels.get(OWNER_NAME) == req.name:
                    out.append(obj)
        return out

    async def reconcile(self, req: Request) -> Result | None:
        latest = self.pipeline.latest.value
        if latest is None:
            return None
        owner = self.owners.get(req)
        if owner is None or (owner.get("metadata") or {}).get("deletionTimestamp"):
            # Gone or going: the garbage collector deletes what it owned (owner references).
            # Applying from a result that still lists the group would re-create a state
            # Secret, and the auth-key controller would mint a key for a proxy that never runs.
            return None
        st = latest.status_of(self.owner.kind, req.namespace, req.name)
        generation = (owner.get("metadata") or {}).get("generation") or 0
        if st is not None and st.ref.generation != generation:
            return None  # the pipeline has not translated this generation yet; it enqueues again
        want = self.desired(latest, req)
        wanted = {(o["kind"], o["metadata"]["name"]) for o in want}
        now = time.monotonic()
        configs = _config_secrets(want)
        pending: list[bool] = []  # one True per object applied moments ago, its cache behind

        async def apply(obj: RawObject) -> None:
            if obj["kind"] == "StatefulSet":
                held = self._held(obj, want, req.namespace)
                if held is None:
                    return  # no pod may start yet: a replica's config has no key
                obj = held
            res = _BY_KIND[obj["kind"]]
            key = (obj["kind"], req.namespace, obj["metadata"]["name"])
            live = self.owned[obj["kind"]].store.get(key[1:])
            replica = configs.get(key[2]) if key[0] == "Secret" else None
            if (
                replica is not None
                and live is None
                and not _has_auth_key(obj)
                and not self._registered(replica, req.namespace)
            ):
                # A new replica's config before its key: nothing reads it (its pod waits for
                # the key), and it would be written again with the key moments later.
                return
            stored = _as_stored(obj)
            if live is not None and contains(live, stored):
                self._applied.pop(key, None)
                return
            # Applied moments ago and the cache has not caught up (each kind has its own
            # informer): wait for it instead of writing the same thing again.
            digest = _digest(stored)
            seen = self._applied.get(key)
            if seen is not None and seen[0] == digest and now - seen[1] < self.settle:
                pending.append(True)
                return
            log.debug("applying", kind=key[0], name=key[2], namespace=req.namespace, drift=live is not None)
            await self.client.apply(res, obj, field_manager=FIELD_MANAGER)
            self._applied[key] = (digest, time.monotonic())
            self.writes += 1
            self.writes_by_namespace[req.namespace] += 1

        for wave in _waves(want, set(configs.values())):
            await _all(apply, wave)
        waiting = bool(pending)
        for obj in self.current(req):
            md = obj["metadata"]
            if (obj.get("kind") or "", md["name"]) in wanted or md.get("deletionTimestamp"):
                continue
            kind = obj.get("kind") or ""
            gone = _BY_KIND.get(kind)
            if gone is None:
                continue
            try:
                await self.client.delete(gone, md["name"], md.get("namespace"), uid=md.get("uid"))
                self.writes += 1
                self.writes_by_namespace[req.namespace] += 1
                log.info("pruned", kind=kind, name=md["name"], namespace=md.get("namespace"))
            except NotFound:
                pass
        return Result(requeue_after=self.settle) if waiting else None

    def _keyed(self, replica: str, want: Sequence[RawObject], namespace: str) -> bool:
        """Whether ``replica``'s pod may start: the config Secret applied before the
        StatefulSet (same reconcile, earlier in ``want``) carries its auth key, or its device is
        registered already (``device_id`` in its state Secret: containerboot logs in from its
        state, no key needed)."""
        if self._registered(replica, namespace):
            return True
        config = next(
            (o for o in want if o["kind"] == "Secret" and o["metadata"]["name"] == f"{replica}-config"), None
        )
        return config is not None and _has_auth_key(config)

    def _registered(self, replica: str, namespace: str) -> bool:
        state = self.owned["Secret"].store.get((namespace, replica))
        return state is not None and bool((state.get("data") or {}).get(StateKeys.DEVICE_ID))

    def _held(self, sts: RawObject, want: Sequence[RawObject], namespace: str) -> RawObject | None:
        """The StatefulSet to apply, such that no pod starts before its key is in its config.

        A pod mounts its config Secret when it starts; a key written after that reaches the
        mounted file only with the kubelet's next sync of Secret volumes (a minute at worst, ~15 s
        on the bed), so the pod would wait that long to join. So: no StatefulSet until every
        replica's config holds its key (or the device is registered: restarts, re-issues); once
        it exists, a scale-up adds only the replicas that are keyed, in order (ordinal names),
        and never scales below what runs. None: do not apply it now (the key's arrival changes
        the group's output and the state Secret, both of which enqueue this owner again)."""
        spec = sts["spec"]
        names = [f"{sts['metadata']['name']}-{i}" for i in range(int(spec["replicas"]))]
        keyed = 0
        for name in names:
            if not self._keyed(name, want, namespace):
                break
            keyed += 1
        if keyed == len(names):
            return sts
        live = self.owned["StatefulSet"].store.get((namespace, sts["metadata"]["name"]))
        if live is None:
            log.debug("statefulset held until every replica's config has its key", name=names[0])
            return None
        running = int((live.get("spec") or {}).get("replicas") or 0)
        replicas = min(len(names), max(running, keyed))
        return {**sts, "spec": {**spec, "replicas": replicas}}


def _waves(want: Sequence[RawObject], replicas: set[str]) -> list[list[RawObject]]:
    """``want`` in the order it is applied: waves whose objects are written concurrently.

    1. The replicas' state Secrets, and the Role: a new state Secret is what the auth-key
       controller mints a key for, and the StatefulSet waits for that key, so the mint overlaps
       every other write. The Role goes before its RoleBinding: the operator holds no ``bind``
       verb, so the API server checks a binding against the Role's rules and refuses it (404)
       while the Role does not exist yet.
    2. Everything else but the StatefulSet, written at once rather than one after another
       (each write is a round trip; the bed's audit log showed a RoleBinding alone ~100 ms).
    3. The StatefulSet, last: its pods mount the Secrets and ConfigMaps and run as the
       ServiceAccount of wave 2."""
    first = [
        o
        for o in want
        if (o["kind"] == "Secret" and o["metadata"]["name"] in replicas) or o["kind"] == "Role"
    ]
    sts = [o for o in want if o["kind"] == "StatefulSet"]
    placed = {id(o) for o in (*first, *sts)}
    rest = [o for o in want if id(o) not in placed]
    return [w for w in (first, rest, sts) if w]


async def _all(fn: Callable[[RawObject], Awaitable[None]], objs: Sequence[RawObject]) -> None:
    """``fn`` on every object concurrently (at most :data:`_CONCURRENT_WRITES` at once); every
    call runs to its end, then the first error, if any, is raised (a plain exception, as a
    sequential loop would raise, not a group)."""
    if len(objs) == 1:
        await fn(objs[0])
        return
    errors: list[Exception] = []
    limit = anyio.CapacityLimiter(_CONCURRENT_WRITES)

    async def one(obj: RawObject) -> None:
        async with limit:
            try:
                await fn(obj)
            except Exception as e:
                errors.append(e)

    async with anyio.create_task_group() as tg:
        for obj in objs:
            tg.start_soon(one, obj)
    if errors:
        raise errors[0]


def _config_secrets(want: Sequence[RawObject]) -> dict[str, str]:
    """Config Secret name → its replica, for the group's StatefulSet in ``want``."""
    out: dict[str, str] = {}
    for o in want:
        if o["kind"] == "StatefulSet":
            for i in range(int(o["spec"]["replicas"])):
                pod = f"{o['metadata']['name']}-{i}"
                out[f"{pod}-config"] = pod
    return out


def _has_auth_key(config: RawObject) -> bool:
    """Whether a replica's desired config Secret (``stringData``: tailscaled config files, JSON)
    sets ``AuthKey``."""
    for text in (config.get("stringData") or {}).values():
        try:
            if (orjson.loads(text) or {}).get("AuthKey"):
                return True
        except (orjson.JSONDecodeError, AttributeError):
            continue
    return False


def _digest(obj: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).digest()


def owner_of(kind: str) -> MapFunc:
    """Map an owned object's events to its owner of ``kind``, by the owner labels every object
    tsgw owns carries (owner references would name only the owner's uid)."""

    def owners(obj: RawObject) -> Iterable[Request]:
        md = obj.get("metadata") or {}
        labels = md.get("labels") or {}
        if labels.get(OWNER_KIND) == kind and labels.get(OWNER_NAME):
            yield Request(md.get("namespace") or "", labels[OWNER_NAME])

    return owners


def add_proxygroup_controllers(
    manager: Manager, pipeline: Pipeline, owners: Sequence[Resource]
) -> dict[str, Controller]:
    """One controller per owning kind: for_(the kind), watching the owned objects by label."""
    out: dict[str, Controller] = {}
    for r in owners:
        b = controller_managed_by(manager).for_(r).named(f"{r.kind.lower()}-proxygroup")
        for owned in OWNED_RESOURCES:
            b = b.watches(owned, owner_of(r.kind), informer=InformerOptions(label_selector=MANAGED_SELECTOR))
        out[r.kind] = b.complete(ProxyGroupReconciler(manager, r, pipeline))
    return out


async def enqueue_changed_groups(pipeline: Pipeline, controllers: Mapping[str, Controller]) -> None:
    """Follow the pipeline; enqueue the owner of every group whose output changed (and of every
    group that disappeared, to prune it). Runs until cancelled.

    Compares each published result with the last one this loop saw, not the translator's
    ``changed`` set: a reader that skips to the latest value must not lose a change. The
    translator reuses a group's resources object while nothing of the group changed, so an
    identity check finds the changes."""
    seen: Mapping[tuple[str, str], tuple[tuple[str, str, str], object]] = {}
    async for published in pipeline.latest.watch():
        result = published.result
        now = {
            (g.namespace, g.name): (
                (g.owner.kind, g.owner.namespace, g.owner.name),
                result.xds[(g.namespace, g.name)],
            )
            for g in result.model.groups
            if (g.namespace, g.name) in result.xds
        }
        for key in now.keys() | seen.keys():
            new, old = now.get(key), seen.get(key)
            if new is not None and old is not None and new[1] is old[1]:
                continue
            owner = (new or old)[0]  # type: ignore[index]
            if owner[0] in controllers:
                controllers[owner[0]].queue.add(Request(owner[1], owner[2]))
        seen = now
        await anyio.lowlevel.checkpoint()
