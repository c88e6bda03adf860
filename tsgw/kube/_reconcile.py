"""What a reconciler receives and returns (controller-runtime ``pkg/reconcile``).

The contract, as on ``TypedReconciler.Reconcile``: a reconcile raising an exception is retried
with per-item backoff, unless it is a :class:`~tsgw.kube.TerminalError` (recorded, not
retried); otherwise ``Result.requeue_after`` > 0 runs it again after that long; otherwise the
item is forgotten until an event brings it back. Reconcilers read the informer cache and must be
idempotent: they are level-triggered, not told *what* changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = ["Reconciler", "ReconcilerFunc", "Request", "Result"]


class Request(NamedTuple):
    """The object to reconcile: ``namespace`` ("" when cluster-scoped) and ``name``."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """``requeue_after`` (seconds): reconcile again after that long even without an event."""

    requeue_after: float | None = None


class Reconciler(Protocol):
    """Drives one object towards its desired state."""

    async def reconcile(self, request: Request) -> Result | None: ...


@dataclass(frozen=True)
class ReconcilerFunc:
    """A :class:`Reconciler` from an async function."""

    func: Callable[[Request], Awaitable[Result | None]]

    async def reconcile(self, request: Request) -> Result | None:
        return await self.func(request)
