"""A Kubernetes Events recorder (``events.k8s.io/v1``) that aggregates repeats.

:meth:`EventRecorder.event` never blocks and never fails the caller: it notes the event and the
recorder's :meth:`run` loop writes it. The same (object, type, reason, action, note) seen again
within ``series_window`` does not create a new Event: the existing one gets its ``series.count``
and ``series.lastObservedTime`` bumped, in one write per flush however many repeats arrived, so
a hot error loop cannot flood the API server with Events.

The correlation map is bounded: at most ``max_entries`` (4,096, client-go's
``maxLruCacheEntries``) recently seen events, the least recently seen evicted first. An evicted
event that was not written yet is still written; a later repeat of it starts a new Event.
"""

from __future__ import annotations

import datetime
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import anyio
import structlog

from tsgw.kube._client import Client
from tsgw.kube._clock import Clock, RealClock
from tsgw.kube._errors import KubeError, NotFound
from tsgw.kube._resources import EVENTS, RawObject

__all__ = ["EventRecorder", "EventRecorderOptions"]

log = structlog.get_logger("tsgw.kube.events")


def _micro(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class EventRecorderOptions:
    """Options for :class:`EventRecorder`."""

    controller: str = "tsgw"
    """``reportingController`` of every Event. Defaults to ``"tsgw"``."""
    instance: str = field(default_factory=lambda: f"tsgw-{uuid.uuid4().hex[:8]}")
    """``reportingInstance`` (the pod). Defaults to ``tsgw-<random>``."""
    flush_interval: float = 0.5
    """How often pending events are written; repeats within it collapse. Defaults to 0.5 s."""
    series_window: float = 600.0
    """Repeats within this many seconds join the same Event's series. Defaults to 10 minutes."""
    max_entries: int = 4096
    """Events remembered for correlation, least recently seen evicted first (client-go's LRU
    size). Defaults to 4096."""


@dataclass
class _Entry:
    regarding: dict[str, str]
    namespace: str
    type: str
    reason: str
    action: str
    note: str
    first: float
    last: float
    count: int = 1
    name: str | None = None
    written_count: int = 0


class EventRecorder:
    """Records Events about objects; run :meth:`run` in the manager's task group."""

    def __init__(
        self, client: Client, options: EventRecorderOptions | None = None, clock: Clock | None = None
    ) -> None:
        self.client = client
        self.options = options or EventRecorderOptions()
        self.clock = clock or RealClock()
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._pending: dict[int, _Entry] = {}
        """Entries to write, by identity: an evicted entry and its successor are both written."""
        self._wakeup = anyio.Event()
        self._closing = False
        self._nap = anyio.CancelScope()

    def event(self, obj: RawObject, type_: str, reason: str, note: str, action: str = "Reconcile") -> None:
        """Record that ``reason`` happened to ``obj`` (``type_`` is Normal or Warning)."""
        meta = obj.get("metadata") or {}
        regarding = {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        key = (
            regarding["uid"] or regarding["name"],
            regarding["namespace"],
            type_,
            reason,
            action,
            note[:1024],
        )
        now = self.clock.wall()
        entry = self._entries.get(key)
        if entry is not None and now - entry.last < self.options.series_window:
            entry.count += 1
            entry.last = now
            self._entries.move_to_end(key)
        else:
            entry = _Entry(
                regarding, regarding["namespace"] or "default", type_, reason, action, note[:1024], now, now
            )
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.options.max_entries:
                self._entries.popitem(last=False)
        self._pending[id(entry)] = entry
        self._wakeup.set()

    async def run(self) -> None:
        """Write pending Events until cancelled, or until :meth:`shutdown` (after a last flush)."""
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            await self.flush()
            if self._closing:
                return
            self._nap = anyio.CancelScope()
            with self._nap:
                await self.clock.sleep(self.options.flush_interval)

    def shutdown(self) -> None:
        """Make :meth:`run` write what is pending now, then return (the manager stops it last)."""
        self._closing = True
        self._nap.cancel()
        self._wakeup.set()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.count == entry.written_count:
                continue
            try:
                await self._write(entry)
            except KubeError as exc:
                log.info("could not write an event", reason=entry.reason, error=str(exc))

    async def _write(self, e: _Entry) -> None:
        # Snapshot the count: repeats that arrive while the request is in flight must still be
        # written by the next flush.
        count, last = e.count, e.last
        if e.name is not None and count > 1:
            patch = {"series": {"count": count, "lastObservedTime": _micro(last)}}
            try:
                await self.client.patch(EVENTS, e.name, patch, namespace=e.namespace)
                e.written_count = count
                return
            except NotFound:
                e.name = None  # expired (events have a TTL): start a new one
        name = f"{e.regarding['name']}.{uuid.uuid4().hex[:16]}"
        body: RawObject = {
            "apiVersion": EVENTS.api_version,
            "kind": EVENTS.kind,
            "metadata": {"name": name, "namespace": e.namespace},
            "eventTime": _micro(e.first),
            "reportingController": self.options.controller,
            "reportingInstance": self.options.instance,
            "action": e.action,
            "reason": e.reason,
            "note": e.note,
            "type": e.type,
            "regarding": {k: v for k, v in e.regarding.items() if v},
        }
        if count > 1:
            body["series"] = {"count": count, "lastObservedTime": _micro(last)}
        await self.client.create(EVENTS, body)
        e.name = name
        e.written_count = count
