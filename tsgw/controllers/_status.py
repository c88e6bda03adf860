"""Status: the pipeline's verdict on each object, written to its status subresource when it
changes. Leader only.

The pipeline (every replica) computes each object's conditions: translation's Accepted and
ResolvedRefs, and Programmed from the Envoys' ACKs and NACKs. This controller writes them:

- Triggered by the pipeline: a runnable (:func:`enqueue_changed`) compares each new
  :class:`tsgw.pipeline.Published` with the previous one and enqueues the objects whose status
  changed; an object's own events (create, spec change) enqueue it too.
- Written only when different: the body is :func:`tsgw.translate.status_body` (conditions keep
  ``lastTransitionTime`` unless status or reason changed); a body the current status already
  holds writes nothing, so a steady state makes no API calls. Server-side apply on the status
  subresource, field manager ``tsgw``; the body holds translation's conditions only.
- A status for an older generation than the cached object is not written: the pipeline has not
  seen the new spec yet and will publish again.
- Not written twice while the cache catches up: the body of the last write, computed again
  within 2 s from a cached version other than the one that write made, writes nothing and looks
  again when the 2 s lapse (another writer may have changed it).

Conditions a controller derives from what it sees rather than from the pipeline (a tailnet's
``Ready``, an owner's ``AuthKeysReady``, ``TailscaleServiceClaimed``) are written by
:func:`write_condition`, likewise only when the object does not hold them already, each under a
field manager of its own (:func:`condition_manager`) that applies that condition and nothing
else. ``conditions`` is a map list keyed by type, so each writer's apply replaces its own
entries only: no writer re-applies another's from a stale cache (the earlier design, one
manager applying the whole merged status, let two writers flip an object's status back and
forth for as long as their caches lagged: ``Programmed`` True → Pending → True and the VIPs
dropped and restored, within 300 ms on the bed).
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from tsgw.controllers._proxygroup import contains
from tsgw.kube import (
    Client,
    Controller,
    Manager,
    RawObject,
    Request,
    Resource,
    Result,
    Store,
    controller_managed_by,
)
from tsgw.model import Condition, ObjectRef, ObjectStatus
from tsgw.pipeline import Pipeline, Published
from tsgw.translate import status_body

__all__ = [
    "FIELD_MANAGER",
    "StatusReconciler",
    "add_status_controllers",
    "condition_manager",
    "enqueue_changed",
    "write_condition",
]

log = structlog.get_logger("tsgw.controllers.status")

FIELD_MANAGER = "tsgw"


def now_rfc3339() -> str:
    """The time to stamp on a condition that transitions (whole seconds, as metav1.Time)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition_manager(condition_type: str) -> str:
    """The field manager that applies the condition ``condition_type`` (and the fields written
    with it), and nothing else: ``tsgw-condition-<type>``."""
    return f"{FIELD_MANAGER}-condition-{condition_type}"


