"""The manager: shared informers, runnables, leader election, probes and metrics in one task group.

Start order (controller-runtime ``pkg/manager``): the probe/metrics server; the informers,
**waiting for them to sync**; the always-on runnables; then the leader election campaign, and on
winning it the leader-only runnables (controllers by default). Standbys keep warm caches, so a
takeover starts reconciling at once. An informer, controller or runnable added while the manager
runs is started at once in its group (a leader-only one once leading), as controller-runtime's
runnable groups do.

Shutdown (:meth:`Manager.stop`), in controller-runtime's order (``engageStopProcedure``), all
within one ``graceful_shutdown_timeout``: stop the always-on runnables and wait for them, then the
leader-only ones. "Stop" is a runnable's ``shutdown()`` when it has one (a controller stops
handing out work and its workers finish their current reconcile) and cancellation otherwise.
When the grace period ends, whatever still runs is cancelled and waited for; only then are the
pending Events written (the recorder stops last, so a final reconcile's Events are kept) and
the Lease released (with ``release_on_cancel``): no successor can start while our work still
runs. Caches and the probe server stop last. Losing the Lease is different: nothing graceful
happens, leader-only work is cancelled at once and :meth:`Manager.run` raises
:class:`LeaderElectionLost` so the process exits; acting on after the lease is gone would let two
leaders act at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import prometheus_client
import structlog
from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry

from tsgw._address import parse_address
from tsgw.kube._client import Client
from tsgw.kube._clock import Clock, RealClock
from tsgw.kube._controller import Controller
from tsgw.kube._errors import CacheSyncError, LeaderElectionLost
from tsgw.kube._events import EventRecorder, EventRecorderOptions
from tsgw.kube._healthz import Checker, HealthServer
from tsgw.kube._informer import Informer, InformerOptions
from tsgw.kube._leaderelection import LeaderElectionOptions, LeaderElector
from tsgw.kube._metrics import register_client
from tsgw.kube._resources import Resource

__all__ = ["Manager", "ManagerOptions", "Runnable"]

log = structlog.get_logger("tsgw.kube.manager")


class Runnable(Protocol):
    """Anything with an async ``run()`` that works until cancelled (controllers, recorders)."""

    async def run(self) -> None: ...


RunFunc = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ManagerOptions:
    """Options for :class:`Manager`."""

    leader_election: LeaderElectionOptions | None = None
    """Lease settings; ``None`` (the default) runs leader-only runnables without an election."""
    health_probe_bind_address: str | None = None
    """``host:port`` serving ``/healthz``, ``/readyz`` and, unless ``metrics_bind_address`` is
    set, ``/metrics``; ``:port`` binds every interface (the kubelet probes the pod's address), as
    controller-runtime reads it; port 0 picks one. Defaults to ``None`` (no server)."""
    metrics_bind_address: str | None = None
    """``host:port`` (or ``:port``, every interface) serving only ``/metrics``, apart from the
    probes, as controller-runtime's metrics server (which scaffolds put on :8080, probes on
    :8081); port 0 picks one. Defaults to ``None`` (metrics on the probe listener, if any)."""
    registry: CollectorRegistry = prometheus_client.REGISTRY
    """What the metrics endpoint serves. Defaults to ``prometheus_client.REGISTRY``, the process's
    default registry, where ``tsgw.kube`` registers its series beside every other library's (the
    xDS server's ``tsgw_xds_*``) and the process collector: one ``/metrics`` for the process."""
    graceful_shutdown_timeout: float = 30.0
    """How long :meth:`Manager.stop` lets runnables end by themselves (in-flight reconciles
    finish) before cancelling them. Defaults to 30 s."""
    event_flush_timeout: float = 5.0
    """How long a stopping manager spends writing pending Events. Defaults to 5 s."""
    sync_period: float | None = 36_000.0
    """controller-runtime's ``SyncPeriod``: every informer this manager creates re-delivers each
    cached object as an update this often (+0-10% jitter), unless its options set their own
    ``resync_period``. ``None`` disables it. Defaults to 10 h."""
    cache_sync_timeout: float = 120.0
    """How long to wait for informers to sync before failing. Defaults to 2 minutes."""
    on_started_leading: Callable[[], None] | None = None
    """Called when this manager wins the Lease. Defaults to nothing."""
    on_stopped_leading: Callable[[], None] | None = None
    """Called when this manager stops leading (lost or stopped). Defaults to nothing."""


