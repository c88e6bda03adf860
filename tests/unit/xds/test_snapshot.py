"""Snapshots: encoding once, per-type content versions, consistency, and hand-assembled wire bytes."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.support.xds import cluster, endpoints, listener, proxy_snapshot, routes
from tsgw.xds import (
    ClusterDiscovery,
    EndpointDiscovery,
    InconsistentSnapshotError,
    ListenerDiscovery,
    RouteDiscovery,
    Snapshot,
    SnapshotError,
    _wire,
)


def test_unchanged_type_keeps_its_version_and_changed_type_gets_a_new_one() -> None:
    a = proxy_snapshot(8000, {"a": [1]}, {"/": "a"})
    b = proxy_snapshot(8000, {"a": [2]}, {"/": "a"})
    assert a.type_version(ClusterDiscovery) == b.type_version(ClusterDiscovery)
    assert a.type_version(ListenerDiscovery) == b.type_version(ListenerDiscovery)
    assert a.type_version(EndpointDiscovery) != b.type_version(EndpointDiscovery)
    assert a.version != b.version


def test_missing_endpoints_are_refused_naming_the_resource() -> None:
    with pytest.raises(InconsistentSnapshotError, match=r"eds 'b' \(referenced by cds 'b'\) is missing") as e:
        Snapshot(
            {
                ClusterDiscovery: [cluster("a"), cluster("b")],
                EndpointDiscovery: [endpoints("a", [1])],
            }
        )
    assert e.value.missing == ((EndpointDiscovery, "b"),)


def test_missing_route_configuration_is_refused() -> None:
    with pytest.raises(InconsistentSnapshotError, match=r"rds 'r' .* is missing"):
        Snapshot({ListenerDiscovery: [listener("l", 1, "r")]})


def test_unreferenced_endpoints_and_routes_are_dangling() -> None:
    with pytest.raises(InconsistentSnapshotError, match="referenced by nothing") as e:
        Snapshot({EndpointDiscovery: [endpoints("x", [1])], RouteDiscovery: [routes("r", {"/": "x"})]})
    assert set(e.value.dangling) == {(EndpointDiscovery, "x"), (RouteDiscovery, "r")}


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(SnapshotError, match="duplicate cds"):
        Snapshot({ClusterDiscovery: [cluster("a"), cluster("a")]}, check=False)


def test_messages_and_dicts_encode_to_the_same_bytes() -> None:
    msg = cluster_pb2.Cluster(name="m", type=cluster_pb2.Cluster.STATIC)
    msg.connect_timeout.seconds = 1
    s1 = Snapshot({ClusterDiscovery: [msg]})
    s2 = Snapshot({ClusterDiscovery: [{"name": "m", "type": "STATIC", "connect_timeout": "1s"}]})
    assert s1.resources(ClusterDiscovery).items["m"].data == s2.resources(ClusterDiscovery).items["m"].data


def test_assembled_sotw_response_parses_back_with_protobuf() -> None:
    snap = proxy_snapshot(8000, {"a": [1], "b": [2]}, {"/a": "a", "/b": "b"})
    res = snap.resources(ClusterDiscovery)
    raw = _wire.sotw_response(
        res.version, [res.all_sotw()], ClusterDiscovery, "7", _wire.sotw_control_plane("cp")
    )
    resp = discovery_pb2.DiscoveryResponse.FromString(raw)
    assert resp.version_info == res.version
    assert resp.nonce == "7"
    assert resp.type_url == ClusterDiscovery
    assert resp.control_plane.identifier == "cp"
    names = []
    for any_msg in resp.resources:
        c = cluster_pb2.Cluster()
        assert any_msg.Unpack(c)
        names.append(c.name)
    assert names == ["a", "b"]


def test_assembled_delta_response_parses_back_with_protobuf() -> None:
    snap = proxy_snapshot(8000, {"a": [1]}, {"/": "a"})
    res = snap.resources(EndpointDiscovery)
    raw = _wire.delta_response("sv", [res.delta_field("a")], EndpointDiscovery, ["gone"], "3", b"")
    resp = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
    assert resp.system_version_info == "sv"
    assert resp.nonce == "3"
    assert list(resp.removed_resources) == ["gone"]
    (r,) = resp.resources
    assert r.name == "a"
    assert r.version == res.items["a"].version
    assert r.resource.type_url == EndpointDiscovery


def test_to_dict_decodes_resources_for_dumps() -> None:
    snap = proxy_snapshot(8000, {"a": [1]}, {"/": "a"}, version="v1")
    d = snap.to_dict()
    assert d["version"] == "v1"
    assert d["types"]["cds"]["resources"]["a"]["type"] == "EDS"
    assert d["types"]["lds"]["resources"]["http"]["filter_chains"][0]["filters"][0]["typed_config"]["rds"]


def test_reuse_shares_unchanged_resources_with_the_previous_snapshot() -> None:
    a = proxy_snapshot(8000, {"a": [1], "b": [2]}, {"/": "a"})
    b = Snapshot(
        {
            ClusterDiscovery: [cluster("a"), cluster("b", per_connection_buffer_limit_bytes=5)],
            EndpointDiscovery: [endpoints("a", [1]), endpoints("b", [2])],
            ListenerDiscovery: [listener("http", 8000, "local")],
            RouteDiscovery: [routes("local", {"/": "a"})],
        },
        reuse=a,
    )
    assert b.resources(ClusterDiscovery).items["a"] is a.resources(ClusterDiscovery).items["a"]
    assert b.resources(ClusterDiscovery).items["b"] is not a.resources(ClusterDiscovery).items["b"]
    assert b.type_version(EndpointDiscovery) == a.type_version(EndpointDiscovery)
    assert b.type_version(ClusterDiscovery) != a.type_version(ClusterDiscovery)
