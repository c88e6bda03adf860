"""Tailscale Services: the ``svc:<name>`` each ingress proxy group hosts, made to exist on the
tailnet with the group's ports and tags, and given up when the group goes. Leader only.

For each object that owns an ingress group (TailscaleServices, TailscaleGateway) on a control
plane that has Tailscale Services (Tailscale's API; Headscale has none: there each proxy serves
on its own name, see :mod:`tsgw.translate._ingress`), the reconciler:

- adds the finalizer ``gateway.tailscale.com/tailscale-service`` to the object **before** it
  creates anything on the tailnet, so deleting the object always passes through here;
- claims the service (:func:`tsgw.tailscale.plan_claim`): creates it, or adds this object's
  claim to the owner annotation of one tsgw already made, keeping the VIPs control allocated.
  A service tsgw did not make is never taken over, and a definition (ports, tags) other owners
  set differently is left alone: both become a Warning Event on the object
  (``TailscaleServiceForeign``, ``TailscaleServiceConflict``) and its condition
  ``TailscaleServiceClaimed=False`` (``Foreign``, ``Conflict``: who holds it and how it is
  defined), and the object's status keeps saying the service is not ready; a claim that holds
  is ``TailscaleServiceClaimed=True``;
- releases this object's claims on every other service (a renamed ``serviceName``) and, when
  the object is being deleted, on its own, deleting a service only when no claim is left;
  then removes the finalizer;
- asks the tailnet controller to poll the facts at once after a write, so the VIPs reach the
  status (translation's ``TailscaleServiceReady`` condition reads them from the facts) without
  waiting for the poll interval.

Hosts are approved by the tailnet's policy (``autoApprovers.services``), as with Tailscale's
own operator: tsgw never edits the policy. Which operator made a claim is the operator's
``--cluster-id``.

The Tailscale API offers no conditional write for services (no ETag, no If-Match), so a claim
or a release is a read-modify-write, and two operators' writes can interleave: B reads, A
writes its claim, B writes what it read plus its own claim, and A's claim is gone. So every
write is verified (:func:`converge_claim`, :func:`converge_release`): after it, the operator
waits ``settle`` seconds (jittered), reads the service again and plans again, until a read
needs no write (or ``attempts`` run out: the reconcile is retried). A write of another
operator that was planned on a read older than our write reaches the API, in practice, within
milliseconds of its read; the verify read comes ``settle`` (1 s) after our write, so a lost
claim (or a release undone by a stale write, or a service re-created by one after its last
owner deleted it) is seen and repaired then. What remains: a write that spends longer than
``settle`` between the other operator's read and its arrival at the API (a stalled process, a
request stuck in transit) can still undo ours after we verified; the resync (every
``RESYNC_S``) repairs a lost claim then, and a release undone that way leaves a stale claim
that keeps the service alive until its operator's next reconcile of that object (none, if the
object is gone: ``docs/multicluster.md`` says how to remove it). An operator never writes
another's claim away on purpose, and never writes a definition (ports, tags) other owners set
differently: that is a conflict, reported, and this object's own claim is withdrawn.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
import anyio.lowlevel
import structlog

from tsgw.controllers._status import write_condition
from tsgw.controllers._tailnets import TailnetClients
from tsgw.kube import (
    Client,
    Controller,
    EventRecorder,
    Manager,
    NotFound,
    RawObject,
    Request,
    Resource,
    Result,
)
from tsgw.model import Condition, ProxyGroup
from tsgw.pipeline import Pipeline, Published
from tsgw.tailscale import (
    APIError,
    NotFoundError,
    OwnerRef,
    TailscaleError,
    TailscaleService,
    owners_of,
    plan_claim,
    plan_release,
)
from tsgw.tailscale import Client as TailscaleAPI

__all__ = [
    "SERVICE_CLAIMED",
    "SERVICE_FINALIZER",
    "ClaimOutcome",
    "ServiceReconciler",
    "converge_claim",
    "converge_release",
    "enqueue_changed_services",
    "set_finalizers",
]

log = structlog.get_logger("tsgw.controllers.services")

SERVICE_FINALIZER = "gateway.tailscale.com/tailscale-service"
SERVICE_CLAIMED = "TailscaleServiceClaimed"
"""The owner's condition saying whether its claim on the service holds: True ``Claimed`` (with
how many other owners share it), False ``Conflict`` (other owners defined it differently: their
names and both definitions) or ``Foreign`` (made outside tsgw). Written by this controller, only
when it changes."""
FIELD_MANAGER = "tsgw-services"
RETRY_S = 10.0
"""Seconds before a reconcile that could not finish (no client yet, an API error) runs again."""
RESYNC_S = 300.0
"""Seconds between re-reads of a service that is in place, to put back one deleted or changed
outside tsgw."""
SETTLE_S = 1.0
"""Seconds (plus up to half again, at random) between a write to a service and the read that
verifies it: longer than another operator's read-to-write time, so a write of theirs planned
on an older read has landed by then."""
ATTEMPTS = 5
"""Writes one claim or release may make before the reconcile gives up and is retried."""


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """What :func:`converge_claim` or :func:`converge_release` ended with.

    ``action``: ``ok`` (the service holds the wanted claims: verified by a read that needed no
    write), ``foreign`` or ``conflict`` (left alone; ``reason`` says why), or ``unsettled``
    (still changing after ``attempts`` writes: try again later). ``writes``: API writes made."""

    action: str
    writes: int = 0
    reason: str = ""
    service: TailscaleService | None = None


async def _read(ts: TailscaleAPI, name: str) -> TailscaleService | None:
    try:
        return await ts.get_service(name)
    except NotFoundError:
        return None


async def _write(
    ts: TailscaleAPI, name: str, read: TailscaleService | None, put: Awaitable[TailscaleService]
) -> None:
    """Send a write planned on ``read``. A 400 on a service that changed since (another
    operator created it, or deleted and re-created it with new VIPs, which an update must
    carry) means: read again; a 400 on an unchanged service is a real error."""
    try:
        await put
    except APIError as e:
        if e.status != 400 or await _read(ts, name) == read:
            raise
        log.info("tailscale service changed under a write; reading again", service=name, error=str(e))


async def _pause(settle: float, sleep: Callable[[float], Awaitable[None]], rng: random.Random) -> None:
    await sleep(settle * (1.0 + 0.5 * rng.random()))


async def converge_claim(
    ts: TailscaleAPI,
    want: TailscaleService,
    me: OwnerRef,
    *,
    settle: float = SETTLE_S,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    rng: random.Random | None = None,
) -> ClaimOutcome:
    """Make ``me`` a host of ``want`` and verify it: read, plan (:func:`plan_claim`), write,
    wait ``settle``, read again, until a read needs no write. A conflict withdraws ``me``'s own
    claim if it held one (it no longer hosts the service's definition), then reports."""
    rng = rng or random.Random()
    writes = 0
    for _ in range(attempts + 1):
        current = await _read(ts, want.name)
        plan = plan_claim(current, want, me)
        if plan.action == "conflict" and current is not None:
            withdraw = plan_release(current, me)
            if withdraw.action == "put" and withdraw.service is not None:
                await _write(ts, want.name, current, ts.put_service(withdraw.service))
                writes += 1
                await _pause(settle, sleep, rng)
                continue
            return ClaimOutcome("conflict", writes, plan.reason, current)
        if plan.action in ("foreign", "conflict"):
            return ClaimOutcome(plan.action, writes, plan.reason, current)
        if plan.action == "none":
            return ClaimOutcome("ok", writes, "", current)
        if plan.service is None:  # "put" always carries the service
            raise AssertionError(plan)
        if writes >= attempts:
            break
        await _write(ts, want.name, current, ts.put_service(plan.service))
        writes += 1
        await _pause(settle, sleep, rng)
    return ClaimOutcome("unsettled", writes, f"{want.name} still changing after {writes} writes")


async def converge_release(
    ts: TailscaleAPI,
    name: str,
    me: OwnerRef,
    *,
    settle: float = SETTLE_S,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    rng: random.Random | None = None,
) -> ClaimOutcome:
    """Remove ``me``'s claim from service ``name`` (deleting the service when it was the last)
    and verify it: read, plan (:func:`plan_release`), write, wait ``settle``, read again, until a
    read finds no claim of ``me``."""
    rng = rng or random.Random()
    writes = 0
    for _ in range(attempts + 1):
        current = await _read(ts, name)
        if current is None:
            return ClaimOutcome("ok", writes)
        plan = plan_release(current, me)
        if plan.action == "none":
            return ClaimOutcome("ok", writes, "", current)
        if writes >= attempts:
            break
        if plan.action == "delete":
            await ts.delete_service(name, missing_ok=True)
        elif plan.service is not None:
            await _write(ts, name, current, ts.put_service(plan.service))
        writes += 1
        await _pause(settle, sleep, rng)
    return ClaimOutcome("unsettled", writes, f"{name} still changing after {writes} writes")


class _Unsettled(Exception):
    """A claim or release still changing after its attempts (another operator writing too)."""


def _group_of(latest: Published, kind: str, namespace: str, name: str) -> ProxyGroup | None:
    for g in latest.result.model.groups:
        if (g.owner.kind, g.owner.namespace, g.owner.name) == (kind, namespace, name):
            return g
    return None


def desired_service(group: ProxyGroup) -> TailscaleService | None:
    """The Tailscale Service a group should host on the tailnet (None when it hosts none or its
    control plane has none)."""
    ts = group.tailscale_service
    if ts is None or group.pod.serve_on_device:
        return None
    return TailscaleService(
        name=ts.name,
        ports=tuple(f"tcp:{port}" for port, _ in ts.ports),
        tags=ts.tags,
        comment=f"tsgw {group.owner.kind} {group.owner.namespace}/{group.owner.name}",
    )


class ServiceReconciler:
    """For one owning kind: each object's Tailscale Service claimed, and released when it goes.
    ``tailnets`` is the TailscaleTailnet resource (an object whose tailnet was deleted lets go
    of its finalizer: nothing is left that could release the claim)."""

    def __init__(
        self,
        manager: Manager,
        resource: Resource,
        pipeline: Pipeline,
        clients: TailnetClients,
        *,
        tailnets: Resource,
        operator_id: str,
        recorder: EventRecorder | None = None,
        poke: Callable[[str], None] = lambda tailnet: None,
        settle: float = SETTLE_S,
    ) -> None:
        self.client: Client = manager.client
        self.resource = resource
        self.pipeline = pipeline
        self.clients = clients
        self.operator_id = operator_id
        self.recorder = recorder
        self.poke = poke
        """Called with a tailnet's name after a write, to have its facts polled now."""
        self.store = manager.informer(resource).store
        self.tailnets = manager.informer(tailnets).store
        self.writes = 0
        """Tailscale API writes made (tests and benchmarks count them)."""
        self.settle = settle

    def _me(self, obj: RawObject) -> OwnerRef:
        md = obj.get("metadata") or {}
        return OwnerRef(
            self.operator_id, self.resource.kind, md.get("namespace") or "", md["name"], md.get("uid") or ""
        )

    def _event(self, obj: RawObject, reason: str, note: str) -> None:
        log.warning("tailscale service not claimed", reason=reason, note=note)
        if self.recorder is not None:
            self.recorder.event(obj, "Warning", reason, note)

    async def reconcile(self, req: Request) -> Result | None:
        obj = self.store.get(req)
        latest = self.pipeline.latest.value
        if obj is None or latest is None:
            return None
        md = obj.get("metadata") or {}
        finalizers = list(md.get("finalizers") or ())
        deleting = bool(md.get("deletionTimestamp"))
        tailnet = ((obj.get("spec") or {}).get("tailnetRef") or {}).get("name", "")
        ts = self.clients.get(tailnet) if tailnet else None
        if ts is not None and not ts.capabilities.services:
            ts = None  # Headscale: nothing to make; a finalizer left from another control plane goes
            if SERVICE_FINALIZER in finalizers:
                await self._set_finalizers(obj, [f for f in finalizers if f != SERVICE_FINALIZER])
            return None
        want: TailscaleService | None = None
        if not deleting:
            group = _group_of(latest, self.resource.kind, req.namespace, req.name)
            st = latest.status_of(self.resource.kind, req.namespace, req.name)
            if st is None or st.ref.generation != (md.get("generation") or 0):
                return None  # not translated in this generation yet: the pipeline enqueues again
            want = desired_service(group) if group is not None else None
        if want is None and SERVICE_FINALIZER not in finalizers:
            return None  # nothing hosted and nothing ever claimed
        if ts is None:
            if deleting and self.tailnets.get(Request("", tailnet)) is None:
                # The tailnet object is gone with its credentials: nothing can release the claim.
                self._event(
                    obj,
                    "TailnetNotFound",
                    f"tailnet {tailnet!r} is gone: its Tailscale Service is left as it is",
                )
                await self._set_finalizers(obj, [f for f in finalizers if f != SERVICE_FINALIZER])
                return None
            log.info(
                "tailnet has no working client yet", tailnet=tailnet, object=f"{req.namespace}/{req.name}"
            )
            return Result(requeue_after=RETRY_S)
        if want is not None and SERVICE_FINALIZER not in finalizers:
            await self._set_finalizers(obj, [*finalizers, SERVICE_FINALIZER])
            return None  # the update event brings the object back with its finalizer
        me = self._me(obj)
        wrote = False
        refused = False
        try:
            for current in await ts.list_services():
                if (want is not None and current.name == want.name) or not any(
                    o.same_object(me) for o in owners_of(current) or ()
                ):
                    continue
                wrote |= await self._release(ts, current, me)
            if want is not None:
                claimed, refused = await self._claim(ts, obj, want, me)
                wrote |= claimed
        except _Unsettled as e:
            log.warning("Tailscale Service still changing; will retry", error=str(e))
            return Result(requeue_after=self.settle * 2)
        except TailscaleError as e:
            log.warning(
                "Tailscale API call failed; will retry", object=f"{req.namespace}/{req.name}", error=str(e)
            )
            self._event(obj, "TailscaleAPIError", str(e))
            return Result(requeue_after=RETRY_S)
        finally:
            if wrote:
                self.poke(tailnet)
        if deleting:
            await self._set_finalizers(obj, [f for f in finalizers if f != SERVICE_FINALIZER])
            return None
        # Refused (a conflict, a foreign service): look again soon, the other side may change.
        return Result(requeue_after=RETRY_S if refused else RESYNC_S)

    async def _claim(
        self, ts: TailscaleAPI, obj: RawObject, want: TailscaleService, me: OwnerRef
    ) -> tuple[bool, bool]:
        """(wrote, refused)"""
        out = await converge_claim(ts, want, me, settle=self.settle)
        self.writes += out.writes
        if out.action == "foreign":
            self._event(obj, "TailscaleServiceForeign", out.reason)
            await self._condition(obj, Condition(SERVICE_CLAIMED, False, "Foreign", out.reason))
        elif out.action == "conflict":
            self._event(obj, "TailscaleServiceConflict", out.reason)
            await self._condition(obj, Condition(SERVICE_CLAIMED, False, "Conflict", out.reason))
        elif out.action == "unsettled":
            raise _Unsettled(out.reason)
        else:
            others = sorted(
                {o.operator_id for o in owners_of(out.service) or () if not o.same_object(me)}
                if out.service is not None
                else set()
            )
            note = f"{want.name} claimed by cluster {me.operator_id!r}"
            if others:
                note += f", shared with cluster(s) {', '.join(others)}"
            await self._condition(obj, Condition(SERVICE_CLAIMED, True, "Claimed", note))
            if out.writes:
                log.info("tailscale service claimed", service=want.name, writes=out.writes)
        return out.writes > 0, out.action in ("foreign", "conflict")

    async def _release(self, ts: TailscaleAPI, current: TailscaleService, me: OwnerRef) -> bool:
        out = await converge_release(ts, current.name, me, settle=self.settle)
        self.writes += out.writes
        if out.action == "unsettled":
            raise _Unsettled(out.reason)
        if out.writes:
            gone = out.service is None
            log.info("tailscale service claim released", service=current.name, deleted=gone)
        return out.writes > 0

    async def _condition(self, obj: RawObject, condition: Condition) -> None:
        with contextlib.suppress(NotFound):
            await write_condition(self.client, self.resource, obj, condition)

    async def _set_finalizers(self, obj: RawObject, finalizers: list[str]) -> None:
        await set_finalizers(self.client, self.resource, obj, finalizers)


async def set_finalizers(client: Client, resource: Resource, obj: RawObject, finalizers: list[str]) -> None:
    """Set the object's finalizers, provided they are still the ones seen (JSON patch).

    The precondition is the list itself, not the resourceVersion: a status or annotation
    write changes the version, not the finalizers, and testing the version failed such a
    write with a 422 and a retry (the status controller's first write races the first
    finalizer on every new object). With no list yet, the test is for ``null``: the API
    server's JSON patch takes an absent member as null, so another writer's finalizer added
    meanwhile still fails it. Gone objects are ignored."""
    md = obj.get("metadata") or {}
    seen = list(md["finalizers"]) if "finalizers" in md else None
    with contextlib.suppress(NotFound):
        await client.patch(
            resource,
            md["name"],
            [
                {"op": "test", "path": "/metadata/finalizers", "value": seen},
                {
                    "op": "add" if seen is None else "replace",
                    "path": "/metadata/finalizers",
                    "value": finalizers,
                },
            ],
            namespace=md.get("namespace"),
            patch_type="json",
            field_manager=FIELD_MANAGER,
        )


async def enqueue_changed_services(pipeline: Pipeline, controllers: Mapping[str, Controller]) -> None:
    """Follow the pipeline; enqueue the owner of every group whose wanted Tailscale Service
    changed, appeared or disappeared. Runs until cancelled."""
    seen: dict[tuple[str, str, str], TailscaleService | None] = {}
    async for published in pipeline.latest.watch():
        now = {
            (g.owner.kind, g.owner.namespace, g.owner.name): desired_service(g)
            for g in published.result.model.groups
            if g.owner.kind in controllers
        }
        for key in now.keys() | seen.keys():
            if key in now and key in seen and now[key] == seen[key]:
                continue
            controllers[key[0]].queue.add(Request(key[1], key[2]))
        seen = now
        await anyio.lowlevel.checkpoint()
