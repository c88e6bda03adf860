"""The pipeline: inputs → translation → snapshots per proxy group → the latest result, watchable.

One pipeline runs in every process that serves xDS: standalone mode feeds it the folder, the
operator (every replica) its informers. It knows nothing of where inputs come from:

1. Each :class:`Update` is translated by one incremental :class:`tsgw.translate.Translator`.
2. Every group whose resources changed gets a new :class:`tsgw.xds.Snapshot` in the
   :class:`tsgw.xds.SnapshotCache`, keyed by its node cluster
   (:func:`tsgw.translate.node_cluster`: namespace and group name, so two namespaces never share
   a configuration); a group that disappeared is cleared. A snapshot the cache refuses as
   inconsistent (a bug in translation) keeps the group on its previous snapshot and becomes the
   owner's ``Programmed=False, Invalid``.
3. The xDS server's events (ACK, NACK, stream opened or closed) mark their group; marked groups
   are judged again (:meth:`tsgw.xds.AdsServer.group_sync`), coalesced, so a push to 500 Envoys
   costs a handful of recomputations, not 2,000.
4. The outcome is a :class:`Published` value in :attr:`Pipeline.latest`, a
   :class:`~tsgw.pipeline.Watchable`: translation statuses plus each owner's ``Programmed``
   condition, the group states, and the translation result (whose owned Kubernetes objects are
   computed only when read). Controllers, the extension server and the admin API read it or
   await the next one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from tsgw import translate
from tsgw.model import ObjectStatus
from tsgw.pipeline._programmed import (
    GroupState,
    HeldKey,
    RemoteNodes,
    held,
    merge_remote,
    report,
    with_programmed,
)
from tsgw.pipeline._watchable import Watchable
from tsgw.xds import AdsServer, Snapshot, SnapshotCache, StreamEvent, XdsError

__all__ = ["GroupKey", "Pipeline", "PipelineOptions", "Published", "Update"]

log = structlog.get_logger("tsgw.pipeline")

GroupKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Update:
    """One state of the world from a provider."""

    inputs: translate.Inputs
    generation: int
    """The provider's generation (the folder's reading, or a counter of informer batches); the
    snapshots it produces are labelled ``g<generation>``."""


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipeline translates."""

    translate: translate.Options = field(default_factory=translate.Options)
    """Shapes of listeners, clusters and owned objects. Default: translate.Options()."""


@dataclass(frozen=True, slots=True)
class Published:
    """The latest outcome of the pipeline."""

    generation: int
    """The generation of the update it was translated from."""
    inputs: translate.Inputs
    result: translate.Result
    groups: Mapping[GroupKey, GroupState]
    """Per proxy group: its node cluster, the snapshot served and what its Envoys hold."""
    statuses: tuple[ObjectStatus, ...]
    """Translation's statuses with each group owner's Programmed condition."""
    translated_at: float
    """When the update was translated (seconds since the epoch)."""

    def status_of(self, kind: str, namespace: str, name: str) -> ObjectStatus | None:
        for st in self.statuses:
            if (st.ref.kind, st.ref.namespace, st.ref.name) == (kind, namespace, name):
                return st
        return None


