"""Rate limiters: how long an item waits before its next try, and the client-side token bucket.

Copied semantics (client-go ``util/workqueue/default_rate_limiters.go``):

* :class:`ItemExponentialRateLimiter`: ``base * 2**failures`` capped at ``max_delay``, per item,
  reset by :meth:`forget`. controller-runtime's default is 5 ms → 1000 s.
* :class:`BucketRateLimiter`: one token bucket shared by every item (10 qps, burst 100 when
  opted in); returns the wait its reservation implies.
* :class:`MaxOfRateLimiter`: the longest of several.

:class:`TokenBucket` is the same bucket used for API requests when client-side limiting is on.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from tsgw.kube._clock import Clock, RealClock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "TokenBucket",
    "default_controller_rate_limiter",
]


class RateLimiter(Protocol):
    """Decides how long an item waits before it is retried."""

    def when(self, item: Hashable) -> float:
        """Seconds to wait before ``item`` is processed again (records one more failure)."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item``: it succeeded."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures are recorded for ``item``."""
        ...


class ItemExponentialRateLimiter:
    """``base_delay * 2**n`` for the n-th failure of an item, at most ``max_delay``."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        if n > 64:  # 2**64 * anything overflows the cap anyway
            return self.max_delay
        return float(min(self.base_delay * (2**n), self.max_delay))

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class TokenBucket:
    """A token bucket refilled at ``qps`` up to ``burst``; :meth:`reserve` never blocks.

    A reservation may drive the level negative; the returned delay is how long the caller must
    wait for its token, exactly like ``rate.Limiter.Reserve().Delay()``.
    """

    def __init__(self, qps: float, burst: int, clock: Clock | None = None) -> None:
        if qps <= 0 or burst <= 0:
            raise ValueError("qps and burst must be positive")
        self.qps = qps
        self.burst = burst
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last: float | None = None

    def reserve(self) -> float:
        now = self._clock.now()
        if self._last is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> None:
        """Wait for one token (client-side throttling of API requests)."""
        delay = self.reserve()
        if delay > 0:
            await self._clock.sleep(delay)


class BucketRateLimiter:
    """An overall token bucket: every item shares it; failures are not tracked per item."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        self.bucket = TokenBucket(qps, burst, clock)

    def when(self, item: Hashable) -> float:
        return self.bucket.reserve()

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay any of ``limiters`` asks for; failures are the largest count."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(overall_bucket: bool = False, clock: Clock | None = None) -> RateLimiter:
    """controller-runtime's default: per-item 5 ms → 1000 s; the 10 qps/100 bucket only if asked."""
    per_item = ItemExponentialRateLimiter(0.005, 1000.0)
    if not overall_bucket:
        return per_item
    return MaxOfRateLimiter(per_item, BucketRateLimiter(10.0, 100, clock))
