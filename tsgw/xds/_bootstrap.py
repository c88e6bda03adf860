"""The one Envoy bootstrap builder: Envoy pointed at tsgw's aggregated xDS server.

Used by `tsgw bootstrap`, the tests, `just run` and the proxies' bootstrap ConfigMap alike.
What it sets and why (Envoy's bootstrap reference, ``config.bootstrap.v3``):

- LDS and CDS over one ADS stream, SotW (``GRPC``) or incremental (``DELTA_GRPC``); the node is
  sent on the first message only (Envoy's node with its extension list is ~60 KB).
- The xDS cluster: STATIC for an IP, LOGICAL_DNS for a name (a Kubernetes Service: one address,
  re-resolved when the connection breaks); HTTP/2 with keepalives (30 s, 5 s timeout), so a
  silent peer is noticed; a short connect timeout (1 s).
- The stream's reconnect back-off (``EnvoyGrpc.retry_policy.retry_back_off``): Envoy's default
  for xDS is a jittered exponential back-off from 500 ms to 30 s, which after a control-plane
  restart left Envoys disconnected for 9-16 s. Default here: 250 ms to 2 s, jittered by Envoy.
- With ``token``, the ADS stream's gRPC metadata carries ``authorization: Bearer <token>``
  (``GrpcService.initial_metadata``), which an authenticating server requires (``_auth``).
- Node id and cluster may be left out, for a bootstrap shared by every replica whose command
  line sets them (``--service-node``, ``--service-cluster``).
- Admin on loopback. With ``stats_port``, a static listener ``tsgw_stats`` on
  ``stats_address`` (every interface by default) serves Envoy's ``/stats/prometheus`` and only
  that, forwarded to the admin interface through the static cluster ``tsgw_admin``: Prometheus
  reaches the proxy's metrics on the pod's IP while admin's other endpoints (``/quitquitquit``,
  ``/config_dump`` with its secrets) stay unreachable from outside the pod.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from tsgw._address import parse_address

XDS_CLUSTER = "tsgw_xds"
STATS_LISTENER = "tsgw_stats"
ADMIN_CLUSTER = "tsgw_admin"
STATS_PATH = "/stats/prometheus"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def bootstrap(
    node_id: str | None,
    cluster: str | None,
    xds_address: str,
    *,
    delta: bool = False,
    admin_address: str = "127.0.0.1",
    admin_port: int = 9901,
    metadata: Mapping[str, Any] | None = None,
    initial_fetch_timeout: str | None = None,
    connect_timeout: str = "1s",
    reconnect_base: str = "0.25s",
    reconnect_max: str = "2s",
    stats_port: int | None = None,
    stats_address: str = "0.0.0.0",
    token: str | None = None,
) -> dict[str, Any]:
    """A bootstrap (as a dict, ready for YAML or JSON) for ADS over gRPC to ``xds_address``
    (``HOST:PORT``; ValueError when it is not). ``node_id``/``cluster`` None: left to Envoy's
    command line. See the module docstring for what each setting does."""
    host, port = parse_address(xds_address, what="xDS address")
    try:
        ipaddress.ip_address(host)
        discovery = "STATIC"
    except ValueError:
        discovery = "LOGICAL_DNS"

    def config_source() -> dict[str, Any]:  # fresh dicts: YAML would otherwise emit anchors
        source: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}
        if initial_fetch_timeout is not None:
            source["initial_fetch_timeout"] = initial_fetch_timeout
        return source

    node: dict[str, Any] = {}
    if node_id is not None:
        node["id"] = node_id
    if cluster is not None:
        node["cluster"] = cluster
    if metadata:
        node["metadata"] = dict(metadata)
    envoy_grpc = {
        "cluster_name": XDS_CLUSTER,
        "retry_policy": {"retry_back_off": {"base_interval": reconnect_base, "max_interval": reconnect_max}},
    }
    grpc_service: dict[str, Any] = {"envoy_grpc": envoy_grpc}
    if token is not None:
        grpc_service["initial_metadata"] = [{"key": "authorization", "value": f"Bearer {token}"}]
    out: dict[str, Any] = {"node": node} if node else {}
    static: dict[str, Any] = {"clusters": [_xds_cluster(host, port, discovery, connect_timeout)]}
    if stats_port is not None:
        static["clusters"].append(_static_cluster(ADMIN_CLUSTER, admin_address, admin_port, connect_timeout))
        static["listeners"] = [_stats_listener(stats_address, stats_port)]
    return out | {
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [grpc_service],
                "set_node_on_first_message_only": True,
            },
            "cds_config": config_source(),
            "lds_config": config_source(),
        },
        "static_resources": static,
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
    }


def _xds_cluster(host: str, port: int, discovery: str, connect_timeout: str) -> dict[str, Any]:
    cluster = _static_cluster(XDS_CLUSTER, host, port, connect_timeout)
    cluster["type"] = discovery
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _HTTP_OPTIONS_TYPE,
            "explicit_http_config": {
                "http2_protocol_options": {"connection_keepalive": {"interval": "30s", "timeout": "5s"}}
            },
        }
    }
    return cluster


def _static_cluster(name: str, host: str, port: int, connect_timeout: str) -> dict[str, Any]:
    address = {"socket_address": {"address": host, "port_value": port}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _stats_listener(address: str, port: int) -> dict[str, Any]:
    """HTTP on ``address:port``: ``GET /stats/prometheus`` goes to the admin interface, any
    other path is a 404 answered by the listener itself."""
    routes = [
        {"match": {"path": STATS_PATH}, "route": {"cluster": ADMIN_CLUSTER}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": STATS_LISTENER,
        "route_config": {
            "name": STATS_LISTENER,
            "virtual_hosts": [{"name": "stats", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": STATS_LISTENER,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
