"""The bed's network: namespaces, a fabric bridge between nodes, a bridge per node, routes.

Address plan of bed ``i`` (``o = 120 + i``; beds never share an address or a namespace name)::

    fabric namespace  tb<i>-fab   bridge fab0 joining every node and the tailnet namespace
    node k            tb<i>-n<k>  eth0 10.o.255.(10+k)/24 on the fabric; bridge cbr0 10.o.k.1/24
    pod on node k     tb<i>-n<k>p<seq>  eth0 10.o.k.x/24, default route via 10.o.k.1
    tailnet           tb<i>-tn    eth0 10.o.255.2/24 (Headscale)
    tailnet device n  tb<i>-d<n>  eth0 10.o.255.(100+n)/24 (its tailscaled and test server)
    services          10.96.0.0/16 (inside each bed; beds are never connected to each other)

Nothing here has a route to the host or the outside world: the fabric is a bridge inside its own
namespace, and no interface of the bed lives in the host namespace. The test process reaches the
API server (and anything else) with :class:`Namespace.forward`: a host loopback port whose
connections are opened from inside a namespace with ``setns(2)``, like ``kubectl port-forward``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.netns import Namespace

STATE = Path("/run/tsgw-bed")
MAX_DEVICES = 150
"""Tailnet devices per bed (their fabric addresses are ``10.o.255.100`` to ``.249``)."""


def ip(*args: str, input: str | None = None) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, input=input)


def netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@dataclass(frozen=True)
class Plan:
    """Names and addresses of bed ``index`` with ``nodes`` nodes."""

    index: int
    nodes: int

    @property
    def prefix(self) -> str:
        return f"tb{self.index}"

    @property
    def octet(self) -> int:
        return 120 + self.index

    @property
    def fabric_ns(self) -> str:
        return f"{self.prefix}-fab"

    @property
    def tailnet_ns(self) -> str:
        return f"{self.prefix}-tn"

    @property
    def tailnet_ip(self) -> str:
        return f"10.{self.octet}.255.2"

    @property
    def cluster_cidr(self) -> str:
        return f"10.{self.octet}.0.0/16"

    def node_ns(self, k: int) -> str:
        return f"{self.prefix}-n{k}"

    def node_name(self, k: int) -> str:
        return f"bed{self.index}-node{k}"

    def node_ip(self, k: int) -> str:
        return f"10.{self.octet}.255.{10 + k}"

    def pod_cidr(self, k: int) -> str:
        return f"10.{self.octet}.{k}.0/24"

    def bridge_ip(self, k: int) -> str:
        return f"10.{self.octet}.{k}.1"

    def pod_ns_prefix(self, k: int) -> str:
        return f"{self.prefix}-n{k}p"

    def device_ns(self, n: int) -> str:
        return f"{self.prefix}-d{n}"

    def device_ip(self, n: int) -> str:
        if not 0 <= n < MAX_DEVICES:
            raise ValueError(f"a bed has at most {MAX_DEVICES} tailnet devices")
        return f"10.{self.octet}.255.{100 + n}"


def build(plan: Plan) -> dict[str, Namespace]:
    """Create every namespace, link and route of the plan; returns the namespaces by role."""
    o = plan.octet
    made: dict[str, Namespace] = {}

    def add(role: str, name: str) -> Namespace:
        ip("netns", "add", name)
        ns = made[role] = Namespace(name)
        ip("-n", name, "link", "set", "lo", "up")
        return ns

    try:
        fab = add("fabric", plan.fabric_ns)
        ip("-n", fab.name, "link", "add", "fab0", "type", "bridge")
        ip("-n", fab.name, "link", "set", "fab0", "up")

        def attach(ns: Namespace, port: str, address: str) -> None:
            ip("-n", ns.name, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", fab.name)
            ip("-n", fab.name, "link", "set", port, "master", "fab0", "up")
            ip("-n", ns.name, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns.name, "link", "set", "eth0", "up")

        routes = [(plan.pod_cidr(k), plan.node_ip(k)) for k in range(plan.nodes)]
        for k in range(plan.nodes):
            ns = add(f"node{k}", plan.node_ns(k))
            attach(ns, f"n{k}", plan.node_ip(k))
            ip("-n", ns.name, "link", "add", "cbr0", "type", "bridge")
            ip("-n", ns.name, "addr", "add", f"{plan.bridge_ip(k)}/24", "dev", "cbr0")
            ip("-n", ns.name, "link", "set", "cbr0", "up")
            ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            for cidr, via in routes:
                if cidr != plan.pod_cidr(k):
                    ip("-n", ns.name, "route", "add", cidr, "via", via)
        tn = add("tailnet", plan.tailnet_ns)
        attach(tn, "tn", plan.tailnet_ip)
        for cidr, via in routes:
            ip("-n", tn.name, "route", "add", cidr, "via", via)
        del o
    except Exception:
        sweep(plan.prefix)
        raise
    return made


def add_device(plan: Plan, n: int) -> Namespace:
    """A namespace of its own for tailnet device ``n``, on the fabric at :meth:`Plan.device_ip`.

    Each device has its own stack and loopback, so a server it runs answers only through that
    device's tailnet address. It reaches Headscale on the fabric and every pod CIDR through the
    nodes, as the tailnet namespace does; nothing else.
    """
    name, address = plan.device_ns(n), plan.device_ip(n)
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        port = f"d{n}"
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", plan.fabric_ns)
        ip("-n", plan.fabric_ns, "link", "set", port, "master", "fab0", "up")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        for k in range(plan.nodes):
            ip("-n", name, "route", "add", plan.pod_cidr(k), "via", plan.node_ip(k))
    except Exception:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        raise
    return Namespace(name)


def remove(ns: Namespace) -> None:
    """Kill what still runs in ``ns`` and delete it (its veth leaves the fabric with it)."""
    ns.close_forwards()
    for pid in ns.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", ns.name], capture_output=True)


def sweep(prefix: str) -> list[str]:
    """Kill every process in the bed's namespaces and delete them; returns what was deleted.

    Pod namespaces are made by the kubelets; this finds them by name, so it also cleans up after
    a kubelet that died.
    """
    names = [n for n in netns_list() if n.startswith(f"{prefix}-")]
    for name in names:
        out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
        for pid in out.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    # Pods first: deleting a pod namespace removes its veth from the node's bridge.
    for name in sorted(names, key=lambda n: ("p" not in n.rsplit("-", 1)[-1], n)):
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return names


def claim_index(owner: int) -> int:
    """The lowest free bed index; a bed whose owner died is swept and reused."""
    STATE.mkdir(parents=True, exist_ok=True)
    for i in range(0, 100):
        d = STATE / str(i)
        try:
            d.mkdir()
        except FileExistsError:
            try:
                pid = int((d / "owner").read_text())
                os.kill(pid, 0)
                continue
            except (FileNotFoundError, ValueError):
                continue  # being claimed right now
            except ProcessLookupError:
                sweep(f"tb{i}")
        (d / "owner").write_text(str(owner))
        return i
    raise RuntimeError("no free test bed index (0-99)")


def release_index(index: int) -> None:
    d = STATE / str(index)
    with contextlib.suppress(FileNotFoundError):
        (d / "owner").unlink()
    with contextlib.suppress(OSError):
        d.rmdir()
