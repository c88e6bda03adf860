"""The controller: event handlers feed a :class:`WorkQueue`; workers run the reconciler.

Semantics of controller-runtime ``pkg/internal/controller`` (controllers.md §1.10):

* start every watched informer and wait for them all to sync (``cache_sync_timeout``), then
  start ``max_concurrent_reconciles`` workers; the queue guarantees one object is never
  reconciled by two workers at once;
* an exception → ``add_rate_limited`` (per-item exponential backoff); :class:`TerminalError`
  (also inside an exception group, as a task group raises it) → recorded, forgotten, not
  retried; ``Result.requeue_after`` → forget then ``add_after``;
  success → forget;
* events from an initial list, and updates whose resourceVersion did not change, enter the queue
  at low priority so live changes overtake a 10 k-object startup;
* each reconcile runs with ``controller``, ``namespace``, ``name`` and a fresh ``reconcileID``
  bound in structlog's context, so every log line it writes says which reconcile it belongs to.

:meth:`Controller.shutdown` stops handing out work; workers finish their current item.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio
import structlog

from tsgw.kube._clock import Clock
from tsgw.kube._errors import CacheSyncError, ShutDown, TerminalError
from tsgw.kube._informer import Informer
from tsgw.kube._metrics import ControllerMetrics, QueueMetricsAdapter, register_queue
from tsgw.kube._predicates import Predicate
from tsgw.kube._ratelimit import RateLimiter
from tsgw.kube._reconcile import Reconciler, Request, Result
from tsgw.kube._resources import RawObject
from tsgw.kube._workqueue import LOW_PRIORITY, WorkQueue, WorkQueueOptions

__all__ = [
    "Controller",
    "ControllerOptions",
    "MapFunc",
    "enqueue_object",
    "enqueue_owner",
]

log = structlog.get_logger("tsgw.kube.controller")

MapFunc = Callable[[RawObject], Iterable[Request]]
"""Maps an object that changed to the requests to reconcile (``EnqueueRequestsFromMapFunc``)."""


def enqueue_object(obj: RawObject) -> Iterable[Request]:
    """The object itself (``EnqueueRequestForObject``)."""
    meta = obj["metadata"]
    return (Request(meta.get("namespace") or "", meta["name"]),)


def enqueue_owner(
    owner_api_version: str, owner_kind: str, *, only_controller: bool = True, namespaced: bool = True
) -> MapFunc:
    """The owner of kind ``owner_kind`` (``EnqueueRequestForOwner``); by default only the
    controller owner, as ``Owns`` does without ``MatchEveryOwner``.

    An owner reference names no namespace: a namespaced owner lives in its dependent's, a
    cluster-scoped one (``namespaced=False``) in none, so its request carries an empty namespace
    as controller-runtime's ``getOwnerReconcileRequest`` does for a cluster-scoped owner kind.
    """
    group = owner_api_version.rpartition("/")[0]

    def owners(obj: RawObject) -> Iterable[Request]:
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or "") if namespaced else ""
        out = []
        for ref in meta.get("ownerReferences") or ():
            if ref.get("kind") != owner_kind or str(ref.get("apiVersion", "")).rpartition("/")[0] != group:
                continue
            if only_controller and not ref.get("controller"):
                continue
            out.append(Request(ns, ref["name"]))
        return out

    return owners


@dataclass(frozen=True)
class ControllerOptions:
    """Options for :class:`Controller`."""

    max_concurrent_reconciles: int = 1
    """Workers reconciling different objects at once. Defaults to 1."""
    rate_limiter: RateLimiter | None = None
    """Retry backoff. Defaults to per-item exponential 5 ms → 1000 s (controller-runtime)."""
    cache_sync_timeout: float = 120.0
    """How long to wait for the watched informers to sync before failing. Defaults to 2 minutes."""
    need_leader_election: bool = True
    """Run only on the elected leader. Defaults to True."""
    reconcile_timeout: float | None = None
    """Cancel a reconcile that runs longer than this (then retried). Defaults to no limit."""


def _is_terminal(exc: BaseException) -> bool:
    """A :class:`TerminalError`, also inside an exception group (anyio task groups wrap what
    their tasks raise), as controller-runtime's ``errors.As`` finds one in a wrapped error."""
    if isinstance(exc, TerminalError):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(TerminalError) is not None


