"""tsgw.xds's public surface is curated: adding a name to ``__all__`` is a decision."""

import tsgw.xds


def test_xds_exports_exactly_the_curated_names() -> None:
    assert sorted(tsgw.xds.__all__) == sorted(
        [
            "PUSH_ORDER",
            "AdsServer",
            "ClusterDiscovery",
            "EventKind",
            "EndpointDiscovery",
            "InconsistentSnapshotError",
            "ListenerDiscovery",
            "Nack",
            "NodeSync",
            "NodeGroup",
            "ProtocolError",
            "RawCodec",
            "Resource",
            "RouteDiscovery",
            "RuntimeDiscovery",
            "ScopedRouteDiscovery",
            "SecretDiscovery",
            "ServerOptions",
            "Snapshot",
            "SnapshotCache",
            "SnapshotError",
            "SnapshotInfo",
            "StreamEvent",
            "StreamStatus",
            "Subscriber",
            "Sync",
            "TypeResources",
            "TypeStatus",
            "UnknownGroupError",
            "UnknownVersionError",
            "XdsError",
            "bootstrap",
            "group_token",
            "group_by_cluster",
            "group_by_id",
            "short_name",
            "type_url_of",
        ]
    )
    for name in tsgw.xds.__all__:
        assert getattr(tsgw.xds, name) is not None


def test_every_xds_error_derives_from_one_base() -> None:
    for name in (
        "SnapshotError",
        "InconsistentSnapshotError",
        "UnknownGroupError",
        "UnknownVersionError",
        "ProtocolError",
    ):
        assert issubclass(getattr(tsgw.xds, name), tsgw.xds.XdsError)
