"""The informer: a reflector that lists then watches, a :class:`Store`, and event handlers.

The reflector follows client-go's ``tools/cache/reflector.go`` (controllers.md §1.1–1.5):

* **Bootstrap**: WatchList (``sendInitialEvents=true``) when the server supports it: objects
  stream into a scratch store until the ``k8s.io/initial-events-end`` bookmark, which swaps in
  atomically and hands over the same stream. A 400/422 (a server with the gate off) switches to
  LIST for good; any other failure falls back to LIST for that attempt only. LIST uses RV
  ``"0"`` first (the watch cache), ``last_sync_rv`` on relists, and ``""`` (a quorum read) when
  that RV expired; pages of ``page_size`` at ``""`` and ``"0"``, and at an RV only once the
  server paginated an RV ``"0"`` list (no watch cache); a continue token that expired mid-list
  means one full list (client-go's pager).
* **Watch** from ``last_sync_rv`` with bookmarks and a server timeout of 5–10 min; a normal
  end, a dropped connection and the idle watchdog all re-watch at once without a relist; 410
  Gone (or a too-large RV) relists; a refused connection or a 429 backs off and re-watches; a
  watch that ends within 1 s with no event counts as a failure.
* **Inactivity watchdog**: bookmarks arrive every ~60 s, so silence for ``idle_timeout`` means
  a dead connection; the watch is re-opened from the last RV.
* **Backoff** 0.8 s → 30 s, reset after 2 minutes of health.
* After every (re)list ``gc.collect()`` then ``gc.freeze()`` move the cache out of the
  collector's sight: a full collection over 10 k cached objects otherwise stalls the loop for
  hundreds of ms. The collector is paused only while the list is transformed and stored, never
  across an await (it is process-wide).
* An unexpected exception (a transform bug, say) is logged and retried after the backoff, as
  client-go's reflector does with every error; it never ends :meth:`Informer.run`.

A re-run of a stopped informer resumes by watching from the last resourceVersion it saw (its
store is kept); if that version was compacted away the 410 makes it relist, and objects that
vanished meanwhile are delivered as deletes.

Handlers are synchronous callbacks, called after the store changed; they must not block (enqueue
work, do not do it). They, like every reader of the store, get the cached object itself, frozen
(read-only; see ``_store``). As client-go's ``Replace``, a relist reports every object: adds for new
ones, updates for every one still there (``old`` and ``new`` share a resourceVersion when it did
not change; controllers queue those at low priority), deletes for objects that vanished, each
a :class:`DeletedFinalStateUnknown` (the last state known; the real delete was missed). With
``resync_period`` every cached object is re-delivered as an update with ``old is new``, as
client-go's resync; controller-runtime's manager does that every 10 h.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog

from tsgw.kube._client import Client, WatchEvent, WatchStream
from tsgw.kube._errors import (
    BadRequest,
    Gone,
    Invalid,
    KubeError,
    ServerTimeout,
    TooManyRequests,
    TransportError,
)
from tsgw.kube._resources import ObjectKey, RawObject, Resource, object_key
from tsgw.kube._store import FrozenDict, IndexFunc, Store, freeze

__all__ = [
    "DeletedFinalStateUnknown",
    "EventHandler",
    "HandlerFuncs",
    "Informer",
    "InformerOptions",
    "strip_managed_fields",
]

log = structlog.get_logger("tsgw.kube.informer")

Transform = Callable[[RawObject], RawObject]


def strip_managed_fields(obj: RawObject) -> RawObject:
    """The default transform: ``managedFields`` are a third of an object and nobody reads them."""
    meta = obj.get("metadata")
    if meta is not None:
        meta.pop("managedFields", None)
    return obj


class DeletedFinalStateUnknown(FrozenDict):
    """The last known state of an object whose deletion was inferred, not seen: it was gone
    from a relist (its delete happened while the watch was down), as client-go's
    ``DeletedFinalStateUnknown``. It reads as that object; ``key`` is its store key."""

    __slots__ = ("key",)

    def __init__(self, key: ObjectKey, obj: RawObject) -> None:
        super().__init__(obj)
        self.key = key


class EventHandler(Protocol):
    """Receives store changes; ``initial`` marks adds from the first list (low priority)."""

    def on_add(self, obj: RawObject, initial: bool) -> None: ...
    def on_update(self, old: RawObject, new: RawObject) -> None: ...
    def on_delete(self, obj: RawObject) -> None: ...


@dataclass
class HandlerFuncs:
    """An :class:`EventHandler` from optional functions."""

    add: Callable[[RawObject, bool], None] | None = None
    update: Callable[[RawObject, RawObject], None] | None = None
    delete: Callable[[RawObject], None] | None = None

    def on_add(self, obj: RawObject, initial: bool) -> None:
        if self.add:
            self.add(obj, initial)

    def on_update(self, old: RawObject, new: RawObject) -> None:
        if self.update:
            self.update(old, new)

    def on_delete(self, obj: RawObject) -> None:
        if self.delete:
            self.delete(obj)


@dataclass(frozen=True)
class InformerOptions:
    """Options for :class:`Informer`."""

    namespace: str | None = None
    """Watch one namespace; ``None`` (the default) watches all."""
    label_selector: str | None = None
    """Only objects matching this label selector. Defaults to all."""
    field_selector: str | None = None
    """Only objects matching this field selector. Defaults to all."""
    transform: Transform | None = strip_managed_fields
    """Applied to every object before it is cached. Defaults to stripping ``managedFields``."""
    indexers: dict[str, IndexFunc] = field(default_factory=dict)
    """Extra indexes by name (``namespace`` and ``owner`` always exist). Defaults to none."""
    watch_list: bool = True
    """Bootstrap with a WatchList stream where the server supports it. Defaults to True."""
    page_size: int = 500
    """LIST page size when reading from etcd (RV ``""``); client-go's 500. Defaults to 500."""
    min_watch_timeout: float = 300.0
    """Server watch timeout is uniform in [min, 2×min) seconds, as client-go. Defaults to 300."""
    idle_timeout: float = 90.0
    """Inactivity watchdog: reconnect after this long with no event or bookmark. Defaults to 90."""
    backoff_initial: float = 0.8
    """First retry delay after a failed list or watch (client-go). Defaults to 0.8 s."""
    backoff_max: float = 30.0
    """Largest retry delay (client-go). Defaults to 30 s."""
    backoff_reset: float = 120.0
    """Healthy seconds after which the backoff starts again from the beginning. Defaults to 120."""
    gc_freeze: bool = True
    """Pause the collector during a (re)list and ``gc.freeze()`` after it. Defaults to True."""
    resync_period: float | None = None
    """Seconds between re-deliveries of every cached object as an update, jittered by up to
    +10%; ``None`` (the default, client-go's for a plain informer) never resyncs. The
    :class:`~tsgw.kube.Manager` fills in its ``sync_period`` (10 h) when this is unset."""