class _Enqueue:
    """The informer handler: predicates, then the map function, then the queue."""

    def __init__(self, queue: WorkQueue[Request], map_func: MapFunc, predicates: Sequence[Predicate]) -> None:
        self.queue = queue
        self.map = map_func
        self.predicates = predicates

    def on_add(self, obj: RawObject, initial: bool) -> None:
        if all(p.create(obj) for p in self.predicates):
            prio = LOW_PRIORITY if initial else 0
            for req in self.map(obj):
                self.queue.add(req, prio)

    def on_update(self, old: RawObject, new: RawObject) -> None:
        if all(p.update(old, new) for p in self.predicates):
            same = (old.get("metadata") or {}).get("resourceVersion") == (new.get("metadata") or {}).get(
                "resourceVersion"
            )
            prio = LOW_PRIORITY if same else 0
            for req in {*self.map(old), *self.map(new)}:
                self.queue.add(req, prio)

    def on_delete(self, obj: RawObject) -> None:
        if all(p.delete(obj) for p in self.predicates):
            for req in self.map(obj):
                self.queue.add(req)


class Controller:
    """Reconciles the requests its watches produce; run :meth:`run` in a task group."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        options: ControllerOptions | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        self.options = options or ControllerOptions()
        self.queue: WorkQueue[Request] = WorkQueue(
            WorkQueueOptions(name=name, rate_limiter=self.options.rate_limiter, clock=clock),
            metrics=QueueMetricsAdapter(name),
        )
        register_queue(name, self.queue)
        self._metrics = ControllerMetrics(name)
        self._informers: list[Informer] = []
        self._started = anyio.Event()
        self.reconciles = 0
        """Reconciles run so far (success or not)."""

    @property
    def need_leader_election(self) -> bool:
        return self.options.need_leader_election

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def watch(
        self, informer: Informer, map_func: MapFunc = enqueue_object, predicates: Sequence[Predicate] = ()
    ) -> None:
        """Turn ``informer``'s events (that pass ``predicates``) into requests via ``map_func``."""
        if informer not in self._informers:
            self._informers.append(informer)
        informer.add_handler(_Enqueue(self.queue, map_func, tuple(predicates)))

    async def run(self) -> None:
        """Wait for the informers to sync, then reconcile until :meth:`shutdown` or cancel."""
        with anyio.move_on_after(self.options.cache_sync_timeout):
            for inf in self._informers:
                await inf.wait_for_sync()
        if not all(inf.has_synced for inf in self._informers):
            raise CacheSyncError(
                f"controller {self.name}: caches not synced in {self.options.cache_sync_timeout} s"
            )
        n = self.options.max_concurrent_reconciles
        self._metrics.max_concurrent(n)
        log.info("starting workers", controller=self.name, workers=n)
        self._started.set()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(self._worker)

    def shutdown(self) -> None:
        """Stop handing out work; each worker returns after its current item."""
        self.queue.shutdown()

    async def _worker(self) -> None:
        while True:
            try:
                req = await self.queue.get()
            except ShutDown:
                return
            self._metrics.active.inc()
            try:
                await self._reconcile_one(req)
            finally:
                self._metrics.active.dec()
                self.queue.done(req)

    async def _reconcile_one(self, req: Request) -> None:
        self.reconciles += 1
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(
            controller=self.name, namespace=req.namespace, name=req.name, reconcileID=uuid.uuid4().hex
        ):
            try:
                timeout = self.options.reconcile_timeout
                result: Result | None = None
                if timeout is None:
                    result = await self.reconciler.reconcile(req)
                else:
                    with anyio.fail_after(timeout):
                        result = await self.reconciler.reconcile(req)
            except Exception as exc:
                if _is_terminal(exc):
                    self.queue.forget(req)
                    self._metrics.error(terminal=True)
                    self._metrics.result("error")
                    log.error("reconcile failed terminally; not retrying", error=str(exc))
                    return
                self.queue.add_rate_limited(req)
                self._metrics.error(terminal=False)
                self._metrics.result("error")
                log.info("reconcile failed; retrying with backoff", error=repr(exc))
                return
            finally:
                self._metrics.time.observe(time.perf_counter() - started)
            if result is not None and result.requeue_after and result.requeue_after > 0:
                self.queue.forget(req)
                self.queue.add_after(req, result.requeue_after)
                self._metrics.result("requeue_after")
            else:
                self.queue.forget(req)
                self._metrics.result("success")
