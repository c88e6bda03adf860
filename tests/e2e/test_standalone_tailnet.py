"""Standalone mode with a real tailnet: the egress route of examples/standalone reaches an HTTP
server on a tailscaled node, through Envoy's tunnel to another node's HTTP CONNECT proxy
(``--outbound-http-proxy-listen``) and a real WireGuard connection between the two nodes.

Headscale, both tailscaled and the egress Envoy run in the tailnet's private network namespace
(as the proxy pod's containers share a pod's); tsgw runs on the host, and the Envoy reaches its
xDS port through a reverse port-forward.
"""

from __future__ import annotations

import itertools
import re
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.standalone import EGRESS_GROUP, ROOT, Tsgw, copy_example, envoy_bootstrap, wait_until
from tests.support.backend import HttpBackend
from tests.support.netns import NetNS
from tests.support.process import Process
from tests.support.tailnet import Tailnet
from tools.testbin import bin_path

pytestmark = pytest.mark.e2e

_names = itertools.count()


def _port_inside(tailnet: Tailnet) -> int:
    """A port for tailscaled's CONNECT proxy inside the tailnet's own namespace (NetNS.port: a
    free port picked there by bind(0) could go to one of the namespace's own connections)."""
    assert isinstance(tailnet.ns, NetNS), "the tailnet fixture owns its namespace"
    return tailnet.ns.port()


def _fetch(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5) as r:
            return int(r.status), r.read().decode()
    except OSError as e:
        return 0, str(e)


def test_egress_reaches_a_server_on_a_tailscaled_node_over_the_tailnet(
    tailnet: Tailnet, tmp_path: Path
) -> None:
    n = next(_names)
    user = tailnet.create_user(f"standalone-{n}")
    key = tailnet.preauth_key(user)
    connect_port = _port_inside(tailnet)
    proxy = tailnet.join(
        f"sa-proxy-{n}", key, args=[f"--outbound-http-proxy-listen=127.0.0.1:{connect_port}"]
    )
    device = tailnet.join(f"sa-device-{n}", key)
    tailnet.wait_peers(proxy, 1)
    device_ip = device.ip4()
    with tailnet.ns.entered():  # the device's server: inside the namespace, not on the host
        server = HttpBackend("tailnet-device", host="0.0.0.0").start()
    envoy: Process | None = None
    tsgw: Tsgw | None = None
    try:
        folder = copy_example(tmp_path / "standalone", 1, 2)  # ingress backends unused here
        egress = folder / "egress.yaml"
        doc = yaml.safe_load(egress.read_text())
        assert doc["spec"]["targets"][0]["address"] == "100.64.0.2"  # what the example says
        text = egress.read_text().replace("address: 100.64.0.2", f"address: {device_ip}")
        text = re.sub(r"targetPort: 8000", f"targetPort: {server.port}", text)
        egress.write_text(text)

        listener_port = _port_inside(tailnet)
        tsgw = Tsgw(folder, tmp_path, listener_port=listener_port, connect_proxy_port=connect_port)
        xds_inside = tailnet.ns.expose_host_port(tsgw.xds_port)
        config = envoy_bootstrap(EGRESS_GROUP, "tailnet-echo-0", xds_inside, egress=True)
        cfg = tmp_path / "envoy-egress.yaml"
        cfg.write_text(yaml.safe_dump(config))
        envoy = Process(
            "envoy-egress",
            [
                bin_path("envoy"),
                "-c",
                cfg,
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--admin-address-path",
                tmp_path / "envoy-egress.admin",
            ],
            tmp_path / "envoy-egress.log",
            netns=tailnet.ns.name,
        )
        port = tailnet.ns.forward(listener_port)
        assert wait_until(lambda: _fetch(port) == (200, "tailnet-device"), timeout=60)
        assert server.requests >= 1
        # The connection crossed the tailnet: the proxy node sent bytes to the device's address.
        peers = proxy.status().get("Peer") or {}
        to_device = [p for p in peers.values() if device_ip in (p.get("TailscaleIPs") or [])]
        assert to_device
        assert to_device[0].get("TxBytes", 0) > 0
        # `tsgw status` shows the egress Envoy in sync.
        status = tsgw.status()
        assert "tailnet-echo-0" in status
        assert "NACKED" not in status
    finally:
        if envoy is not None:
            envoy.stop()
        if tsgw is not None:
            tsgw.stop()
        server.stop()
        for node in (device, proxy):
            node.cli("logout", timeout=30)
            node.process.stop(timeout=5)
            tailnet.nodes.remove(node)