class _Slot:
    """One runnable in its own cancel scope, so it can be stopped alone and waited for."""

    def __init__(self, runnable: Runnable | RunFunc) -> None:
        self.runnable = runnable
        self.fn: RunFunc = runnable.run if hasattr(runnable, "run") else runnable
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()

    async def run(self) -> None:
        try:
            with self.scope:
                await self.fn()
        finally:
            self.done.set()

    def stop(self) -> None:
        """A graceful stop: ``shutdown()`` when the runnable has one, cancellation otherwise."""
        shutdown = getattr(self.runnable, "shutdown", None)
        if callable(shutdown):
            shutdown()
        else:
            self.scope.cancel()


class _Group:
    """Runnables that start together (controller-runtime's runnable group); late additions
    start at once while the group runs."""

    def __init__(self) -> None:
        self.slots: list[_Slot] = []
        self._tg: TaskGroup | None = None
        self.stopping = False

    def add(self, slot: _Slot) -> None:
        self.slots.append(slot)
        if self._tg is not None and not self.stopping:
            self._tg.start_soon(slot.run)

    def start(self, tg: TaskGroup) -> None:
        self._tg = tg
        for slot in self.slots:
            tg.start_soon(slot.run)

    def started(self) -> bool:
        return self._tg is not None

    def stop(self) -> None:
        self.stopping = True
        for slot in self.slots:
            slot.stop()

    def cancel(self) -> None:
        self.stopping = True
        for slot in self.slots:
            slot.scope.cancel()

    async def wait(self) -> None:
        for slot in list(self.slots):
            if self._tg is not None:
                await slot.done.wait()


