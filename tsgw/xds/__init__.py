"""The xDS control plane: snapshots, the snapshot cache and the aggregated discovery server.

Knows Envoy's API and nothing of Kubernetes or Tailscale; it could be published on its own.
Snapshots are checked for consistency before they are served, each resource is encoded once per
version, and the ADS server speaks state-of-the-world and delta on one stream, never resending
a version an Envoy rejected. It also writes Envoy bootstraps and keeps per-node ACK/NACK status.

Resources are protobuf messages of ``xds-protos`` (protobuf's upb backend: microseconds per
encode, where betterproto2 takes milliseconds; see docs/architecture.md, "xDS codec") or
JSON-shaped dicts.

Importing this package loads no network library: the server (:class:`AdsServer` and its
status types, on grpclib) loads on first use of one of its names, so pure users such as
translation (:func:`bootstrap`, :class:`Snapshot`) never pull grpclib in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsgw._lazy import lazy
from tsgw.xds._auth import group_token
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
from tsgw.xds._events import EventKind, StreamEvent, Subscriber
from tsgw.xds._snapshot import Resource, Snapshot, TypeResources
from tsgw.xds._state import Nack, Sync
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
    "EventKind",
    "InconsistentSnapshotError",
    "ListenerDiscovery",
    "Nack",
    "NodeGroup",
    "NodeSync",
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
    "group_by_cluster",
    "group_by_id",
    "group_token",
    "short_name",
    "type_url_of",
]

_LAZY = {
    n: "tsgw.xds._server"
    for n in ("AdsServer", "NodeSync", "RawCodec", "ServerOptions", "StreamStatus", "TypeStatus")
}

if TYPE_CHECKING:
    from tsgw.xds._server import AdsServer, NodeSync, RawCodec, ServerOptions, StreamStatus, TypeStatus


__getattr__, __dir__ = lazy(__name__, _LAZY, __all__)