def test_egress_fails_over_to_the_standby_device_when_the_primary_stops_answering(
    tailnet: Tailnet, tmp_path: Path
) -> None:
    n = next(_names)
    user = tailnet.create_user(f"standalone-{n}")
    key = tailnet.preauth_key(user)
    connect_port = _port_inside(tailnet)
    proxy = tailnet.join(
        f"sa-proxy-{n}", key, args=[f"--outbound-http-proxy-listen=127.0.0.1:{connect_port}"]
    )
    first = tailnet.join(f"sa-first-{n}", key)
    second = tailnet.join(f"sa-second-{n}", key)
    tailnet.wait_peers(proxy, 2)
    # Each device's service is its own process (as on a real device), so stopping it closes
    # every connection to it too, not only its listening socket.
    primary_port, standby_port = _port_inside(tailnet), _port_inside(tailnet)
    primary, standby = (
        Process(
            f"{name}-device",
            [sys.executable, "-m", "tools.standalone", "backend", f"{name}-device", str(p), "0.0.0.0"],
            tmp_path / f"{name}-device.log",
            netns=tailnet.ns.name,
            cwd=ROOT,
        )
        for name, p in (("primary", primary_port), ("standby", standby_port))
    )
    envoy: Process | None = None
    tsgw: Tsgw | None = None
    try:
        folder = copy_example(tmp_path / "standalone", 1, 2)
        (folder / "egress.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "gateway.tailscale.com/v1alpha1",
                    "kind": "TailscaleEndpoints",
                    "metadata": {"name": "tailnet-echo", "namespace": "demo"},
                    "spec": {
                        "tailnetRef": {"name": "demo"},
                        "targets": [
                            {
                                "name": "primary",
                                "address": first.ip4(),
                                "ports": [{"port": 8080, "protocol": "HTTP", "targetPort": primary_port}],
                            },
                            {
                                "name": "standby",
                                "address": second.ip4(),
                                "priority": 1,
                                "ports": [{"port": 8080, "protocol": "HTTP", "targetPort": standby_port}],
                            },
                        ],
                    },
                }
            )
        )
        listener_port = _port_inside(tailnet)
        tsgw = Tsgw(folder, tmp_path, listener_port=listener_port, connect_proxy_port=connect_port)
        xds_inside = tailnet.ns.expose_host_port(tsgw.xds_port)
        cfg = tmp_path / "envoy-egress.yaml"
        cfg.write_text(
            yaml.safe_dump(envoy_bootstrap(EGRESS_GROUP, "tailnet-echo-0", xds_inside, egress=True))
        )
        envoy = Process(
            "envoy-egress",
            [bin_path("envoy"), "-c", cfg, "--disable-hot-restart", "--concurrency", "1"],
            tmp_path / "envoy-egress.log",
            netns=tailnet.ns.name,
        )
        port = tailnet.ns.forward(listener_port)
        assert wait_until(lambda: _fetch(port) == (200, "primary-device: /hello\n"), timeout=60)

        primary.stop()  # the primary device stays on the tailnet; its service stops answering
        assert wait_until(lambda: _fetch(port) == (200, "standby-device: /hello\n"), timeout=60)
        assert [_fetch(port) for _ in range(10)] == [(200, "standby-device: /hello\n")] * 10
    finally:
        if envoy is not None:
            envoy.stop()
        if tsgw is not None:
            tsgw.stop()
        primary.stop()
        standby.stop()
        for node in (second, first, proxy):
            node.cli("logout", timeout=30)
            node.process.stop(timeout=5)
            tailnet.nodes.remove(node)
