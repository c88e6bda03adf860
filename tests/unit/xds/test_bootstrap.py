"""The one bootstrap builder sets the ADS stream's reconnect back-off (250 ms to 2 s by default,
not Envoy's 500 ms to 30 s, which left Envoys disconnected 9-16 s after a control-plane
restart), and what it builds is a valid Envoy Bootstrap message (field names and placement)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from tsgw.xds import bootstrap


def _grpc_service(config: dict[str, Any]) -> dict[str, Any]:
    (service,) = config["dynamic_resources"]["ads_config"]["grpc_services"]
    return dict(service["envoy_grpc"])


def test_the_ads_stream_reconnects_with_a_short_back_off_by_default() -> None:
    envoy_grpc = _grpc_service(bootstrap("web-0", "web-tssvc.demo", "127.0.0.1:18000"))
    assert envoy_grpc["retry_policy"] == {"retry_back_off": {"base_interval": "0.25s", "max_interval": "2s"}}


def test_the_back_off_can_be_chosen() -> None:
    config = bootstrap(None, None, "tsgw.tsgw-system.svc:18000", reconnect_base="0.1s", reconnect_max="5s")
    back_off = _grpc_service(config)["retry_policy"]["retry_back_off"]
    assert back_off == {"base_interval": "0.1s", "max_interval": "5s"}


@pytest.mark.parametrize("delta", [False, True])
def test_the_bootstrap_is_a_valid_envoy_bootstrap_message(delta: bool) -> None:
    config = bootstrap("web-0", "web-tssvc.demo", "127.0.0.1:18000", delta=delta)
    assert http_protocol_options_pb2  # registers the type of the xDS cluster's typed options
    msg = bootstrap_pb2.Bootstrap()
    json_format.ParseDict(config, msg)  # raises on a misplaced or misspelled field
    ads = msg.dynamic_resources.ads_config
    back_off = ads.grpc_services[0].envoy_grpc.retry_policy.retry_back_off
    assert back_off.base_interval.ToMilliseconds() == 250
    assert back_off.max_interval.ToMilliseconds() == 2000
    assert msg.node.cluster == "web-tssvc.demo"


def test_a_stats_port_serves_prometheus_stats_and_nothing_else_of_admin() -> None:
    plain = bootstrap("n", "c", "10.0.0.1:18000")
    assert "listeners" not in plain["static_resources"]
    config = bootstrap("n", "c", "10.0.0.1:18000", admin_port=19000, stats_port=19001)
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 19001}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[0] == {"match": {"path": "/stats/prometheus"}, "route": {"cluster": "tsgw_admin"}}
    assert routes[1]["direct_response"] == {"status": 404}
    admin = next(c for c in config["static_resources"]["clusters"] if c["name"] == "tsgw_admin")
    endpoint = admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19000}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
