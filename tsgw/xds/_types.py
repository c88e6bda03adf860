"""Resource type URLs, their message classes (protobuf upb, from ``xds-protos``) and push order."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.runtime.v3 import rtds_pb2

_PREFIX: Final = "type.googleapis.com/"

ClusterDiscovery: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
"""CDS: ``envoy.config.cluster.v3.Cluster``."""
EndpointDiscovery: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
"""EDS: ``envoy.config.endpoint.v3.ClusterLoadAssignment``."""
ListenerDiscovery: Final = _PREFIX + "envoy.config.listener.v3.Listener"
"""LDS: ``envoy.config.listener.v3.Listener``."""
RouteDiscovery: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
"""RDS: ``envoy.config.route.v3.RouteConfiguration``."""
ScopedRouteDiscovery: Final = _PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
"""SRDS: ``envoy.config.route.v3.ScopedRouteConfiguration``."""
SecretDiscovery: Final = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
"""SDS: ``envoy.extensions.transport_sockets.tls.v3.Secret``."""
RuntimeDiscovery: Final = _PREFIX + "envoy.service.runtime.v3.Runtime"
"""RTDS: ``envoy.service.runtime.v3.Runtime``."""

HCM_TYPE: Final = _PREFIX + http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR.full_name

MESSAGE_CLASSES: Final[dict[str, Any]] = {
    SecretDiscovery: secret_pb2.Secret,
    ClusterDiscovery: cluster_pb2.Cluster,
    EndpointDiscovery: endpoint_pb2.ClusterLoadAssignment,
    ListenerDiscovery: listener_pb2.Listener,
    RouteDiscovery: route_pb2.RouteConfiguration,
    ScopedRouteDiscovery: scoped_route_pb2.ScopedRouteConfiguration,
    RuntimeDiscovery: rtds_pb2.Runtime,
}

PUSH_ORDER: Final[tuple[str, ...]] = (
    # Make-before-break: secrets and clusters (with their endpoints) exist before listeners and
    # routes refer to them. Envoy warms clusters on EDS and listeners on RDS/SDS.
    SecretDiscovery,
    ClusterDiscovery,
    EndpointDiscovery,
    ListenerDiscovery,
    RouteDiscovery,
    ScopedRouteDiscovery,
    RuntimeDiscovery,
)

SHORT_NAMES: Final[dict[str, str]] = {
    SecretDiscovery: "sds",
    ClusterDiscovery: "cds",
    EndpointDiscovery: "eds",
    ListenerDiscovery: "lds",
    RouteDiscovery: "rds",
    ScopedRouteDiscovery: "srds",
    RuntimeDiscovery: "rtds",
}

WILDCARD_TYPES: Final = frozenset({ClusterDiscovery, ListenerDiscovery, ScopedRouteDiscovery})
"""Types Envoy subscribes to by wildcard and whose SotW responses carry the full state."""


def short_name(type_url: str) -> str:
    """``"cds"`` for the Cluster type URL; the bare message name for others."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


def type_url_of(name: str) -> str:
    """Accept a type URL, a full message name or a short name (``cds``, ``eds``, ...)."""
    for url, short in SHORT_NAMES.items():
        if name == short:
            return url
    return name if name.startswith(_PREFIX) else _PREFIX + name


_SCANNED: set[str] = set()


def import_message_package(full_name: str) -> None:
    """Import every ``*_pb2`` module of a message's proto package so JSON ``Any`` values resolve.

    A bootstrap-like dict names extension types by URL (``@type``); protobuf only finds those
    whose module was imported. Proto packages map one-to-one to Python packages in xds-protos.
    """
    package = full_name.rsplit(".", 1)[0]
    if package in _SCANNED:
        return
    _SCANNED.add(package)
    try:
        mod = importlib.import_module(package)
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(mod, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
