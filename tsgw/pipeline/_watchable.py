"""A watchable value: the latest of something, readable at once or awaited.

The role of Envoy Gateway's ``internal/message`` watchable maps (one writer publishes whole
values; readers see the latest and may wait for the next), reduced to one value: a reader that
falls behind skips straight to the newest value, never a backlog. Single event loop; no locks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import anyio

__all__ = ["Watchable"]

T = TypeVar("T")


class Watchable(Generic[T]):
    """The latest value of type ``T`` and how many times it was set."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._version = 0
        self._changed = anyio.Event()

    @property
    def value(self) -> T | None:
        """The latest value (None before the first :meth:`set`)."""
        return self._value

    @property
    def version(self) -> int:
        """How many times a value was set (0: never)."""
        return self._version

    def set(self, value: T) -> None:
        """Publish ``value`` and wake every waiter."""
        self._value = value
        self._version += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def newer(self, version: int) -> tuple[int, T]:
        """The first value set after ``version`` (at once if there is one already)."""
        while self._version <= version or self._value is None:
            await self._changed.wait()
        return self._version, self._value

    async def wait_for(self, predicate: Callable[[T], bool]) -> T:
        """The first value (the current one included) for which ``predicate`` holds. Bound it
        with a deadline (``anyio.fail_after``): it waits as long as no such value comes."""
        version = self._version
        if self._value is not None and predicate(self._value):
            return self._value
        while True:
            version, value = await self.newer(version)
            if predicate(value):
                return value

    async def watch(self) -> AsyncIterator[T]:
        """The current value (if any), then each newer one; a slow reader skips to the latest."""
        version = 0
        while True:
            version, value = await self.newer(version)
            yield value
