"""The xDS control plane: snapshots, the snapshot cache and the aggregated discovery server.

Knows Envoy's API and nothing of Kubernetes or Tailscale; it could be published on its own.
Snapshots are checked for consistency before they are served, each resource is encoded once per
version, and the ADS server speaks state-of-the-world and delta on one stream, never resending
a version an Envoy rejected. It also writes Envoy bootstraps and keeps per-node ACK/NACK status.

Resources are protobuf messages of ``xds-protos`` (protobuf's upb backend: microseconds per
encode, where betterproto2 takes milliseconds; see docs/architecture.md, "xDS codec") or
JSON-shaped dicts.
"""

from tsgw.xds._bootstrap import bootstrap
from tsgw.xds._cache import NodeGroup, SnapshotCache, SnapshotInfo, group_by_cluster, group_by_id
from tsgw.xds._errors import (
    InconsistentSnapshotError,
    ProtocolError,
    SnapshotError,
    UnknownGroupError,
    UnknownVersionError,
    XdsError,
)
from tsgw.xds._server import AdsServer, RawCodec, ServerOptions, StreamStatus, TypeStatus
from tsgw.xds._snapshot import Resource, Snapshot, TypeResources
from tsgw.xds._state import Nack
from tsgw.xds._types import (
    PUSH_ORDER,
    ClusterDiscovery,
    EndpointDiscovery,
    ListenerDiscovery,
    RouteDiscovery,
    RuntimeDiscovery,
    ScopedRouteDiscovery,
    SecretDiscovery,
    short_name,
    type_url_of,
)

__all__ = [
    "PUSH_ORDER",
    "AdsServer",
    "ClusterDiscovery",
    "EndpointDiscovery",
    "InconsistentSnapshotError",
    "ListenerDiscovery",
    "Nack",
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
    "StreamStatus",
    "TypeResources",
    "TypeStatus",
    "UnknownGroupError",
    "UnknownVersionError",
    "XdsError",
    "bootstrap",
    "group_by_cluster",
    "group_by_id",
    "short_name",
    "type_url_of",
]
