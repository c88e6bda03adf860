"""Time, behind a seam: the real clock is anyio's; tests drive a :class:`FakeClock` by hand.

Everything in ``tsgw.kube`` that waits (work-queue delays, rate limiters, backoff, leader
election) asks a :class:`Clock`, so a test can step through a 1000 s backoff in microseconds.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio

__all__ = ["Clock", "FakeClock", "RealClock"]


class Clock(Protocol):
    """Monotonic time plus the two ways to wait for it."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (for timestamps written to the API)."""
        ...

    async def wait(self, event: anyio.Event, deadline: float | None) -> bool:
        """Wait until ``event`` is set or ``deadline`` (on :meth:`now`'s scale); True if set."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` on this clock."""
        ...


class RealClock:
    """anyio's event-loop clock."""

    def now(self) -> float:
        return anyio.current_time()

    def wall(self) -> float:
        return time.time()

    async def wait(self, event: anyio.Event, deadline: float | None) -> bool:
        if deadline is None:
            await event.wait()
            return True
        with anyio.CancelScope(deadline=deadline):
            await event.wait()
        return event.is_set()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when :meth:`advance` is called; waits end when it passes them."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._waiters: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return 1_700_000_000.0 + self._now

    @property
    def waiters(self) -> int:
        """How many waits with a deadline are pending (lets a test wait for a task to block)."""
        return sum(1 for _, _, e in self._waiters if not e.is_set())

    async def wait(self, event: anyio.Event, deadline: float | None) -> bool:
        if deadline is not None:
            if deadline <= self._now:
                await anyio.lowlevel.checkpoint()
                return event.is_set()
            wake = anyio.Event()
            heapq.heappush(self._waiters, (deadline, next(self._seq), wake))
            async with anyio.create_task_group() as tg:

                async def relay() -> None:
                    await event.wait()
                    wake.set()

                tg.start_soon(relay)
                await wake.wait()
                tg.cancel_scope.cancel()
            return event.is_set()
        await event.wait()
        return True

    async def sleep(self, seconds: float) -> None:
        await self.wait(anyio.Event(), self._now + seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every wait whose deadline has passed."""
        self._now += seconds
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, wake = heapq.heappop(self._waiters)
            wake.set()