def _fingerprint(snap: Snapshot) -> str:
    text = "".join(f"{t}={v};" for t, v in sorted(snap.versions().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Pipeline:
    """Translate updates, publish snapshots, and keep the latest outcome watchable."""

    def __init__(
        self, cache: SnapshotCache, options: PipelineOptions | None = None, *, ads: AdsServer | None = None
    ) -> None:
        self.cache = cache
        self.ads = ads
        self.options = options or PipelineOptions()
        self.translator = translate.Translator(self.options.translate)
        self.latest: Watchable[Published] = Watchable()
        """The latest :class:`Published`; await :meth:`Watchable.newer` for the next."""
        self._states: dict[GroupKey, GroupState] = {}
        self._held: frozenset[HeldKey] = frozenset()
        self._remote: dict[str, RemoteNodes] = {}
        self._by_cluster: dict[str, GroupKey] = {}
        self._dirty: set[str] = set()
        self._wake = anyio.Event()

    # translating -----------------------------------------------------------------------------

    def apply(self, update: Update) -> Published:
        """Translate one update, set the snapshots of the groups that changed, publish."""
        started = time.perf_counter()
        result = self.translator.translate(update.inputs)
        version = f"g{update.generation}"
        states = dict(self._states)
        for key in sorted(result.changed):
            ns, name = key
            cluster = translate.node_cluster(ns, name)
            res = result.xds.get(key)
            if res is None:
                self.cache.clear_snapshot(cluster)
                states.pop(key, None)
                self._by_cluster.pop(cluster, None)
                log.info("proxy group removed", node_cluster=cluster)
                continue
            try:
                snap = Snapshot(res.by_type(), version=version)
            except XdsError as e:
                old = states.get(key)
                states[key] = GroupState(
                    key,
                    cluster,
                    old.version if old else "",
                    f"snapshot {version} refused: {e}",
                    fingerprint=old.fingerprint if old else "",
                )
                log.error("snapshot refused; serving the previous one", node_cluster=cluster, error=str(e))
                continue
            self.cache.set_snapshot(cluster, snap)
            self._by_cluster[cluster] = key
            states[key] = GroupState(key, cluster, version, fingerprint=_fingerprint(snap))
            log.info("snapshot set", node_cluster=cluster, version=version)
        # Only groups with a new snapshot need judging again: the others' Envoys hold what they
        # held, and any change of theirs comes as an event that marks the group.
        self._states = {
            k: self._judge(st) if k in result.changed else st for k, st in states.items() if k in result.xds
        }
        published = self._publish(update.generation, update.inputs, result, time.time())
        log.info(
            "translated",
            generation=update.generation,
            groups=len(result.xds),
            changed=len(result.changed),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return published

    def _publish(
        self, generation: int, inputs: translate.Inputs, result: translate.Result, at: float
    ) -> Published:
        statuses = with_programmed(result.model.statuses, result.model.groups, self._states, self._held)
        self._held = held(statuses)
        published = Published(generation, inputs, result, dict(self._states), statuses, at)
        self.latest.set(published)
        return published

    # what the Envoys hold --------------------------------------------------------------------

    def _judge(self, state: GroupState) -> GroupState:
        local = tuple(self.ads.group_sync(state.node_cluster)) if self.ads is not None else ()
        state = dataclasses.replace(state, local=local)
        return dataclasses.replace(state, nodes=merge_remote(state, self._remote.values()))

    def set_remote(self, replica: str, nodes: RemoteNodes | None) -> None:
        """What another replica reports of the Envoys connected to it (None: it is gone); the
        groups it names are judged again."""
        if nodes is None:
            old = self._remote.pop(replica, None)
            touched = set(old or ())
        else:
            touched = set(nodes) | set(self._remote.get(replica) or ())
            self._remote[replica] = nodes
        if touched:
            self._dirty |= touched
            self._wake.set()

    def local_report(self) -> dict[str, Any]:
        """This replica's own Envoys per node cluster, for the others (:func:`report`)."""
        return report(self._states.values())

    def _on_event(self, event: StreamEvent) -> None:
        if event.group in self._by_cluster:
            self._dirty.add(event.group)
            self._wake.set()

    def _rejudge(self) -> None:
        dirty, self._dirty = self._dirty, set()
        changed = False
        for cluster in dirty:
            key = self._by_cluster.get(cluster)
            state = self._states.get(key) if key is not None else None
            if state is None:
                continue
            new = self._judge(state)
            if new != state and key is not None:
                self._states[key] = new
                changed = True
        last = self.latest.value
        if changed and last is not None:
            self._publish(last.generation, last.inputs, last.result, last.translated_at)

    # running ---------------------------------------------------------------------------------

    async def run(
        self,
        updates: AsyncIterator[Update],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Apply every update from ``updates`` and follow the xDS server's events, until the
        updates end or the task is cancelled. Reports started once the first update is
        published (a provider that fails before its first update fails here)."""
        first = await updates.__anext__()
        self.apply(first)
        cancel = self.ads.subscribe(self._on_event) if self.ads is not None else None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._follow_events)
                task_status.started()
                async for update in updates:
                    try:
                        self.apply(update)
                    except Exception:  # a bug: keep serving the last snapshots, and say so
                        log.exception(
                            "translation failed; serving the last snapshots", generation=update.generation
                        )
                tg.cancel_scope.cancel()
        finally:
            if cancel is not None:
                cancel()

    async def _follow_events(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            # Let the burst of ACKs that follows a push arrive before judging once.
            await anyio.sleep(0.01)
            self._rejudge()
