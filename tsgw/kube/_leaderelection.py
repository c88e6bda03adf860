"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go ``tools/leaderelection``.

* :meth:`LeaderElector.acquire`: every ``retry_period`` (jitter 1.2) try to acquire until it works.
* :meth:`LeaderElector.hold`: renew every ``retry_period``; if no renewal succeeds within
  ``renew_deadline`` raise :class:`LeaderElectionLost` (the caller must stop acting at once).
* ``try_acquire_or_renew``: fast path (leader with a valid lease: update without a GET), else GET
  (create when absent), note when the record last *changed* on the **local** clock, refuse while
  another holder's lease is still valid by that local observation, else update with the observed
  resourceVersion (optimistic concurrency: two contenders cannot both win).

Validity is ``observed_time + leaseDurationSeconds > now`` on our own monotonic clock; the
``renewTime`` written by another node is never compared with our clock, so skew does not matter.
"""

from __future__ import annotations

import datetime
import random
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from tsgw.kube._client import Client
from tsgw.kube._clock import Clock, RealClock
from tsgw.kube._errors import APIError, Conflict, KubeError, LeaderElectionLost, NotFound
from tsgw.kube._metrics import LEADER_SLOWPATH, LEADER_STATUS
from tsgw.kube._resources import LEASES, RawObject

__all__ = ["LeaderElectionOptions", "LeaderElector", "default_identity"]

log = structlog.get_logger("tsgw.kube.leaderelection")

JITTER = 1.2


def default_identity() -> str:
    """``hostname_uuid``, as controller-runtime."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _micro_time(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaderElectionOptions:
    """Options for :class:`LeaderElector` (defaults are controller-runtime's)."""

    name: str
    """The Lease name (``LeaderElectionID``); required."""
    namespace: str = "default"
    """The Lease namespace. Defaults to ``"default"``."""
    identity: str = field(default_factory=default_identity)
    """This contender's identity. Defaults to ``hostname_uuid``."""
    lease_duration: float = 15.0
    """How long a non-leader waits after the last observed change before taking over. Defaults to 15 s."""
    renew_deadline: float = 10.0
    """How long the leader keeps retrying a renewal before giving up. Defaults to 10 s."""
    retry_period: float = 2.0
    """Interval between tries. Defaults to 2 s."""
    release_on_cancel: bool = False
    """Clear the holder when stepping down cleanly. Defaults to False."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("leader election needs a Lease name")
        if not (self.lease_duration > self.renew_deadline > JITTER * self.retry_period > 0):
            raise ValueError("need lease_duration > renew_deadline > 1.2 × retry_period > 0")


class LeaderElector:
    """One contender for one Lease."""

    def __init__(self, client: Client, options: LeaderElectionOptions, clock: Clock | None = None) -> None:
        self.client = client
        self.options = options
        self.clock = clock or RealClock()
        self._observed_spec: dict[str, Any] | None = None
        self._observed_rv = ""
        self._observed_time = 0.0
        self._leading = False
        self._log = log.bind(lease=f"{options.namespace}/{options.name}", identity=options.identity)
        LEADER_STATUS.labels(options.name).set(0)

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def acquire(self) -> None:
        """Return once this contender holds the Lease."""
        while True:
            if await self._try():
                self._set_leading(True)
                self._log.info("acquired the lease")
                return
            await self.clock.sleep(self.options.retry_period * (1 + random.random() * (JITTER - 1)))

    async def hold(self) -> None:
        """Keep renewing; raises :class:`LeaderElectionLost` when a renewal deadline passes."""
        opts = self.options
        while True:
            await self.clock.sleep(opts.retry_period)
            deadline = self.clock.now() + opts.renew_deadline
            renewed = False
            while self.clock.now() < deadline:
                with anyio.move_on_after(max(0.0, deadline - self.clock.now())):
                    renewed = await self._try()
                if renewed:
                    break
                await self.clock.sleep(min(opts.retry_period, max(0.0, deadline - self.clock.now())))
            if not renewed:
                self._set_leading(False)
                self._log.warning("failed to renew the lease; stepping down")
                raise LeaderElectionLost(
                    f"lease {opts.namespace}/{opts.name} not renewed within {opts.renew_deadline} s"
                )

    async def release(self) -> None:
        """Give the Lease up (only if we hold it), so a successor need not wait for expiry."""
        if not self._leading or self._observed_spec is None:
            return
        spec = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "leaseTransitions": self._observed_spec.get("leaseTransitions", 0),
        }
        try:
            await self._update(spec)
        except KubeError as exc:
            self._log.info("could not release the lease", error=str(exc))
        self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        LEADER_STATUS.labels(self.options.name).set(1 if leading else 0)

    def _record(self, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.options.identity,
            "leaseDurationSeconds": max(1, round(self.options.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": _micro_time(self.clock.wall()),
            "leaseTransitions": transitions,
        }

    def _lease_valid(self) -> bool:
        spec = self._observed_spec or {}
        duration = float(spec.get("leaseDurationSeconds") or 0)
        return self._observed_time + duration > self.clock.now()

    async def _update(self, spec: dict[str, Any]) -> RawObject:
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {
                "name": self.options.name,
                "namespace": self.options.namespace,
                "resourceVersion": self._observed_rv,
            },
            "spec": spec,
        }
        obj = await self.client.replace(LEASES, body)
        self._observe(obj)
        return obj

    def _observe(self, obj: RawObject) -> None:
        spec = obj.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_time = self.clock.now()
        self._observed_rv = obj["metadata"]["resourceVersion"]

    async def _try(self) -> bool:
        opts = self.options
        now = _micro_time(self.clock.wall())
        # 1. fast path: the record we last saw names us and is still valid → update without a GET.
        #    (Judged on the observed record, as client-go's IsLeader: once we have seen another
        #    holder we must not overwrite it with its own resourceVersion.)
        observed_holder = (self._observed_spec or {}).get("holderIdentity")
        if self._leading and observed_holder == opts.identity and self._lease_valid():
            old = self._observed_spec or {}
            try:
                await self._update(
                    self._record(old.get("acquireTime") or now, int(old.get("leaseTransitions") or 0))
                )
                return True
            except APIError as exc:
                LEADER_SLOWPATH.labels(opts.name).inc()
                self._log.info("fast-path renewal failed; taking the slow path", error=str(exc))
            except KubeError:
                return False
        # 2. GET, or CREATE when absent.
        try:
            lease = await self.client.get(LEASES, opts.name, opts.namespace)
        except NotFound:
            body = {
                "apiVersion": LEASES.api_version,
                "kind": LEASES.kind,
                "metadata": {"name": opts.name, "namespace": opts.namespace},
                "spec": self._record(now, 0),
            }
            try:
                self._observe(await self.client.create(LEASES, body))
            except KubeError:
                return False
            return True
        except KubeError as exc:
            self._log.info("could not read the lease", error=str(exc))
            return False
        # 3. note when the record last changed (local clock).
        self._observe(lease)
        spec = self._observed_spec or {}
        holder = spec.get("holderIdentity") or ""
        # 4. someone else holds a lease still valid by our observation.
        if holder and holder != opts.identity and self._lease_valid():
            return False
        # 5. take or renew with optimistic concurrency.
        if holder == opts.identity:
            record = self._record(spec.get("acquireTime") or now, int(spec.get("leaseTransitions") or 0))
        else:
            record = self._record(now, int(spec.get("leaseTransitions") or 0) + 1)
        try:
            await self._update(record)
        except Conflict:
            return False
        except KubeError as exc:
            self._log.info("could not update the lease", error=str(exc))
            return False
        return True
