"""Real Envoy 1.40 runs what translate produces: egress through an HTTP CONNECT proxy (the role
tailscaled's outbound proxy plays in a proxy pod) with priorities, retries and passive ejection;
ingress behind a PROXY protocol v2 header (what tailscaled's serve sends) with HTTP rules and
tailnet-identity access rules.

The resources are served statically (EDS and RDS inlined) so this test pins the translation, not
the xDS server, which has its own tests against Envoy.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from tests.support.backend import HttpBackend
from tests.support.envoy import EnvoyFactory
from tests.support.process import refusing_port
from tsgw.translate import Device, Inputs, Options, TailnetFacts, XdsResources, translate

pytestmark = pytest.mark.integration

API = "gateway.tailscale.com/v1alpha1"
TAILNET = {
    "apiVersion": API,
    "kind": "TailscaleTailnet",
    "metadata": {"name": "corp"},
    "spec": {"credentials": {"secretRef": {"namespace": "x", "name": "y"}, "apiKey": {}}},
}


class ConnectProxy:
    """A minimal HTTP/1.1 CONNECT proxy on loopback that records the targets it was asked for."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                line = head.split(b"\r\n", 1)[0].decode()
                method, target, _ = line.split(" ", 2)
                if method != "CONNECT":
                    conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    return
                proxy.targets.append(target)
                host, port = target.rsplit(":", 1)
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
                except OSError:
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                    return
                with upstream:
                    conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    rest = head.split(b"\r\n\r\n", 1)[1]
                    if rest:
                        upstream.sendall(rest)
                    _pipe(conn, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    t = threading.Thread(target=copy, args=(b, a), daemon=True)
    t.start()
    copy(a, b)
    t.join(5)


def _plain(msg: Any) -> dict[str, Any]:
    return json.loads(json_format.MessageToJson(msg, preserving_proto_field_name=True))  # type: ignore[no-any-return]


def static_bootstrap(res: XdsResources) -> dict[str, Any]:
    """The translated resources as a static bootstrap: EDS and RDS inlined."""
    clas = {c.cluster_name: c for c in res.endpoints}
    routes = {r.name: r for r in res.routes}
    clusters = []
    for c in res.clusters:
        s = cluster_pb2.Cluster()
        s.CopyFrom(c)
        s.ClearField("eds_cluster_config")
        s.type = cluster_pb2.Cluster.STATIC
        s.load_assignment.CopyFrom(clas[c.name])
        clusters.append(_plain(s))
    listeners = []
    for li in res.listeners:
        copy = type(li)()
        copy.CopyFrom(li)
        for chain in copy.filter_chains:
            for f in chain.filters:
                if f.typed_config.type_url.endswith("HttpConnectionManager"):
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    name = hcm.rds.route_config_name
                    hcm.ClearField("rds")
                    hcm.route_config.CopyFrom(routes[name])
                    f.typed_config.Pack(hcm)
        listeners.append(_plain(copy))
    return {"static_resources": {"clusters": clusters, "listeners": listeners}}


def http_get(port: int, path: str = "/", headers: dict[str, str] | None = None, preamble: bytes = b"") -> str:
    """One HTTP/1.1 request on a fresh connection; returns 'status body' or '' if closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        lines = [f"GET {path} HTTP/1.1", "Host: test", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(preamble + ("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data:
        return ""
    status = data.split(b"\r\n", 1)[0].split(b" ")[1].decode()
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    return f"{status} {body}"


def proxy_v2(src: str, dst: str = "100.100.0.10", sport: int = 40000, dport: int = 80) -> bytes:
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addr)) + addr


def eventually(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def backends() -> Iterator[tuple[HttpBackend, HttpBackend]]:
    with HttpBackend("one") as a, HttpBackend("two") as b:
        yield a, b


def test_egress_reaches_targets_through_the_connect_proxy_and_fails_over_by_priority(
    envoy_factory: EnvoyFactory, backends: tuple[HttpBackend, HttpBackend]
) -> None:
    one, two = backends
    # The priority-0 target is down: a port bound by this process that never listens (refuses,
    # and nothing else can take it). Envoy's listeners bind port 0 and are read back.
    with refusing_port() as dead, ConnectProxy() as proxy:
        options = Options(connect_proxy_port=proxy.port)
        endpoints = {
            "apiVersion": API,
            "kind": "TailscaleEndpoints",
            "metadata": {"name": "api", "namespace": "apps"},
            "spec": {
                "tailnetRef": {"name": "corp"},
                "targets": [
                    {
                        "name": "primary",
                        "address": "127.0.0.1",
                        "ports": [{"port": 80, "protocol": "HTTP", "targetPort": dead}],
                    },
                    {
                        "name": "standby",
                        "address": "backend-two",
                        "priority": 1,
                        "ports": [{"port": 80, "protocol": "HTTP", "targetPort": two.port}],
                    },
                    {"name": "raw", "address": "127.0.0.1", "ports": [{"port": 81, "targetPort": one.port}]},
                ],
                "failover": {"consecutiveFailures": 1, "ejectionTime": "60s", "interval": "1s", "retries": 1},
            },
        }
        facts = TailnetFacts(devices=(Device("backend-two.tail.ts.net", ("127.0.0.1",)),))
        result = translate(Inputs(objects=[TAILNET, endpoints], tailnets={"corp": facts}), options)
        (res,) = result.xds.values()
        boot = static_bootstrap(res)
        for li in boot["static_resources"]["listeners"]:
            li["address"]["socket_address"]["port_value"] = 0
        envoy = envoy_factory(boot, name="egress")
        listen, tcp_listen = envoy.listener_port("egress-80"), envoy.listener_port("egress-81")
        # The first request meets the dead target; its retry goes to the next tier (previous
        # priorities), so the caller sees success; the dead target is then ejected.
        assert http_get(listen) == "200 two"
        assert proxy.targets.count(f"127.0.0.1:{two.port}") >= 1
        assert proxy.targets.count(f"127.0.0.1:{dead}") >= 1, proxy.targets
        # Envoy ejects on its main thread and posts the new host health to its workers: wait
        # for the ejection (a request sent before it may still try the dead target first).
        ejected = "cluster.egress/apps/api/80.outlier_detection.ejections_active"
        eventually(lambda: envoy.stats().get(ejected, 0) >= 1, "the dead target ejected")
        # Once ejected, the dead target is never dialled again (ejection time 60 s).
        dials = proxy.targets.count(f"127.0.0.1:{dead}")
        answers = [http_get(listen) for _ in range(5)]
        assert answers == ["200 two"] * 5
        assert proxy.targets.count(f"127.0.0.1:{dead}") == dials, proxy.targets
        # TCP: the tcp_proxy listener's upstream is also dialled through CONNECT.
        assert http_get(tcp_listen) == "200 one"
        assert f"127.0.0.1:{one.port}" in proxy.targets


def test_ingress_routes_by_rule_and_enforces_tailnet_identity_behind_proxy_protocol(
    envoy_factory: EnvoyFactory, backends: tuple[HttpBackend, HttpBackend]
) -> None:
    one, two = backends
    services = {
        "apiVersion": API,
        "kind": "TailscaleServices",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "ports": [{"port": 80, "protocol": "HTTP", "targetPort": "http"}],
            "backends": [{"service": "web-v1"}, {"service": "web-v2"}],
            "http": {
                "rules": [
                    {"pathPrefix": "/v2/", "services": ["web-v2"]},
                    {"pathPrefix": "/", "services": ["web-v1"]},
                ]
            },
        },
    }
    policy = {
        "apiVersion": API,
        "kind": "TailscaleRoutePolicy",
        "metadata": {"name": "access", "namespace": "apps"},
        "spec": {
            "targetRefs": [{"kind": "TailscaleServices", "name": "web"}],
            "access": {
                "defaultAction": "Deny",
                "rules": [
                    {"action": "Deny", "tags": ["tag:contractor"]},
                    {"action": "Allow", "cidrs": ["100.64.0.0/16"]},
                ],
            },
            "requestHeaders": {"set": [{"name": "x-via", "value": "tsgw"}]},
        },
    }
    svcs = [
        {"metadata": {"name": n, "namespace": "apps"}, "spec": {"ports": [{"name": "http", "port": 8080}]}}
        for n in ("web-v1", "web-v2")
    ]
    slices = [
        {
            "metadata": {"name": f"{n}-1", "namespace": "apps", "labels": {"kubernetes.io/service-name": n}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": b.port}],
            "endpoints": [{"addresses": ["127.0.0.1"]}],
        }
        for n, b in (("web-v1", one), ("web-v2", two))
    ]
    # What the operator publishes once it made svc:web for this object: every condition is True.
    facts = TailnetFacts(
        devices=(Device("contractor.tail.ts.net", ("100.64.2.9",), ("tag:contractor",)),),
        services={"svc:web": ("100.100.0.5",)},
        claims={"svc:web": ("TailscaleServices/apps/web",)},
    )
    result = translate(
        Inputs(
            objects=[TAILNET, services, policy],
            services=svcs,
            endpoint_slices=slices,
            tailnets={"corp": facts},
        ),
        Options(first_listener_port=10080),
    )
    assert all(c.status for s in result.model.statuses for c in s.conditions), result.model.statuses
    (res,) = result.xds.values()
    boot = static_bootstrap(res)
    for li in boot["static_resources"]["listeners"]:
        if "socket_address" in li["address"]:
            li["address"]["socket_address"]["port_value"] = 0  # bound by Envoy, read back
    (listen,) = envoy_factory(boot, name="ingress").listener_ports().values()
    alice = proxy_v2("100.64.0.5")
    assert eventually(lambda: http_get(listen, "/", preamble=alice) == "200 one", "route / to web-v1")
    assert http_get(listen, "/v2/x", preamble=alice) == "200 two"
    # The first matching rule denies a contractor even though 100.64.0.0/16 would allow it.
    assert http_get(listen, "/", preamble=proxy_v2("100.64.2.9")) == ""
    # Outside every rule: the default action denies.
    assert http_get(listen, "/", preamble=proxy_v2("100.99.0.1")) == ""
