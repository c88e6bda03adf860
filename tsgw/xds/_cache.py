"""SnapshotCache: one snapshot per node group, shared by every Envoy of that group.

Envoys are grouped by a key derived from their node (``node.cluster`` by default, pluggable).
All streams of a group read the same :class:`Snapshot` object, so they share its encoded bytes.
Setting a snapshot wakes that group's streams; a bounded history per group serves the CLI's
``snapshot list``/``diff``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from tsgw.xds import _metrics
from tsgw.xds._errors import UnknownGroupError, UnknownVersionError
from tsgw.xds._snapshot import Snapshot

log = structlog.get_logger("tsgw.xds.cache")

NodeGroup = Callable[[Any], str]
"""Maps an ``envoy.config.core.v3.Node`` message to its group key."""


def group_by_cluster(node: Any) -> str:
    """The default grouping: ``node.cluster`` (Envoy's ``--service-cluster``)."""
    return str(node.cluster)


def group_by_id(node: Any) -> str:
    """One group per Envoy (``node.id``), as go-control-plane's IDHash."""
    return str(node.id)


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot of a group, as the history shows it."""

    group: str
    generation: int
    snapshot: Snapshot


class SnapshotCache:
    """Snapshots keyed by node group, with change notification and a short history."""

    def __init__(self, *, node_group: NodeGroup = group_by_cluster, history: int = 16) -> None:
        self.node_group = node_group
        self._history_len = history
        self._current: dict[str, SnapshotInfo] = {}
        self._history: dict[str, deque[SnapshotInfo]] = {}
        self._watchers: dict[str, set[Callable[[], None]]] = {}
        self._any_watchers: set[Callable[[str], None]] = set()
        self._generations = itertools.count(1)

    # writing ---------------------------------------------------------------------------------

    def set_snapshot(self, group: str, snapshot: Snapshot) -> int:
        """Store ``snapshot`` for ``group`` and wake its streams; returns the generation number."""
        info = SnapshotInfo(group, next(self._generations), snapshot)
        self._current[group] = info
        hist = self._history.setdefault(group, deque(maxlen=self._history_len))
        hist.append(info)
        _metrics.SNAPSHOT_GENERATION.labels(group).set(info.generation)
        log.debug("snapshot set", group=group, version=snapshot.version, generation=info.generation)
        # A failing watcher must not fail the writer nor starve the other watchers.
        for notify in list(self._watchers.get(group, ())):
            try:
                notify()
            except Exception:
                log.exception("snapshot watcher failed", group=group)
        for notify_any in list(self._any_watchers):
            try:
                notify_any(group)
            except Exception:
                log.exception("snapshot watcher failed", group=group)
        return info.generation

    def clear_snapshot(self, group: str) -> None:
        """Forget a group's snapshot and history (streams keep what they were sent)."""
        self._current.pop(group, None)
        self._history.pop(group, None)
        if group in _metrics.known_groups():
            _metrics.SNAPSHOT_GENERATION.remove(group)

    # reading ---------------------------------------------------------------------------------

    def get_snapshot(self, group: str) -> Snapshot | None:
        info = self._current.get(group)
        return info.snapshot if info else None

    def current(self, group: str) -> SnapshotInfo:
        try:
            return self._current[group]
        except KeyError:
            raise UnknownGroupError(f"no snapshot for group {group!r}") from None

    def groups(self) -> list[str]:
        return sorted(self._current)

    def history(self, group: str) -> list[SnapshotInfo]:
        if group not in self._history:
            raise UnknownGroupError(f"no snapshot for group {group!r}")
        return list(self._history[group])

    def find(self, group: str, version: str) -> SnapshotInfo:
        """A stored snapshot by its version label or generation number."""
        for info in reversed(self.history(group)):
            if version in (info.snapshot.version, str(info.generation)):
                return info
        raise UnknownVersionError(f"group {group!r} has no stored snapshot {version!r}")

    # watching --------------------------------------------------------------------------------

    def watch(self, group: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify()`` (synchronously, in the setter's thread) on every set for ``group``."""
        self._watchers.setdefault(group, set()).add(notify)

        def cancel() -> None:
            w = self._watchers.get(group)
            if w is not None:
                w.discard(notify)
                if not w:
                    del self._watchers[group]

        return cancel

    def watch_all(self, notify: Callable[[str], None]) -> Callable[[], None]:
        """Call ``notify(group)`` on every set of any group (the admin API's version watch)."""
        self._any_watchers.add(notify)
        return lambda: self._any_watchers.discard(notify)
