"""The manager: shared informers, runnables, leader election, probes and metrics in one task group.

Start order (controller-runtime ``pkg/manager``): the probe/metrics server; the informers,
**waiting for them to sync**; the always-on runnables; then the leader election campaign, and on
winning it the leader-only runnables (controllers by default). Standbys keep warm caches, so a
takeover starts reconciling at once.

Shutdown: :meth:`Manager.stop` stops the controllers' queues, lets in-flight reconciles finish
(up to ``graceful_shutdown_timeout``), optionally releases the Lease, then cancels the rest.
Losing the Lease is different: nothing graceful happens, leader-only work is cancelled at once
and :meth:`Manager.run` raises :class:`LeaderElectionLost` so the process exits; acting on after
the lease is gone would let two leaders act at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import prometheus_client
import structlog
from prometheus_client import CollectorRegistry

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
    set, ``/metrics``; port 0 picks one. Defaults to ``None`` (no server)."""
    metrics_bind_address: str | None = None
    """``host:port`` serving only ``/metrics``, apart from the probes, as controller-runtime's
    metrics server (which scaffolds put on :8080, probes on :8081); port 0 picks one. Defaults to
    ``None`` (metrics on the probe listener, if any)."""
    registry: CollectorRegistry = prometheus_client.REGISTRY
    """What the metrics endpoint serves. Defaults to ``prometheus_client.REGISTRY``, the process's
    default registry, where ``tsgw.kube`` registers its series beside every other library's (the
    xDS server's ``tsgw_xds_*``) and the process collector: one ``/metrics`` for the process."""
    graceful_shutdown_timeout: float = 30.0
    """How long :meth:`Manager.stop` waits for in-flight reconciles. Defaults to 30 s."""
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


class Manager:
    """Owns the informers and runs everything; ``await manager.run()`` inside a task group."""

    def __init__(
        self, client: Client, options: ManagerOptions | None = None, *, clock: Clock | None = None
    ) -> None:
        self.client = client
        self.options = options or ManagerOptions()
        self.clock = clock or RealClock()
        self._informers: dict[tuple[Any, ...], Informer] = {}
        self._always: list[RunFunc] = []
        self._leader: list[RunFunc] = []
        self._controllers: list[Controller] = []
        self._recorder: EventRecorder | None = None
        self.elector: LeaderElector | None = None
        if self.options.leader_election is not None:
            self.elector = LeaderElector(client, self.options.leader_election, self.clock)
        self.elected = anyio.Event()
        """Set once leader-only runnables may run (at once without leader election)."""
        self._stop = anyio.Event()
        self._leader_done = anyio.Event()
        self.health: HealthServer | None = None
        self.metrics: HealthServer | None = None
        separate = self.options.metrics_bind_address is not None
        if self.options.health_probe_bind_address is not None:
            host, _, port = self.options.health_probe_bind_address.rpartition(":")
            self.health = HealthServer(
                host or "127.0.0.1", int(port), metrics=not separate, registry=self.options.registry
            )
            self.health.readyz["informers"] = self._informers_synced
        if self.options.metrics_bind_address is not None:
            host, _, port = self.options.metrics_bind_address.rpartition(":")
            self.metrics = HealthServer(
                host or "127.0.0.1", int(port), probes=False, registry=self.options.registry
            )
        register_client(client)

    # -- wiring ------------------------------------------------------------------------------

    def informer(self, resource: Resource, options: InformerOptions | None = None) -> Informer:
        """The shared informer for ``resource`` with these options (one per distinct selection)."""
        opts = options or InformerOptions()
        if opts.resync_period is None and self.options.sync_period:
            opts = dataclasses.replace(opts, resync_period=self.options.sync_period)
        key = (resource, opts.namespace, opts.label_selector, opts.field_selector)
        if key not in self._informers:
            self._informers[key] = Informer(self.client, resource, opts)
        return self._informers[key]

    @property
    def informers(self) -> list[Informer]:
        return list(self._informers.values())

    def add(self, runnable: Runnable | RunFunc, *, need_leader_election: bool = True) -> None:
        fn: RunFunc = runnable.run if hasattr(runnable, "run") else runnable
        (self._leader if need_leader_election else self._always).append(fn)

    def add_controller(self, controller: Controller) -> None:
        self._controllers.append(controller)
        self.add(controller, need_leader_election=controller.need_leader_election)

    def event_recorder(self, options: EventRecorderOptions | None = None) -> EventRecorder:
        """The manager's Events recorder (created, and run always-on, on first use)."""
        if self._recorder is None:
            self._recorder = EventRecorder(self.client, options, self.clock)
            self.add(self._recorder, need_leader_election=False)
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
                if self.health is not None:
                    port = await tg.start(self.health.serve)
                    log.info("serving probes", port=port, metrics=self.health.metrics)
                if self.metrics is not None:
                    port = await tg.start(self.metrics.serve)
                    log.info("serving metrics", port=port)
                for inf in self._informers.values():
                    tg.start_soon(inf.run)
                with anyio.move_on_after(self.options.cache_sync_timeout):
                    for inf in self._informers.values():
                        await inf.wait_for_sync()
                if not self._informers_synced():
                    raise CacheSyncError(f"informers not synced after {self.options.cache_sync_timeout} s")
                for fn in self._always:
                    tg.start_soon(fn)
                tg.start_soon(self._lead)
                await self._stop.wait()
                await self._shutdown()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            lost = group.subgroup(LeaderElectionLost)
            if lost is not None:
                raise LeaderElectionLost(str(lost.exceptions[0])) from group
            raise

    async def _shutdown(self) -> None:
        for c in self._controllers:
            c.shutdown()
        if self.elected.is_set():
            with anyio.move_on_after(self.options.graceful_shutdown_timeout):
                await self._leader_done.wait()
        if self.elector is not None and self.elector.options.release_on_cancel:
            await self.elector.release()

    async def _lead(self) -> None:
        if self.elector is None:
            self.elected.set()
            async with anyio.create_task_group() as tg:
                for fn in self._leader:
                    tg.start_soon(fn)
            self._leader_done.set()
            return
        await self.elector.acquire()
        self.elected.set()
        if self.options.on_started_leading:
            self.options.on_started_leading()
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self.elector.hold)
                async with anyio.create_task_group() as tg:
                    for fn in self._leader:
                        tg.start_soon(fn)
                outer.cancel_scope.cancel()
        finally:
            if self.options.on_stopped_leading:
                self.options.on_stopped_leading()
            self._leader_done.set()
