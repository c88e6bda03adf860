"""The work queue between event handlers and reconcilers, with client-go's invariants.

* **Never processed concurrently**: an item handed out by :meth:`WorkQueue.get` is not handed
  out again until :meth:`WorkQueue.done` is called for it.
* **Re-added while processing → processed again after**: the add is remembered (``dirty``) and
  the item goes back in the queue at ``done``.
* **Deduplicated while waiting**: adding an item already waiting is a no-op (at most it raises
  the item's priority).
* **Delays**: :meth:`add_after` parks an item until its time; a later ``add_after`` with an
  earlier time wins. :meth:`add_rate_limited` asks the rate limiter for the delay (per-item
  exponential backoff by default); :meth:`forget` resets it.
* **Priority** (controller-runtime's priority queue): higher first, FIFO within a priority;
  events from an informer's initial list go in at :data:`LOW_PRIORITY`.

There is no background task: :meth:`get` itself promotes due delayed items and sleeps until the
next one is due or something is added, so the queue needs no task group and works on any anyio
backend. All state changes are synchronous (no ``await`` inside a mutation).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import anyio

from tsgw.kube._clock import Clock, RealClock
from tsgw.kube._errors import ShutDown
from tsgw.kube._ratelimit import RateLimiter, default_controller_rate_limiter

__all__ = ["LOW_PRIORITY", "QueueMetrics", "WorkQueue", "WorkQueueOptions"]

T = TypeVar("T", bound=Hashable)

LOW_PRIORITY = -100
"""Priority of events from an initial list or a resync (controller-runtime ``handler.LowPriority``)."""


class QueueMetrics(Protocol):
    """What the queue reports; the manager's Prometheus metrics implement it."""

    def add(self) -> None: ...
    def depth(self, value: int) -> None: ...
    def retry(self) -> None: ...
    def queue_latency(self, seconds: float) -> None: ...
    def work_duration(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class WorkQueueOptions:
    """Options for :class:`WorkQueue`."""

    name: str = "queue"
    """Name used in metrics and logs. Defaults to ``"queue"``."""
    rate_limiter: RateLimiter | None = None
    """Backoff for :meth:`WorkQueue.add_rate_limited`. Defaults to per-item exponential 5 ms → 1000 s."""
    clock: Clock | None = field(default=None, compare=False)
    """Time source. Defaults to the event loop's clock."""


class WorkQueue(Generic[T]):
    """A deduplicating, delaying, rate-limited priority work queue (see the module docstring)."""

    def __init__(
        self,
        options: WorkQueueOptions | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        opts = options or WorkQueueOptions()
        self.name = opts.name
        self._clock: Clock = opts.clock or RealClock()
        self._limiter: RateLimiter = opts.rate_limiter or default_controller_rate_limiter()
        self._metrics = metrics
        self._seq = itertools.count()
        # Ready items: heap of (-priority, seq, item); ``_ready_entry`` holds the live entry's seq
        # so a priority raise can push a new entry and leave the old one stale.
        self._heap: list[tuple[int, int, T]] = []
        self._ready_entry: dict[T, tuple[int, int]] = {}
        self._dirty: dict[T, int] = {}  # item -> priority it waits with
        self._processing: dict[T, float] = {}  # item -> when work started
        self._added_at: dict[T, float] = {}
        # Delayed items: heap of (ready_at, seq, item); ``_waiting`` holds the live ready_at.
        self._delayed: list[tuple[float, int, T, int]] = []
        self._waiting: dict[T, tuple[float, int]] = {}
        self._shutting_down = False
        self._drain = False
        self._wakeup = anyio.Event()
        self._idle = anyio.Event()

    # -- adding ------------------------------------------------------------------------------

    def add(self, item: T, priority: int = 0) -> None:
        """Queue ``item`` unless it already waits (then only raise its priority)."""
        if self._shutting_down:
            return
        if item in self._dirty:
            if priority > self._dirty[item]:
                self._dirty[item] = priority
                if item in self._ready_entry:
                    self._push_ready(item, priority)
            return
        if self._metrics:
            self._metrics.add()
        self._dirty[item] = priority
        self._added_at.setdefault(item, self._clock.now())
        if item in self._processing:
            return
        self._push_ready(item, priority)
        self._notify()

    def add_after(self, item: T, delay: float, priority: int = 0) -> None:
        """Add ``item`` once ``delay`` seconds have passed; an earlier pending time wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item, priority)
            return
        if self._metrics:
            self._metrics.retry()
        ready_at = self._clock.now() + delay
        current = self._waiting.get(item)
        if current is not None and current[0] <= ready_at:
            if priority > current[1]:
                self._waiting[item] = (current[0], priority)
            return
        self._waiting[item] = (ready_at, priority)
        heapq.heappush(self._delayed, (ready_at, next(self._seq), item, priority))
        self._notify()

    def add_rate_limited(self, item: T, priority: int = 0) -> None:
        """Add ``item`` after the rate limiter's delay for it (one more failure recorded)."""
        self.add_after(item, self._limiter.when(item), priority)

    def forget(self, item: T) -> None:
        """Reset ``item``'s backoff: it succeeded."""
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)

    # -- taking ------------------------------------------------------------------------------

    async def get(self) -> T:
        """The next ready item, waiting as long as needed; raises :class:`ShutDown` at the end."""
        while True:
            self._promote_due()
            item = self._pop_ready()
            if item is not None:
                now = self._clock.now()
                self._processing[item] = now
                self._dirty.pop(item, None)
                added = self._added_at.pop(item, None)
                if self._metrics:
                    self._metrics.depth(len(self._ready_entry))
                    if added is not None:
                        self._metrics.queue_latency(now - added)
                return item
            if self._shutting_down and (not self._drain or not self._processing):
                raise ShutDown(f"work queue {self.name} is shut down")
            deadline = self._delayed[0][0] if self._delayed else None
            await self._clock.wait(self._wakeup, deadline)

    def done(self, item: T) -> None:
        """Mark ``item`` processed; if it was added meanwhile, queue it again."""
        started = self._processing.pop(item, None)
        if started is not None and self._metrics:
            self._metrics.work_duration(self._clock.now() - started)
        if item in self._dirty and not self._shutting_down:
            self._push_ready(item, self._dirty[item])
            self._notify()
        elif item in self._dirty:
            self._dirty.pop(item, None)
        if not self._processing:
            self._idle.set()
            self._notify()

    # -- lifecycle and introspection ---------------------------------------------------------

    def shutdown(self) -> None:
        """Refuse new items and wake every waiting :meth:`get` with :class:`ShutDown`."""
        self._shutting_down = True
        self._delayed.clear()
        self._waiting.clear()
        self._heap.clear()
        self._ready_entry.clear()
        self._notify()

    async def shutdown_with_drain(self) -> None:
        """Refuse new items, let in-flight ones finish, then shut down."""
        self._shutting_down = True
        self._drain = True
        while self._processing:
            self._idle = anyio.Event()
            await self._idle.wait()
        self.shutdown()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        """Items ready to be handed out (not the delayed nor the in-flight ones)."""
        return len(self._ready_entry)

    @property
    def delayed(self) -> int:
        return len(self._waiting)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def oldest_processing_start(self) -> float | None:
        return min(self._processing.values(), default=None)

    def processing_starts(self) -> list[float]:
        return list(self._processing.values())

    # -- internals ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = anyio.Event()

    def _push_ready(self, item: T, priority: int) -> None:
        seq = next(self._seq)
        self._ready_entry[item] = (priority, seq)
        heapq.heappush(self._heap, (-priority, seq, item))
        if self._metrics:
            self._metrics.depth(len(self._ready_entry))

    def _pop_ready(self) -> T | None:
        while self._heap:
            _, seq, item = heapq.heappop(self._heap)
            entry = self._ready_entry.get(item)
            if entry is None or entry[1] != seq:
                continue  # stale: superseded by a priority raise
            del self._ready_entry[item]
            return item
        return None

    def _promote_due(self) -> None:
        now = self._clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            ready_at, _, item, _ = heapq.heappop(self._delayed)
            live = self._waiting.get(item)
            if live is None or live[0] != ready_at:
                continue  # superseded by an earlier add_after
            del self._waiting[item]
            self.add(item, live[1])
