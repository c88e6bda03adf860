"""The bed's tailnet: Headscale (embedded DERP) in the tailnet namespace, and tailnet devices.

The tailnet namespace sits on the bed's fabric (``10.o.255.2``), so pods reach Headscale at
``http://10.o.255.2:8080`` through their node; nothing of it reaches the host or the world.
Headscale is :class:`tests.support.tailnet.Tailnet` run in that namespace.

Each device is independent, like a separate machine on the tailnet: a namespace of its own on the
fabric (``tb<i>-d<n>``, ``10.o.255.(100+n)``) holding a userspace tailscaled (driven through its
unix socket, dialling through its SOCKS5 server) and the bed's test server
(:mod:`tests.bed.backend`, answering with the device's name on HTTP :8080, gRPC :50051 and raw
TCP :9000). tailscaled's userspace stack hands connections to its tailnet address to the
device's own loopback, so device A's server answers through A's tailnet address only.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.bed import _topology
from tests.bed._images import ROOT
from tests.bed._topology import Plan
from tests.support.process import Process
from tests.support.tailnet import Node, Tailnet, socks5_exchange
from tools.netns import Namespace
from tools.tailnet import TAILSCALED_ENV
from tools.testbin import bin_path

SOCKS_PORT = 1080
"""A device's SOCKS5 server, on the loopback of its own namespace."""
SERVER_HTTP_PORT = 8080
SERVER_GRPC_PORT = 50051
SERVER_TCP_PORT = 9000
"""The device's test server: ``GET /`` on HTTP, ``/bed.Echo/Name`` on gRPC, and raw TCP each
answer with the device's name (raw TCP: ``<name>\\n``)."""


@dataclass
class BedDevice(Node):
    """A tailnet device of the bed: tailscaled and a test server in a namespace of its own."""

    ns: Namespace | None = None
    server: Process | None = None
    address: str = ""
    """The device's address on the bed's fabric (not its tailnet address: see :meth:`ip4`)."""

    def dial(self, host: str, port: int, send: bytes = b"", timeout: float = 10) -> bytes:
        """Connect to ``host:port`` over the tailnet through this device's SOCKS5 server; send
        ``send``, then read until the server closes."""
        assert self.ns is not None
        return socks5_exchange(self.ns, SOCKS_PORT, host, port, send, timeout)

    @property
    def processes(self) -> list[Process]:
        return [p for p in (self.process, self.server) if p is not None]


class BedTailnet(Tailnet):
    """Headscale on the bed's tailnet namespace address, and independent devices."""

    nodes: list[BedDevice]  # type: ignore[assignment]

    def __init__(
        self, workdir: Path, ns: Namespace, address: str, plan: Plan, tuning: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(workdir, ns, address, tuning=tuning)
        self.plan = plan

    def preauth_key_for(self, user: str = "bed") -> str:
        """A reusable key of ``user``, made on first use."""
        users = self.headscale_cli("users", "list") or []
        uid = next((u["id"] for u in users if u["name"] == user), None)
        return self.preauth_key(int(uid) if uid is not None else self.create_user(user))

    def device(self, name: str, auth_key: str) -> BedDevice:
        """A new device joined with ``auth_key``: its own namespace, a userspace tailscaled with
        SOCKS5 (for :meth:`BedDevice.dial`) and the test server answering with ``name``.
        Returns once the server listens and the device has a tailnet address."""
        n = len(self.nodes)
        d = self.dir / "nodes" / name
        d.mkdir(parents=True, exist_ok=True)
        ns = _topology.add_device(self.plan, n)
        device = BedDevice(name, d, None, self, ns=ns, address=self.plan.device_ip(n))  # type: ignore[arg-type]
        self.nodes.append(device)  # listed before anything starts: close() cleans up after a failure
        device.server = Process(
            f"device-server-{name}",
            [sys.executable, "-m", "tests.bed.backend"],
            d / "server.log",
            env={
                "POD_NAME": name,
                "PYTHONPATH": str(ROOT),
                "HTTP_PORT": str(SERVER_HTTP_PORT),
                "GRPC_PORT": str(SERVER_GRPC_PORT),
                "TCP_PORT": str(SERVER_TCP_PORT),
            },
            cwd=ROOT,
            netns=ns.name,
        )
        device.process = Process(
            f"tailscaled-{name}",
            [
                bin_path("tailscaled"),
                "--tun=userspace-networking",
                f"--statedir={d / 'state'}",
                f"--socket={device.socket}",
                "--port=0",
                "--no-logs-no-support",
                f"--socks5-server=127.0.0.1:{SOCKS_PORT}",
            ],
            d / "tailscaled.log",
            env=TAILSCALED_ENV,
            netns=ns.name,
        )
        device.process.wait_ready(device.socket.exists, timeout=20, what="listening on its socket")
        device.server.wait_ready(
            lambda: _listening(ns, SERVER_TCP_PORT),
            timeout=30,
            what="test server listening",
        )
        device.up(auth_key)
        device.process.wait_ready(lambda: bool(device.ip4()), timeout=30, what="given a tailnet address")
        return device

    def stop_nodes(self) -> None:
        for device in self.nodes:
            for p in device.processes:
                p.stop(timeout=5)
            if device.ns is not None:
                _topology.remove(device.ns)


def _listening(ns: Namespace, port: int) -> bool:
    with ns.connect("127.0.0.1", port, timeout=0.5):
        return True
