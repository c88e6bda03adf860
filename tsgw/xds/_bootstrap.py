"""Envoy bootstraps that point Envoy at tsgw's aggregated xDS server."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

XDS_CLUSTER = "tsgw_xds"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"xDS address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def bootstrap(
    node_id: str,
    cluster: str,
    xds_address: str,
    *,
    delta: bool = False,
    admin_address: str = "127.0.0.1",
    admin_port: int = 9901,
    metadata: Mapping[str, Any] | None = None,
    initial_fetch_timeout: str | None = None,
) -> dict[str, Any]:
    """A bootstrap (as a dict, ready for YAML or JSON) for ADS over gRPC to ``xds_address``.

    LDS and CDS come over one aggregated stream, SotW (``GRPC``) or incremental
    (``DELTA_GRPC``); the node is sent on the first message only, since Envoy's node with its
    extension list is ~60 KB and would otherwise be parsed on every ACK. The xDS cluster speaks
    HTTP/2 with keepalives, and admin listens on loopback.
    """
    host, port = _split(xds_address)
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

    node: dict[str, Any] = {"id": node_id, "cluster": cluster}
    if metadata:
        node["metadata"] = dict(metadata)
    return {
        "node": node,
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": config_source(),
            "lds_config": config_source(),
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": discovery,
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": _HTTP_OPTIONS_TYPE,
                            "explicit_http_config": {
                                "http2_protocol_options": {
                                    "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                                }
                            },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": host, "port_value": port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
    }