@contextmanager
def _gc_paused(enabled: bool) -> Iterator[None]:
    """Collector off while a list is transformed and indexed; collected and frozen afterwards.

    Only around synchronous work: the collector is process-wide, so pausing it across an await
    (a LIST in flight, a WatchList stream) would pause it for every other task too, for as long
    as the API server takes. The collection before ``gc.freeze()`` keeps garbage cycles made
    meanwhile (tracebacks of failed requests, say) from being frozen, and so kept, for good.
    """
    if not enabled or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


class _Backoff:
    def __init__(self, opts: InformerOptions) -> None:
        self._opts = opts
        self._delay = opts.backoff_initial
        self._last = 0.0

    def next(self) -> float:
        now = time.monotonic()
        if now - self._last > self._opts.backoff_reset:
            self._delay = self._opts.backoff_initial
        self._last = now
        delay = self._delay * (1.0 + random.random())  # jitter 1.0
        self._delay = min(self._delay * 2.0, self._opts.backoff_max)
        return float(min(delay, self._opts.backoff_max * 2))


class _Relist(Exception):
    """Internal: the watch cannot continue from ``last_sync_rv``."""


class Informer:
    """List-then-watch one resource into a :class:`Store`; run :meth:`run` in a task group."""

    def __init__(self, client: Client, resource: Resource, options: InformerOptions | None = None) -> None:
        self.client = client
        self.resource = resource
        self.options = options or InformerOptions()
        self.store = Store(self.options.indexers)
        self.last_sync_resource_version = ""
        self._handlers: list[EventHandler] = []
        self._synced = anyio.Event()
        self._resync_changed = anyio.Event()
        self._watch_list_supported = self.options.watch_list
        self._list_rv_unavailable = False
        self._paginated_result = False
        self._log = log.bind(resource=str(resource), namespace=self.options.namespace)
        self.relists = 0
        """How many times the store was replaced from a list or a WatchList stream."""

    # -- public ------------------------------------------------------------------------------

    def merge_options(self, other: InformerOptions) -> None:
        """Serve a second user asking for this informer with ``other`` options (same selection).

        Its indexers are added (the same name with another function is refused); a shorter
        ``resync_period`` replaces this one (a longer one, or none, keeps it); any other
        difference raises ``ValueError``: two users must never silently share a cache whose
        transform or bootstrap differs from what one of them asked for.
        """
        mine = self.options
        for name, func in other.indexers.items():
            have = mine.indexers.get(name)
            if have is not None and have is not func:
                raise ValueError(f"informer {self.resource}: indexer {name!r} is already another function")
        differ = [
            f.name
            for f in dataclasses.fields(InformerOptions)
            if f.name not in ("indexers", "resync_period") and getattr(mine, f.name) != getattr(other, f.name)
        ]
        if differ:
            raise ValueError(
                f"informer {self.resource} is shared with other options: {', '.join(differ)} differ"
            )
        indexers = {**mine.indexers, **other.indexers}
        for name, func in other.indexers.items():
            if name not in mine.indexers:
                self.store.add_indexer(name, func)
        periods = [p for p in (mine.resync_period, other.resync_period) if p]
        resync = min(periods) if periods else None
        self.options = dataclasses.replace(mine, indexers=indexers, resync_period=resync)
        if resync != mine.resync_period:
            self._resync_changed.set()

    def add_handler(self, handler: EventHandler) -> None:
        """Register a handler; one added after sync gets an add for every cached object first."""
        self._handlers.append(handler)
        if self.has_synced:
            for obj in self.store.list():
                handler.on_add(obj, True)

    @property
    def uses_watch_list(self) -> bool:
        """Whether (re)lists stream with WatchList; False once the server refused it."""
        return self._watch_list_supported

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        """Return once the first list (or WatchList stream) is in the store."""
        await self._synced.wait()

    async def run(self) -> None:
        """List and watch until cancelled; errors are logged and retried with backoff."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._resync_loop)
            await self._reflect()

    async def _resync_loop(self) -> None:
        await self._synced.wait()
        while True:
            self._resync_changed = anyio.Event()
            period = self.options.resync_period
            if not period:
                await self._resync_changed.wait()
                continue
            with anyio.move_on_after(period * (1.0 + 0.1 * random.random())):
                await self._resync_changed.wait()
                continue  # a new period: start counting again
            self.resync()

    def resync(self) -> None:
        """Re-deliver every cached object to the handlers as an update with ``old is new``."""
        objs = self.store.list()
        for obj in objs:
            for h in self._handlers:
                h.on_update(obj, obj)
        self._log.debug("resynced", objects=len(objs))

    async def _reflect(self) -> None:
        backoff = _Backoff(self.options)
        resume = self.has_synced and bool(self.last_sync_resource_version)
        while True:
            try:
                await self._list_and_watch(backoff, resume)
            except _Relist:
                pass
            except KubeError as exc:
                self._log.warning("list/watch failed; retrying", error=str(exc))
            except Exception:
                # Whatever else (a transform or handler bug, a library surprise): as client-go's
                # reflector, log it and list again after the backoff; never end run() with it.
                self._log.exception("list/watch failed unexpectedly; retrying")
            resume = False
            await anyio.sleep(backoff.next())

    # -- reflector ---------------------------------------------------------------------------

    async def _list_and_watch(self, backoff: _Backoff, resume: bool) -> None:
        stream: WatchStream | None = None
        if resume:
            pass  # a re-run: watch from where we were; a 410 brings us back here to list
        elif self._watch_list_supported:
            try:
                stream = await self._watch_list()
            except (Gone, ServerTimeout) as exc:
                if isinstance(exc, Gone) or exc.too_large_resource_version:
                    self._list_rv_unavailable = True
                raise _Relist() from exc
            except (BadRequest, Invalid) as exc:
                # The server refused the parameters (WatchList gate off: 422): LIST from now on.
                self._log.info("WatchList unsupported; using LIST", error=str(exc))
                self._watch_list_supported = False
            except KubeError as exc:
                # Anything else (a refused connection, a 429, a dropped stream) says nothing
                # about the server's features: LIST this time, WatchList again on the next
                # relist, as client-go falls back per attempt.
                self._log.info("WatchList failed; falling back to LIST this time", error=str(exc))
        if stream is None and not resume:
            await self._list()
        await self._watch(stream, backoff)

    def _watch_timeout(self) -> int:
        m = self.options.min_watch_timeout
        return int(random.uniform(m, 2 * m))

    def _transform(self, obj: RawObject) -> RawObject:
        """The transform, then :func:`freeze`: what the store holds and every handler sees."""
        fn = self.options.transform
        return freeze(fn(obj) if fn is not None else obj)

    async def _list(self) -> None:
        if self._list_rv_unavailable:
            rv = ""
        elif not self.last_sync_resource_version:
            rv = "0"
        else:
            rv = self.last_sync_resource_version
        opts = self.options
        try:
            result = await self.client.list(
                self.resource,
                opts.namespace,
                label_selector=opts.label_selector,
                field_selector=opts.field_selector,
                # client-go's pager: pages for "" and "0" (the watch cache ignores the limit);
                # none for an RV (so the watch cache can serve it) unless the server paginated
                # an RV "0" list, i.e. there is no watch cache for this resource.
                limit=opts.page_size if rv in ("", "0") or self._paginated_result else None,
                resource_version=rv,
            )
            if rv == "0" and result.paginated:
                self._paginated_result = True
        except (Gone, ServerTimeout) as exc:
            if isinstance(exc, ServerTimeout) and not exc.too_large_resource_version:
                raise
            self._list_rv_unavailable = True
            result = await self.client.list(
                self.resource,
                opts.namespace,
                label_selector=opts.label_selector,
                field_selector=opts.field_selector,
                limit=opts.page_size,
                resource_version="",
            )
        self._list_rv_unavailable = False
        with _gc_paused(opts.gc_freeze):
            self._replace([self._transform(o) for o in result.items], result.resource_version)

    async def _watch_list(self) -> WatchStream:
        """Bootstrap from a streamed list; returns the stream to keep watching on."""
        opts = self.options
        rv = "" if self._list_rv_unavailable else self.last_sync_resource_version
        stream = self.client.watch(
            self.resource,
            opts.namespace,
            resource_version=rv,
            timeout_seconds=self._watch_timeout(),
            send_initial_events=True,
            label_selector=opts.label_selector,
            field_selector=opts.field_selector,
            idle_timeout=opts.idle_timeout,
        )
        await stream.__aenter__()
        ok = False
        try:
            scratch: dict[ObjectKey, RawObject] = {}
            async for ev in stream:
                obj = ev.object
                if ev.type == "BOOKMARK":
                    annotations = (obj.get("metadata") or {}).get("annotations") or {}
                    if annotations.get("k8s.io/initial-events-end") == "true":
                        self._list_rv_unavailable = False
                        rv_end = obj["metadata"]["resourceVersion"]
                        with _gc_paused(opts.gc_freeze):
                            self._replace(list(scratch.values()), rv_end)
                        ok = True
                        return stream
                elif ev.type == "DELETED":
                    scratch.pop(object_key(obj), None)
                else:
                    obj = self._transform(obj)
                    scratch[object_key(obj)] = obj
            raise TransportError("watch-list stream ended before the initial-events-end bookmark")
        finally:
            if not ok:
                await stream.__aexit__(None, None, None)

    def _replace(self, objs: list[RawObject], rv: str) -> None:
        """Swap the store and tell handlers what changed (adds, updates, deletes)."""
        initial = not self.has_synced
        old = {} if initial else {object_key(o): o for o in self.store.list()}
        self.store.replace(objs)
        self.last_sync_resource_version = rv
        self.relists += 1
        if self._handlers:
            for obj in objs:
                prev = old.pop(object_key(obj), None)
                if prev is None:
                    for h in self._handlers:
                        h.on_add(obj, initial)
                else:
                    for h in self._handlers:
                        h.on_update(prev, obj)
            for key, gone in old.items():
                tombstone = DeletedFinalStateUnknown(key, gone)
                for h in self._handlers:
                    h.on_delete(tombstone)
        self._synced.set()
        self._log.debug("store replaced", objects=len(objs), resource_version=rv)

    async def _watch(self, stream: WatchStream | None, backoff: _Backoff) -> None:
        opts = self.options
        while True:
            if stream is None:
                stream = self.client.watch(
                    self.resource,
                    opts.namespace,
                    resource_version=self.last_sync_resource_version,
                    timeout_seconds=self._watch_timeout(),
                    label_selector=opts.label_selector,
                    field_selector=opts.field_selector,
                    idle_timeout=opts.idle_timeout,
                )
                try:
                    await stream.__aenter__()
                except (TransportError, TooManyRequests) as exc:
                    self._log.info("watch could not start; backing off", error=str(exc))
                    stream = None
                    await anyio.sleep(backoff.next())
                    continue
                except (Gone, ServerTimeout) as exc:
                    raise _Relist() from exc
            started = time.monotonic()
            events = 0
            try:
                async for ev in stream:
                    events += 1
                    self._apply(ev)
            except Gone as exc:
                self._log.info("watch expired; relisting", error=str(exc))
                raise _Relist() from exc
            except ServerTimeout as exc:
                if exc.too_large_resource_version:
                    raise _Relist() from exc
                raise
            except TooManyRequests:
                await anyio.sleep(backoff.next())
            except TransportError as exc:
                # A dead or idle connection ends the watch as a server timeout does: re-watch
                # from the last RV at once (client-go); a 410 then relists. Only a connection
                # that keeps failing within a second, eventless, waits the backoff first.
                self._log.info("watch connection lost; re-watching", error=str(exc))
                if events == 0 and time.monotonic() - started < 1.0:
                    await anyio.sleep(backoff.next())
            else:
                if events == 0 and time.monotonic() - started < 1.0:
                    raise TransportError("very short watch: closed within 1 s without events")
            finally:
                await stream.__aexit__(None, None, None)
                stream = None

    def _apply(self, ev: WatchEvent) -> None:
        obj = ev.object
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if ev.type == "BOOKMARK":
            if rv:
                self.last_sync_resource_version = rv
            return
        obj = self._transform(obj)
        if ev.type == "DELETED":
            self.store.delete(object_key(obj))
            for h in self._handlers:
                h.on_delete(obj)
        else:
            prev = self.store.upsert(obj)
            if prev is None:
                for h in self._handlers:
                    h.on_add(obj, False)
            else:
                for h in self._handlers:
                    h.on_update(prev, obj)
        if rv:
            self.last_sync_resource_version = rv