class Manager:
    """Owns the informers and runs everything; ``await manager.run()`` inside a task group."""

    def __init__(
        self, client: Client, options: ManagerOptions | None = None, *, clock: Clock | None = None
    ) -> None:
        self.client = client
        self.options = options or ManagerOptions()
        self.clock = clock or RealClock()
        self._informers: dict[tuple[Any, ...], Informer] = {}
        self._informer_tg: TaskGroup | None = None
        self._always = _Group()
        self._leader = _Group()
        self._controllers: list[Controller] = []
        self._recorder: EventRecorder | None = None
        self._recorder_slot: _Slot | None = None
        self._main_tg: TaskGroup | None = None
        self.elector: LeaderElector | None = None
        if self.options.leader_election is not None:
            self.elector = LeaderElector(client, self.options.leader_election, self.clock)
        self.elected = anyio.Event()
        """Set once leader-only runnables may run (at once without leader election)."""
        self._stop = anyio.Event()
        self._leader_stop = anyio.Event()
        self._leader_done = anyio.Event()
        self.health: HealthServer | None = None
        self.metrics: HealthServer | None = None
        separate = self.options.metrics_bind_address is not None
        if self.options.health_probe_bind_address is not None:
            host, port = parse_address(
                self.options.health_probe_bind_address, what="health probe address", empty_host="0.0.0.0"
            )
            self.health = HealthServer(host, port, metrics=not separate, registry=self.options.registry)
            self.health.readyz["informers"] = self._informers_synced
        if self.options.metrics_bind_address is not None:
            host, port = parse_address(
                self.options.metrics_bind_address, what="metrics address", empty_host="0.0.0.0"
            )
            self.metrics = HealthServer(host, port, probes=False, registry=self.options.registry)
        register_client(client)

    # -- wiring ------------------------------------------------------------------------------

    def informer(self, resource: Resource, options: InformerOptions | None = None) -> Informer:
        """The shared informer for ``resource`` with this selection (namespace, label and field
        selectors): one per distinct selection, started at once if the manager runs.

        A second request for the same selection gets the same informer: its indexers are added
        (the same name with another function is refused), its ``resync_period`` lowers the
        informer's if shorter (client-go resyncs each handler at its own period; here the
        informer resyncs at the shortest asked for); any other difference (``transform``,
        ``watch_list``, timeouts) raises ``ValueError`` rather than silently serving other data.
        """
        opts = options or InformerOptions()
        if opts.resync_period is None and self.options.sync_period:
            opts = dataclasses.replace(opts, resync_period=self.options.sync_period)
        key = (resource, opts.namespace, opts.label_selector, opts.field_selector)
        existing = self._informers.get(key)
        if existing is not None:
            existing.merge_options(opts)
            return existing
        inf = Informer(self.client, resource, opts)
        self._informers[key] = inf
        if self._informer_tg is not None:
            self._informer_tg.start_soon(inf.run)
        return inf

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def add(self, runnable: Runnable | RunFunc, *, need_leader_election: bool = True) -> None:
        """Run ``runnable`` (always, or only while leading); started at once if its group runs."""
        (self._leader if need_leader_election else self._always).add(_Slot(runnable))

    def add_controller(self, controller: Controller) -> None:
        self._controllers.append(controller)
        self.add(controller, need_leader_election=controller.need_leader_election)

    def event_recorder(self, options: EventRecorderOptions | None = None) -> EventRecorder:
        """The manager's Events recorder (created on first use; runs always, stops last)."""
        if self._recorder is None:
            self._recorder = EventRecorder(self.client, options, self.clock)
            self._recorder_slot = _Slot(self._recorder)
            if self._main_tg is not None:
                self._main_tg.start_soon(self._recorder_slot.run)
        return self._recorder

    def add_healthz_check(self, name: str, check: Checker) -> None:
        if self.health is not None:
            self.health.healthz[name] = check

    def add_readyz_check(self, name: str, check: Checker) -> None:
        if self.health is not None:
            self.health.readyz[name] = check

    def _informers_synced(self) -> bool:
        return all(i.has_synced for i in self._informers.values())

    # -- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful shutdown; :meth:`run` returns when it is done."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop` (returns) or the Lease is lost (raises LeaderElectionLost)."""
        try:
            async with anyio.create_task_group() as tg:
                self._main_tg = tg
                if self.health is not None:
                    port = await tg.start(self.health.serve)
                    log.info("serving probes", port=port, metrics=self.health.metrics)
                if self.metrics is not None:
                    port = await tg.start(self.metrics.serve)
                    log.info("serving metrics", port=port)
                if self._recorder_slot is not None:
                    tg.start_soon(self._recorder_slot.run)
                self._informer_tg = tg
                for inf in self._informers.values():
                    tg.start_soon(inf.run)
                with anyio.move_on_after(self.options.cache_sync_timeout):
                    for inf in list(self._informers.values()):
                        await inf.wait_for_sync()
                if not self._informers_synced():
                    raise CacheSyncError(f"informers not synced after {self.options.cache_sync_timeout} s")
                self._always.start(tg)
                tg.start_soon(self._lead)
                await self._stop.wait()
                await self._shutdown()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            lost = group.subgroup(LeaderElectionLost)
            if lost is not None:
                raise LeaderElectionLost(str(lost.exceptions[0])) from group
            raise
        finally:
            self._main_tg = self._informer_tg = None

    async def _shutdown(self) -> None:
        with anyio.move_on_after(self.options.graceful_shutdown_timeout) as grace:
            self._always.stop()
            await self._always.wait()
            self._leader.stop()
            self._leader_stop.set()
            if self.elected.is_set():
                await self._leader_done.wait()
        if grace.cancelled_caught:
            log.warning(
                "runnables did not stop within the graceful shutdown timeout; cancelling them",
                timeout=self.options.graceful_shutdown_timeout,
            )
        # Whatever is still running is cancelled, and waited for, before the Lease goes.
        self._always.cancel()
        self._leader.cancel()
        self._leader_stop.set()
        await self._always.wait()
        if self.elected.is_set():
            await self._leader_done.wait()
        slot = self._recorder_slot
        if slot is not None:
            slot.stop()  # a last flush, then the recorder's run() returns
            with anyio.move_on_after(self.options.event_flush_timeout):
                await slot.done.wait()
            slot.scope.cancel()
        if self.elector is not None and self.elector.options.release_on_cancel:
            await self.elector.release()

    async def _run_leader_group(self) -> None:
        """The leader-only runnables, open for late additions until the shutdown stops them."""
        async with anyio.create_task_group() as tg:
            self._leader.start(tg)
            await self._leader_stop.wait()

    async def _lead(self) -> None:
        if self.elector is None:
            self.elected.set()
            try:
                await self._run_leader_group()
            finally:
                self._leader_done.set()
            return
        await self.elector.acquire()
        self.elected.set()
        if self.options.on_started_leading:
            self.options.on_started_leading()
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self.elector.hold)
                if not self._leader.stopping:
                    await self._run_leader_group()
                outer.cancel_scope.cancel()
        finally:
            if self.options.on_stopped_leading:
                self.options.on_stopped_leading()
            self._leader_done.set()
