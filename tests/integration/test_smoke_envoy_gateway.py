"""The Envoy Gateway fixture is real: it translates an HTTPRoute and its Envoy routes a request."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

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


def test_envoy_gateway_dials_an_extension_server_on_host_loopback(tmp_path: Path) -> None:
    # A bare TCP listener stands where tsgw's extension server will: EG must open a gRPC (HTTP/2)
    # connection to it when a route names a backend resource registered with the extension manager.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(90)
    extension = {
        "backendResources": [
            {"group": "gateway.tailscale.com", "version": "v1alpha1", "kind": "TailscaleEndpoints"}
        ],
        "hooks": {"xdsTranslator": {"post": ["Cluster", "Translation"]}},
        "service": {"fqdn": {"hostname": "127.0.0.1", "port": listener.getsockname()[1]}},
        "failOpen": True,
    }
    eg = EnvoyGateway(tmp_path / "eg", extension=extension)
    try:
        eg.write(
            "ext.yaml",
            [
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "metadata": {"name": "ext", "namespace": "default"},
                    "spec": {
                        "gatewayClassName": "eg",
                        "listeners": [{"name": "http", "protocol": "HTTP", "port": 8889}],
                    },
                },
                {
                    "apiVersion": "gateway.tailscale.com/v1alpha1",
                    "kind": "TailscaleEndpoints",
                    "metadata": {"name": "tailnet-db", "namespace": "default"},
                    "spec": {},
                },
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "HTTPRoute",
                    "metadata": {"name": "ext", "namespace": "default"},
                    "spec": {
                        "parentRefs": [{"name": "ext"}],
                        "rules": [
                            {
                                "backendRefs": [
                                    {
                                        "group": "gateway.tailscale.com",
                                        "kind": "TailscaleEndpoints",
                                        "name": "tailnet-db",
                                    }
                                ]
                            }
                        ],
                    },
                },
            ],
        )
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            assert conn.recv(24) == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # the HTTP/2 preface gRPC opens with
    finally:
        eg.close()
        listener.close()
