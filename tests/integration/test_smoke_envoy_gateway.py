"""The Envoy Gateway fixture is real: it translates an HTTPRoute and its Envoy routes a request."""

from __future__ import annotations

import http.client

import pytest

from tests.support.backend import HttpBackend
from tests.support.envoy_gateway import EnvoyGateway
from tests.support.tailnet import wait_for

pytestmark = pytest.mark.integration


def _get(port: int, host: str, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_envoy_gateway_routes_an_httproute_to_a_backend(envoy_gateway: EnvoyGateway) -> None:
    with envoy_gateway.ns.entered():
        backend = HttpBackend("smoke-backend").start()  # listens inside Envoy Gateway's namespace
    try:
        envoy_gateway.write(
            "smoke.yaml",
            [
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "metadata": {"name": "smoke", "namespace": "default"},
                    "spec": {
                        "gatewayClassName": "eg",
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 8888}],
                    },
                },
                {
                    "apiVersion": "gateway.envoyproxy.io/v1alpha1",
                    "kind": "Backend",
                    "metadata": {"name": "smoke-backend", "namespace": "default"},
                    "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": backend.port}}]},
                },
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "HTTPRoute",
                    "metadata": {"name": "smoke", "namespace": "default"},
                    "spec": {
                        "parentRefs": [{"name": "smoke"}],
                        "hostnames": ["smoke.example"],
                        "rules": [
                            {
                                "backendRefs": [
                                    {
                                        "group": "gateway.envoyproxy.io",
                                        "kind": "Backend",
                                        "name": "smoke-backend",
                                        "port": backend.port,
                                    }
                                ]
                            }
                        ],
                    },
                },
            ],
        )
        port = envoy_gateway.gateway_port(8888)

        def routed() -> bytes | None:
            status, body = _get(port, "smoke.example")
            return body if status == 200 else None

        assert wait_for(routed, timeout=60) == b"smoke-backend"
        assert backend.requests >= 1
        # A host the route does not match gets Envoy's 404, so the answer above came through the route.
        assert _get(port, "other.example")[0] == 404
    finally:
        backend.stop()