def condition_body(
    kind: str, obj: RawObject, condition: Condition, extra: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The status apply configuration that sets ``condition`` (and the ``extra`` fields) on
    ``obj``: that condition only, stamped as :func:`tsgw.translate.status_body` stamps
    translation's (``lastTransitionTime`` kept while status and reason hold), for
    :func:`condition_manager`; None when the object holds all of it already."""
    md = obj.get("metadata") or {}
    ref = ObjectRef(kind, md.get("namespace") or "", md["name"], md.get("uid", ""), md.get("generation") or 0)
    current = obj.get("status") or {}
    stamped = status_body(
        ObjectStatus(ref, (condition,)), {"conditions": current.get("conditions")}, now_rfc3339()
    )
    body = {"conditions": stamped["conditions"], **(extra or {})}
    return None if holds(current, body) else body


def holds(current: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether the status ``current`` holds everything the apply configuration ``body`` sets:
    its fields as :func:`contains` compares them, its conditions by type (``current`` also
    holds the conditions other field managers wrote)."""
    if not contains(current, {k: v for k, v in body.items() if k != "conditions"}):
        return False
    have = {c.get("type"): c for c in current.get("conditions") or () if isinstance(c, Mapping)}
    return all(
        c.get("type") in have and contains(have[c.get("type")], c) for c in body.get("conditions") or ()
    )


async def write_condition(
    client: Client,
    resource: Resource,
    obj: RawObject,
    condition: Condition,
    *,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Write one condition of ``obj`` (:func:`condition_body`) unless it holds it already; True
    when it wrote. Server-side apply on the status subresource under the condition's own field
    manager (:func:`condition_manager`): the other conditions and fields are not in the body, so
    the API server keeps them as their writers left them. ``extra`` fields belong to the same
    manager: apply them on every write, or the API server removes them."""
    body = condition_body(resource.kind, obj, condition, extra)
    if body is None:
        return False
    md = obj.get("metadata") or {}
    await _apply_status(
        client,
        resource,
        md.get("namespace") or "",
        md["name"],
        body,
        manager=condition_manager(condition.type),
    )
    return True


async def _apply_status(
    client: Client, resource: Resource, namespace: str, name: str, body: Any, *, manager: str = FIELD_MANAGER
) -> RawObject | None:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return await client.apply_status(resource, {"metadata": meta, "status": body}, field_manager=manager)


WRITE_MEMORY = 2.0
"""Seconds a status write is remembered: an informer sees its own write well within it."""


@dataclass(frozen=True, slots=True)
class _Written:
    """A status write: the object's uid, a digest of the body, the resourceVersion the write
    made, and until when (monotonic) it is remembered."""

    uid: str
    digest: str
    version: str
    until: float


def _digest(body: Any) -> str:
    return hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=16).hexdigest()


class StatusReconciler:
    """Writes one kind's status from the pipeline's latest result."""

    def __init__(self, client: Client, resource: Resource, store: Store, pipeline: Pipeline) -> None:
        self.client = client
        self.resource = resource
        self.store = store
        self.pipeline = pipeline
        self.writes = 0
        self.writes_by_namespace: collections.Counter[str] = collections.Counter()
        """Status writes made (tests and benchmarks count them)."""
        self._last: dict[tuple[str, str], _Written] = {}
        """Per object, its last write (see :class:`_Written`)."""

    async def reconcile(self, req: Request) -> Result | None:
        obj = self.store.get(req)
        latest = self.pipeline.latest.value
        if obj is None:
            self._last.pop((req.namespace, req.name), None)
            return None
        if latest is None:
            return None
        st = latest.status_of(self.resource.kind, req.namespace, req.name)
        md = obj.get("metadata") or {}
        if st is None or st.ref.generation != (md.get("generation") or 0) or st.ref.uid != md.get("uid"):
            return None  # not translated yet in this generation: the pipeline enqueues it later
        current = obj.get("status") or {}
        body = status_body(st, current, now_rfc3339())
        if holds(current, body):
            return None  # (the server may hold more: defaults it filled in, others' conditions)
        # The body of the last write, again, while the cache shows another version than that
        # write made: the cache has not seen it yet (a pipeline push and an object event
        # enqueue the object twice within ~10-100 ms). Not written again; looked at once more
        # when the memory lapses, in case another writer changed the status meanwhile.
        key, uid, digest = (req.namespace, req.name), md.get("uid") or "", _digest(body)
        last, now = self._last.get(key), time.monotonic()
        unseen = last is not None and md.get("resourceVersion") != last.version
        if last is not None and unseen and (last.uid, last.digest) == (uid, digest) and now < last.until:
            return Result(requeue_after=last.until - now)
        written = await _apply_status(self.client, self.resource, req.namespace, req.name, body)
        version = str(((written or {}).get("metadata") or {}).get("resourceVersion") or "")
        self._last[key] = _Written(uid, digest, version, now + WRITE_MEMORY)
        self.writes += 1
        self.writes_by_namespace[req.namespace] += 1
        return None


def add_status_controllers(
    manager: Manager, pipeline: Pipeline, resources: Sequence[Resource]
) -> dict[str, Controller]:
    """One status controller per kind (built with controller_managed_by), keyed by kind."""
    out: dict[str, Controller] = {}
    for r in resources:
        store = manager.informer(r).store
        ctrl = (
            controller_managed_by(manager)
            .for_(r)
            .named(f"{r.kind.lower()}-status")
            .complete(StatusReconciler(manager.client, r, store, pipeline))
        )
        out[r.kind] = ctrl
    return out


async def enqueue_changed(pipeline: Pipeline, controllers: Mapping[str, Controller]) -> None:
    """Follow the pipeline; enqueue each object whose published status changed. Runs until
    cancelled."""
    previous: dict[tuple[str, str, str], Any] = {}
    published: Published
    async for published in pipeline.latest.watch():
        now: dict[tuple[str, str, str], Any] = {}
        for st in published.statuses:
            key = (st.ref.kind, st.ref.namespace, st.ref.name)
            now[key] = st
            if previous.get(key) != st:
                ctrl = controllers.get(st.ref.kind)
                if ctrl is not None:
                    ctrl.queue.add(Request(st.ref.namespace, st.ref.name))
        previous = now
        await anyio.lowlevel.checkpoint()
