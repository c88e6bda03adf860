"""SnapshotCache: groups, history, watches."""

from __future__ import annotations

import pytest

from tests.support.xds import proxy_snapshot
from tsgw.xds import SnapshotCache, UnknownGroupError, UnknownVersionError, group_by_cluster, group_by_id


def test_groups_share_one_snapshot_and_keep_a_bounded_history() -> None:
    cache = SnapshotCache(history=2)
    snaps = [proxy_snapshot(1, {"a": [p]}, {"/": "a"}, version=f"v{p}") for p in (1, 2, 3)]
    gens = [cache.set_snapshot("g", s) for s in snaps]
    assert gens == sorted(gens)
    assert cache.get_snapshot("g") is snaps[2]
    assert [i.snapshot.version for i in cache.history("g")] == ["v2", "v3"]
    assert cache.find("g", "v2").snapshot is snaps[1]
    assert cache.find("g", str(gens[2])).snapshot is snaps[2]
    with pytest.raises(UnknownVersionError):
        cache.find("g", "v1")
    cache.clear_snapshot("g")
    assert cache.get_snapshot("g") is None
    with pytest.raises(UnknownGroupError):
        cache.history("g")


def test_watchers_are_told_of_their_group_only_and_a_failing_one_harms_nobody() -> None:
    cache = SnapshotCache()
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("watcher bug")

    cancel_broken = cache.watch("g", broken)
    cancel = cache.watch("g", lambda: seen.append("g"))
    cache.watch("other", lambda: seen.append("other"))
    cancel_all = cache.watch_all(seen.append)
    cache.set_snapshot("g", proxy_snapshot(1, {"a": [1]}, {"/": "a"}))
    assert seen == ["g", "g"]
    cancel()
    cancel_broken()
    cancel_all()
    cache.set_snapshot("g", proxy_snapshot(1, {"a": [2]}, {"/": "a"}))
    assert seen == ["g", "g"]


def test_node_grouping_is_by_cluster_by_default_or_by_id() -> None:
    from envoy.config.core.v3 import base_pb2

    node = base_pb2.Node(id="pod-0", cluster="egress")
    assert SnapshotCache().node_group(node) == "egress"
    assert group_by_cluster(node) == "egress"
    assert SnapshotCache(node_group=group_by_id).node_group(node) == "pod-0"
