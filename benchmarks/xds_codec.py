"""Codec choice for tsgw.xds's hot path: betterproto2 (envoy-data-plane) vs protobuf upb (xds-protos).

Measures, for the same small EDS Cluster with an HTTP health check, the encode of one Cluster, the
parse of an Envoy-sized first DiscoveryRequest (a Node listing 516 extensions) and of a small ACK,
and checks both engines produce the same bytes. Prints one JSON line.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Sequence
from typing import Any


def _best(fn: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def main(argv: Sequence[str] = ()) -> None:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import discovery_pb2
    from envoy_data_plane.envoy.config.cluster import v3 as bcluster
    from envoy_data_plane.envoy.config.core import v3 as bcore
    from envoy_data_plane.envoy.service.discovery import v3 as bdisc
    from google.protobuf import duration_pb2

    from tsgw.xds import ClusterDiscovery

    # the same cluster in both engines
    u = cluster_pb2.Cluster(name="c-1", type=cluster_pb2.Cluster.EDS)
    u.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=1))
    u.eds_cluster_config.eds_config.ads.SetInParent()
    hc = u.health_checks.add()
    hc.timeout.seconds = 1
    hc.interval.seconds = 5
    hc.unhealthy_threshold.value = 2
    hc.healthy_threshold.value = 1
    hc.http_health_check.path = "/healthz"
    b = bcluster.Cluster(
        name="c-1",
        type=bcluster.ClusterDiscoveryType.EDS,
        connect_timeout=datetime.timedelta(seconds=1),
        eds_cluster_config=bcluster.ClusterEdsClusterConfig(
            eds_config=bcore.ConfigSource(ads=bcore.AggregatedConfigSource())
        ),
        health_checks=[
            bcore.HealthCheck(
                timeout=datetime.timedelta(seconds=1),
                interval=datetime.timedelta(seconds=5),
                unhealthy_threshold=2,
                healthy_threshold=1,
                http_health_check=bcore.HealthCheckHttpHealthCheck(path="/healthz"),
            )
        ],
    )
    identical = bytes(b) == u.SerializeToString(deterministic=True)

    node = base_pb2.Node(id="envoy-0", cluster="group")
    for i in range(516):
        ext = node.extensions.add()
        ext.name = f"envoy.filters.http.extension_number_{i}"
        ext.category = "envoy.filters.http"
        ext.type_urls.append(f"type.googleapis.com/envoy.extensions.filters.http.ext{i}.v3.Config")
    first = discovery_pb2.DiscoveryRequest(node=node, type_url=ClusterDiscovery).SerializeToString()
    ack = discovery_pb2.DiscoveryRequest(
        version_info="abc123", response_nonce="7", type_url=ClusterDiscovery
    ).SerializeToString()

    # tsgw.xds's hot path: build a 1,000-cluster snapshot (encode each once), assemble a response
    from tsgw.xds import Snapshot, _wire

    clusters = []
    for i in range(1000):
        c = cluster_pb2.Cluster()
        c.CopyFrom(u)
        c.name = f"c-{i}"
        clusters.append(c)
    snap_ms = _best(lambda: Snapshot({ClusterDiscovery: clusters}, check=False), 5) / 1000
    res = Snapshot({ClusterDiscovery: clusters}, check=False).resources(ClusterDiscovery)
    body = res.all_sotw()
    assemble_us = _best(lambda: _wire.sotw_response(res.version, [body], ClusterDiscovery, "12", b""), 200)

    out = {
        "bench": "xds_codec",
        "cluster_bytes_identical": identical,
        "first_request_bytes": len(first),
        "snapshot_1000_clusters_ms": round(snap_ms, 2),
        "assemble_response_1000_clusters_us": round(assemble_us, 1),
        "response_1000_clusters_kib": round(len(body) / 1024, 1),
        "upb": {
            "encode_cluster_us": round(_best(lambda: u.SerializeToString(deterministic=True), 2000), 2),
            "parse_first_request_us": round(
                _best(lambda: discovery_pb2.DiscoveryRequest.FromString(first), 200), 1
            ),
            "parse_ack_us": round(_best(lambda: discovery_pb2.DiscoveryRequest.FromString(ack), 2000), 2),
        },
        "betterproto2": {
            "encode_cluster_us": round(_best(lambda: bytes(b), 30), 1),
            "parse_first_request_us": round(_best(lambda: bdisc.DiscoveryRequest.parse(first), 3), 1),
            "parse_ack_us": round(_best(lambda: bdisc.DiscoveryRequest.parse(ack), 30), 1),
        },
    }
    print(json.dumps(out))
