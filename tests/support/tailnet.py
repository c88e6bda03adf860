"""A real tailnet in a network namespace: Headscale (sqlite, embedded DERP) and N tailscaled.

Everything runs inside one :class:`~tests.support.netns.NetNS`, so tailscaled's captive-portal
probes and fallback DERP lookups have nowhere to go. Headscale serves plain HTTP on
``127.0.0.1:8080`` inside; tailscaled gets ``TS_DEBUG_USE_DERP_HTTP=1`` so it dials the embedded
DERP over HTTP. The test process reaches Headscale's REST API through a forwarded host port
(:attr:`Tailnet.api_url`) and drives each tailscaled through its unix socket (unix sockets are not
confined by network namespaces).
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.netns import Namespace, NetNS
from tests.support.process import NotReady, Process
from tools.tailnet import HEADSCALE_PORT, TAILSCALED_ENV, headscale_config
from tools.testbin import bin_path

SOCKS_BASE = 1080
"""First SOCKS5 port of a namespace's nodes (node n listens on ``SOCKS_BASE + n`` inside)."""


@dataclass
class Node:
    """One tailscaled in the tailnet's namespace."""

    name: str
    dir: Path
    process: Process
    tailnet: TailscaledNodes
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.dir / "tailscaled.sock"

    def cli(self, *args: str, timeout: float = 30, input: bytes | None = None) -> bytes:
        """Run the tailscale CLI against this node; returns stdout, raises with stderr on failure."""
        proc = subprocess.run(
            [str(bin_path("tailscale")), f"--socket={self.socket}", *args],
            input=input,
            capture_output=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"tailscale {' '.join(args)} on {self.name}: {proc.stderr.decode()}")
        return proc.stdout

    def exchange(self, ip: str, port: int, payload: bytes, timeout: float = 30) -> bytes:
        """Send ``payload`` to ``ip:port`` through this node (``tailscale nc``); return as many
        bytes as were sent, read back from the connection, before closing it."""
        proc = subprocess.Popen(
            [str(bin_path("tailscale")), f"--socket={self.socket}", "nc", ip, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(payload)
            proc.stdin.flush()
            got = b""
            deadline = time.monotonic() + timeout
            while len(got) < len(payload) and time.monotonic() < deadline:
                if not select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    break
                chunk = proc.stdout.read1(65536)
                if not chunk:
                    break
                got += chunk
            return got
        finally:
            proc.kill()
            proc.wait(5)
            proc.stdin.close()
            proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()

    def dial(self, host: str, port: int, send: bytes = b"", timeout: float = 10) -> bytes:
        """Connect to ``host:port`` over the tailnet through this node's SOCKS5 server (start it
        with ``socks5=True``); send ``send``, then read until the server closes."""
        return socks5_exchange(self.tailnet.ns, int(self.extra["socks5"]), host, port, send, timeout)

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json"))  # type: ignore[no-any-return]

    def ip4(self) -> str:
        return self.cli("ip", "-4").decode().strip()

    def up(self, auth_key: str, *flags: str) -> None:
        self.cli(
            "up",
            f"--login-server={self.tailnet.url}",
            f"--auth-key={auth_key}",
            f"--hostname={self.name}",
            "--accept-dns=false",
            *flags,
            timeout=60,
        )


def socks5_exchange(
    ns: Namespace, socks_port: int, host: str, port: int, send: bytes = b"", timeout: float = 5.0
) -> bytes:
    """Send ``send`` to ``host:port`` through a SOCKS5 server, then read until the server closes."""
    with socks5_connect(ns, socks_port, host, port, timeout) as s:
        if send:
            s.sendall(send)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def socks5_connect(
    ns: Namespace, socks_port: int, host: str, port: int, timeout: float = 5.0
) -> socket.socket:
    """A TCP stream to ``host:port`` through a node's SOCKS5 server (``--socks5-server``).

    ``host`` may be a tailnet IP, a VIP or a MagicDNS name (tailscaled resolves it). Raises
    ``OSError`` when the SOCKS server reports a failure.
    """
    s = ns.connect("127.0.0.1", socks_port, timeout=timeout)
    try:
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            raise OSError("SOCKS5: no acceptable auth method")
        try:
            addr = ipaddress.ip_address(host)
            atyp = b"\x01" if addr.version == 4 else b"\x04"
            dst = atyp + addr.packed
        except ValueError:
            dst = b"\x03" + bytes([len(host)]) + host.encode()
        s.sendall(b"\x05\x01\x00" + dst + struct.pack(">H", port))
        head = recv_exact(s, 4)
        if head[1] != 0:
            raise OSError(f"SOCKS5 connect to {host}:{port} failed: reply {head[1]}")
        alen = {1: 4, 4: 16}.get(head[3]) or recv_exact(s, 1)[0]
        recv_exact(s, alen + 2)
        return s
    except BaseException:
        s.close()
        raise


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


class TailscaledNodes:
    """tailscaled nodes in one private namespace, joined to the control server at :attr:`url`.

    The part every test tailnet shares, whatever serves the control protocol (Headscale here,
    tailscale's testcontrol in :mod:`tests.support.tailnet_box`).
    """

    dir: Path
    ns: Namespace
    url: str
    """The control server's URL as seen from inside the namespace (``--login-server``)."""
    nodes: list[Node]

    def start_node(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        socks5: bool = False,
    ) -> Node:
        """Start a userspace tailscaled (not yet joined) inside the namespace.

        ``socks5`` also runs its SOCKS5 server inside the namespace, for :meth:`Node.dial`.
        """
        extra = {"socks5": str(SOCKS_BASE + len(self.nodes))} if socks5 else {}
        if socks5:
            args = [*args, f"--socks5-server=127.0.0.1:{extra['socks5']}"]
        d = self.dir / "nodes" / name
        d.mkdir(parents=True, exist_ok=True)
        sock = d / "tailscaled.sock"
        proc = Process(
            f"tailscaled-{name}",
            [
                bin_path("tailscaled"),
                "--tun=userspace-networking",
                f"--statedir={d / 'state'}",
                f"--socket={sock}",
                "--port=0",
                "--no-logs-no-support",
                *args,
            ],
            d / "tailscaled.log",
            env={**TAILSCALED_ENV, **(env or {})},
            netns=self.ns.name,
        )
        proc.wait_ready(sock.exists, timeout=20, what="listening on its socket")
        node = Node(name, d, proc, self, extra)
        self.nodes.append(node)
        return node

    def join(
        self, name: str, auth_key: str, *flags: str, args: Sequence[str] = (), socks5: bool = False
    ) -> Node:
        """Start a tailscaled and bring it up with ``auth_key``; returns once it has an address."""
        node = self.start_node(name, args=args, socks5=socks5)
        node.up(auth_key, *flags)
        node.process.wait_ready(lambda: bool(node.ip4()), timeout=30, what="given a tailnet address")
        return node

    def wait_peers(self, node: Node, count: int, timeout: float = 30) -> None:
        """Wait until ``node`` sees ``count`` peers online."""

        def ready() -> bool:
            peers = (node.status().get("Peer") or {}).values()
            return sum(1 for p in peers if p.get("Online")) >= count

        node.process.wait_ready(ready, timeout=timeout, what=f"seeing {count} peers online")

    def stop_nodes(self) -> None:
        for node in self.nodes:
            node.process.stop(timeout=5)


class Tailnet(TailscaledNodes):
    """Headscale plus tailscaled nodes in one private namespace. Call :meth:`close` when done."""

    def __init__(
        self,
        workdir: Path,
        ns: Namespace | None = None,
        address: str = "127.0.0.1",
        *,
        policy_mode: str = "file",
        tuning: Mapping[str, str] | None = None,
    ) -> None:
        """Without ``ns``, make a private namespace (deleted by :meth:`close`); with one (the
        Kubernetes bed's tailnet namespace), run there and serve on ``address``. ``policy_mode``
        ``database``: the policy is set through the API; ``tuning``: Headscale's ``tuning:``
        section (both: see ``headscale_config``)."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._owned = NetNS(prefix="tsgw-tailnet") if ns is None else None
        self.ns = self._owned or ns  # type: ignore[assignment]
        self.address = address
        self.nodes = []
        listen = f"{address}:{HEADSCALE_PORT}"
        self.url = f"http://{listen}"  # as seen from inside the namespace
        cfg = self.dir / "headscale.yaml"
        cfg.write_text(yaml.safe_dump(headscale_config(self.dir, listen, policy_mode, tuning)))
        self.config = cfg
        self.headscale = Process(
            "headscale",
            [bin_path("headscale"), "serve", "-c", cfg],
            self.dir / "headscale.log",
            netns=self.ns.name,
        )
        try:
            self.headscale.wait_ready(self._healthy, timeout=30, what="healthy")
        except NotReady:
            self.close()
            raise
        self.api_port = self.ns.forward(HEADSCALE_PORT, address)
        self.api_url = f"http://127.0.0.1:{self.api_port}"

    def _healthy(self) -> bool:
        with self.ns.connect(self.address, HEADSCALE_PORT, timeout=0.5) as s:
            s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
            return b" 200 " in s.recv(128).split(b"\r\n", 1)[0]

    def headscale_cli(self, *args: str) -> Any:
        """Run ``headscale ARGS -o json`` against this server (over its unix socket)."""
        out = subprocess.run(
            [str(bin_path("headscale")), "-c", str(self.config), *args, "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return json.loads(out) if out.strip() else None

    def create_user(self, name: str = "tests") -> int:
        return int(self.headscale_cli("users", "create", name)["id"])

    def preauth_key(
        self, user: int, *, reusable: bool = True, ephemeral: bool = False, tags: Sequence[str] = ()
    ) -> str:
        args = ["preauthkeys", "create", "--user", str(user), "--expiration", "1h"]
        if reusable:
            args.append("--reusable")
        if ephemeral:
            args.append("--ephemeral")
        if tags:
            args += ["--tags", ",".join(tags)]
        return str(self.headscale_cli(*args)["key"])

    def api_key(self) -> str:
        """A Headscale API key for its REST API (``Authorization: Bearer``)."""
        out = subprocess.run(
            [str(bin_path("headscale")), "-c", str(self.config), "apikeys", "create", "--expiration", "1h"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return out.strip().splitlines()[-1]

    def close(self) -> None:
        self.stop_nodes()
        self.headscale.stop(timeout=10)
        if self._owned:
            self._owned.delete()
        else:
            self.ns.close_forwards()


def wait_for(check: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout} s (last error: {last!r})")
