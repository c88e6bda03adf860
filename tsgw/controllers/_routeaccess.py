"""Route access: the TailscaleRouteAccess objects Envoy Gateway reads, applied and pruned.
Leader only.

A TailscaleRoutePolicy that targets Gateway API routes is applied in Envoy Gateway's Envoy by
tsgw's extension, from a TailscaleRouteAccess that Envoy Gateway passes with each route
(``policyResources``). Translation derives those objects, tags and users resolved from the
tailnet's facts (:attr:`tsgw.translate.Result.route_access`); this controller writes them:

- one per policy, same namespace and name, labelled as every object tsgw owns
  (``app.kubernetes.io/managed-by=tsgw``, owner kind and name) and owned by the policy (an owner
  reference: the garbage collector deletes it with the policy);
- applied by server-side apply (field manager ``tsgw``) only when the cached object does not
  already hold it, so a steady state writes nothing; a change of the tailnet's devices is a
  change of its spec, which bumps its generation, which is what makes Envoy Gateway translate
  again (it watches ``policyResources`` with a generation-changed predicate);
- deleted when the policy no longer derives one (no route target held, no access rules);
- triggered by the pipeline (:func:`enqueue_changed_route_access`), by the policy's events and by
  the object's own (drift is put back).

Envoy Gateway writes the object's status (its PolicyStatus: Accepted per Gateway); tsgw never
does.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from tsgw import api
from tsgw.controllers._proxygroup import MANAGED_SELECTOR, OWNER_KIND, OWNER_NAME, contains, owner_of
from tsgw.kube import (
    Client,
    Controller,
    InformerOptions,
    Manager,
    NotFound,
    RawObject,
    Request,
    Resource,
    Result,
    Store,
    controller_managed_by,
)
from tsgw.pipeline import Pipeline, Published

__all__ = [
    "ROUTE_ACCESSES",
    "RouteAccessReconciler",
    "add_route_access_controller",
    "enqueue_changed_route_access",
    "route_access_object",
]

log = structlog.get_logger("tsgw.controllers.routeaccess")

FIELD_MANAGER = "tsgw"
POLICY_KIND = "TailscaleRoutePolicy"
_KIND = api.DERIVED_KINDS[0]
ROUTE_ACCESSES = Resource(api.API_VERSION, _KIND.kind, _KIND.plural, _KIND.namespaced)
"""The TailscaleRouteAccess resource."""
_MANAGED_BY = dict([MANAGED_SELECTOR.split("=", 1)])


def route_access_object(derived: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """The object to apply: translation's derived object with tsgw's labels and an owner
    reference to ``policy`` (its cached object)."""
    md = policy.get("metadata") or {}
    return {
        "apiVersion": derived["apiVersion"],
        "kind": derived["kind"],
        "metadata": {
            "name": derived["metadata"]["name"],
            "namespace": derived["metadata"]["namespace"],
            "labels": {**_MANAGED_BY, OWNER_KIND: POLICY_KIND, OWNER_NAME: md.get("name")},
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": POLICY_KIND,
                    "name": md.get("name"),
                    "uid": md.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": derived["spec"],
    }


def _derived(published: Published) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in published.result.route_access}


class RouteAccessReconciler:
    """Keeps one policy's TailscaleRouteAccess as the pipeline's latest result derives it."""

    def __init__(self, client: Client, policies: Store, accesses: Store, pipeline: Pipeline) -> None:
        self.client = client
        self.policies = policies
        self.accesses = accesses
        self.pipeline = pipeline
        self.writes = 0
        self.writes_by_namespace: collections.Counter[str] = collections.Counter()
        """API writes made (tests count them)."""

    async def reconcile(self, req: Request) -> Result | None:
        latest = self.pipeline.latest.value
        if latest is None:
            return None
        policy = self.policies.get(req)
        live = self.accesses.get(req)
        if policy is None or (policy.get("metadata") or {}).get("deletionTimestamp"):
            return None  # the garbage collector deletes what the policy owned
        md = policy.get("metadata") or {}
        st = latest.status_of(POLICY_KIND, req.namespace, req.name)
        if st is None or st.ref.generation != (md.get("generation") or 0) or st.ref.uid != md.get("uid"):
            return None  # this generation is not translated yet: the pipeline enqueues it again
        derived = _derived(latest).get((req.namespace, req.name))
        if derived is None:
            if live is not None and _ours(live):
                try:
                    await self.client.delete(ROUTE_ACCESSES, req.name, req.namespace, uid=_uid(live))
                except NotFound:
                    return None
                self._wrote(req.namespace)
                log.info("route access removed", namespace=req.namespace, name=req.name)
            return None
        want = route_access_object(derived, policy)
        if live is not None and contains(live, want):
            return None
        await self.client.apply(ROUTE_ACCESSES, want, field_manager=FIELD_MANAGER)
        self._wrote(req.namespace)
        log.info("route access applied", namespace=req.namespace, name=req.name, drift=live is not None)
        return None

    def _wrote(self, namespace: str) -> None:
        self.writes += 1
        self.writes_by_namespace[namespace] += 1


def _ours(obj: RawObject) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(OWNER_KIND) == POLICY_KIND)


def _uid(obj: RawObject) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return uid if isinstance(uid, str) else None


def add_route_access_controller(manager: Manager, pipeline: Pipeline, policies: Resource) -> Controller:
    """The controller of TailscaleRouteAccess objects, keyed by their policy."""
    managed = InformerOptions(label_selector=MANAGED_SELECTOR)
    accesses = manager.informer(ROUTE_ACCESSES, managed).store
    reconciler = RouteAccessReconciler(manager.client, manager.informer(policies).store, accesses, pipeline)
    return (
        controller_managed_by(manager)
        .for_(policies)
        .named("tailscaleroutepolicy-access")
        .watches(ROUTE_ACCESSES, owner_of(POLICY_KIND), informer=managed)
        .complete(reconciler)
    )


async def enqueue_changed_route_access(pipeline: Pipeline, controller: Controller) -> None:
    """Follow the pipeline; enqueue the policy of every derived object that changed, appeared or
    disappeared. Runs until cancelled."""
    seen: Mapping[tuple[str, str], Mapping[str, Any]] = {}
    async for published in pipeline.latest.watch():
        now = _derived(published)
        for key in _changed(seen, now):
            controller.queue.add(Request(*key))
        seen = now


def _changed(
    old: Mapping[tuple[str, str], Mapping[str, Any]], new: Mapping[tuple[str, str], Mapping[str, Any]]
) -> Iterable[tuple[str, str]]:
    for key in old.keys() | new.keys():
        if old.get(key) != new.get(key):
            yield key
