"""What one replica tells the others of its Envoys: a report round-trips, and merging reports
counts every replica's Envoys once, judging an Envoy reported against other snapshot content as
PENDING (the replicas have not translated the same inputs yet)."""

from __future__ import annotations

from tsgw.pipeline import GroupState, merge_remote, programmed, read_report, report
from tsgw.xds import Nack, NodeSync, Sync


def _state(local: tuple[NodeSync, ...], fingerprint: str = "f1") -> GroupState:
    return GroupState(("demo", "web-tssvc"), "web-tssvc.demo", "g3", fingerprint=fingerprint, local=local)


def test_a_report_round_trips_with_rejections() -> None:
    nodes = (
        NodeSync(1, "web-0", Sync.SYNCED),
        NodeSync(2, "web-1", Sync.REJECTED, Nack("v9", "bad listener"), "type.googleapis.com/x.Listener"),
    )
    doc = report([_state(nodes), _state((), "f2")])
    assert list(doc["groups"]) == ["web-tssvc.demo"]  # a group with no Envoy here is not reported
    ((cluster, (fingerprint, back)),) = read_report(doc).items()
    assert (cluster, fingerprint) == ("web-tssvc.demo", "f1")
    assert [(n.node_id, n.sync, n.type_url) for n in back] == [(x.node_id, x.sync, x.type_url) for x in nodes]
    assert back[1].rejection is not None
    assert (back[1].rejection.version, back[1].rejection.detail) == ("v9", "bad listener")


def test_the_envoys_of_every_replica_count_once_and_other_content_is_pending() -> None:
    here = _state((NodeSync(1, "web-0", Sync.SYNCED),))
    same = {"web-tssvc.demo": ("f1", (NodeSync(0, "web-1", Sync.SYNCED), NodeSync(0, "web-0", Sync.PENDING)))}
    behind = {"web-tssvc.demo": ("f0", (NodeSync(0, "web-2", Sync.SYNCED),))}
    nodes = merge_remote(here, [same, behind])
    assert [(n.node_id, n.sync) for n in nodes] == [
        ("web-0", Sync.SYNCED),  # this replica's view of web-0 wins
        ("web-1", Sync.SYNCED),
        ("web-2", Sync.PENDING),  # synced, but to other content
    ]
    cond = programmed(GroupState(here.key, here.node_cluster, "g3", nodes=nodes))
    assert (cond.status, cond.reason) == (False, "Pending")
    only_follower = merge_remote(_state(()), [same])
    cond = programmed(GroupState(here.key, here.node_cluster, "g3", nodes=only_follower[:1]))
    assert (cond.status, cond.reason) == (True, "Programmed")  # an Envoy on another replica counts
