"""Answers remembered by the exact bytes of the request that produced them.

Envoy Gateway translates everything again on every change it sees (a route, a Service, an
EndpointSlice anywhere in its scope), and calls ``PostClusterModify`` and ``PostRouteModify``
once per custom backend cluster and per route with policies, sequentially, on its translation
path (``internal/xds/translator/translator.go``). Almost every one of those calls repeats the
previous translation's call byte for byte: it marshals the same cluster and the same watched
objects the same way (``proto.Marshal`` of the same message and ``json.Marshal`` of the same
``Unstructured``, both deterministic within a release). Because the hooks are pure functions of
the request (``_hooks.py``), the answer to an identical request is the previous answer, and a
repeated call costs a dictionary lookup instead of decoding, validating the object against
tsgw's schema and encoding the answer again.

The key is the request's bytes themselves (no digest, so no collision to reason about); the
memo is bounded (least recently used answer evicted first) so a churning cluster cannot grow
it without limit. Each :class:`Memo` belongs to one server and one set of hook options.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Memo", "MemoStats"]


@dataclass(slots=True)
class MemoStats:
    """How often the memo answered."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0


class Memo:
    """A bounded map from request bytes to answer bytes."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.stats = MemoStats()
        self._answers: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def answer(self, request: bytes, compute: Callable[[bytes], bytes]) -> bytes:
        """The remembered answer to ``request``, or ``compute(request)`` remembered.

        An exception from ``compute`` propagates and nothing is remembered."""
        found = self._answers.get(request)
        if found is not None:
            self._answers.move_to_end(request)
            self.stats.hits += 1
            return found
        self.stats.misses += 1
        out = compute(request)
        self._answers[request] = out
        if len(self._answers) > self.capacity:
            self._answers.popitem(last=False)
            self.stats.evictions += 1
        return out
