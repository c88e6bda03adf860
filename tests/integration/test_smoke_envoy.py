"""The Envoy fixture itself: a static bootstrap proxies a request to a loopback backend."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from tests.support.backend import HttpBackend
from tests.support.envoy import EnvoyFactory

pytestmark = pytest.mark.integration


def static_proxy(listen_port: int, backend_port: int) -> dict[str, Any]:
    return {
        "node": {"id": "smoke", "cluster": "smoke"},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "smoke",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {"match": {"prefix": "/"}, "route": {"cluster": "be"}}
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters."
                                                    "http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "be",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "be",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": backend_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def test_static_envoy_proxies_a_request_to_a_loopback_backend(envoy_factory: EnvoyFactory) -> None:
    with HttpBackend("smoke-backend") as backend:
        envoy = envoy_factory(static_proxy(0, backend.port))  # port 0, read back: race-free
        port = envoy.listener_port("http")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5) as resp:
            assert resp.status == 200
            assert resp.read() == b"smoke-backend"
        assert backend.requests == 1
        stats = envoy.stats()
        assert stats["cluster.be.upstream_rq_total"] == 1
        dump = envoy.config_section("ClustersConfigDump")
        assert [c["cluster"]["name"] for c in dump["static_clusters"]] == ["be"]


def test_two_envoys_run_side_by_side_and_restart(envoy_factory: EnvoyFactory) -> None:
    with HttpBackend("b") as backend:
        e1 = envoy_factory(static_proxy(0, backend.port), name="one")
        e2 = envoy_factory(static_proxy(0, backend.port), name="two")
        assert e1.base_id != e2.base_id
        assert e1.admin_url != e2.admin_url
        e1.restart()
        assert e1.is_live()
        assert e2.is_live()
        for p in (e1.listener_port("http"), e2.listener_port("http")):  # e1's anew
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=5) as resp:
                assert resp.read() == b"b"
