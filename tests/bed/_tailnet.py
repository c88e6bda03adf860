"""The bed's tailnet: Headscale (embedded DERP) and tailnet devices in the tailnet namespace.

The namespace sits on the bed's fabric (``10.o.255.2``), so pods reach Headscale at
``http://10.o.255.2:8080`` through their node; nothing of it reaches the host or the world.
Headscale's config and tailscaled's test environment come from ``tests.support.tailnet``; each
device is a userspace tailscaled driven through its unix socket (``tests.support.tailnet.Node``).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.bed._topology import Namespace
from tests.support.process import Process
from tests.support.tailnet import TAILSCALED_ENV, Node, headscale_config
from tools.testbin import bin_path

PORT = 8080
SOCKS_BASE = 1080


class BedTailnet:
    def __init__(self, workdir: Path, ns: Namespace, address: str) -> None:
        self.dir, self.ns, self.address = workdir, ns, address
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"http://{address}:{PORT}"
        self.config = self.dir / "headscale.yaml"
        self.config.write_text(yaml.safe_dump(headscale_config(self.dir, f"{address}:{PORT}")))
        self.nodes: list[Node] = []
        self.headscale = Process(
            "headscale",
            [bin_path("headscale"), "serve", "-c", self.config],
            self.dir / "headscale.log",
            netns=ns.name,
        )
        self.headscale.wait_ready(self._healthy, timeout=30, what="healthy")

    def _healthy(self) -> bool:
        with self.ns.connect(self.address, PORT, timeout=0.5) as s:
            s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
            return b" 200 " in s.recv(128).split(b"\r\n", 1)[0]

    def headscale_cli(self, *args: str) -> Any:
        out = subprocess.run(
            [str(bin_path("headscale")), "-c", str(self.config), *args, "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return json.loads(out) if out.strip() else None

    def preauth_key(self, user: str = "bed") -> str:
        users = self.headscale_cli("users", "list") or []
        uid = next((u["id"] for u in users if u["name"] == user), None)
        if uid is None:
            uid = self.headscale_cli("users", "create", user)["id"]
        key = self.headscale_cli(
            "preauthkeys", "create", "--user", str(uid), "--reusable", "--expiration", "1h"
        )
        return str(key["key"])

    def device(self, name: str, auth_key: str) -> Node:
        """A tailscaled in the tailnet namespace, joined with ``auth_key``.

        It also runs a SOCKS5 server on ``127.0.0.1:<SOCKS_BASE + n>`` inside the namespace, so
        :meth:`dial` can open TCP connections to tailnet addresses through it.
        """
        d = self.dir / "devices" / name
        socks = SOCKS_BASE + len(self.nodes)
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
                f"--socks5-server=127.0.0.1:{socks}",
            ],
            d / "tailscaled.log",
            env=TAILSCALED_ENV,
            netns=self.ns.name,
        )
        proc.wait_ready(sock.exists, timeout=20, what="listening on its socket")
        node = Node(name, d, proc, self, extra={"socks5": str(socks)})  # type: ignore[arg-type]
        self.nodes.append(node)
        node.up(auth_key)
        proc.wait_ready(lambda: bool(node.ip4()), timeout=30, what="given a tailnet address")
        return node

    def dial(self, node: Node, host: str, port: int, send: bytes = b"", timeout: float = 10) -> bytes:
        """Connect to ``host:port`` over the tailnet from ``node``; send, then read to EOF."""
        with self.ns.connect("127.0.0.1", int(node.extra["socks5"]), timeout=timeout) as s:
            s.sendall(b"\x05\x01\x00")
            if s.recv(2) != b"\x05\x00":
                raise ConnectionError("SOCKS5: no acceptable auth method")
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port))
            reply = s.recv(10)
            if len(reply) < 2 or reply[1] != 0:
                raise ConnectionError(f"SOCKS5 connect to {host}:{port} failed: {reply!r}")
            if send:
                s.sendall(send)
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
            return b"".join(chunks)

    def close(self) -> None:
        for n in self.nodes:
            n.process.stop(timeout=5)
        self.headscale.stop(timeout=10)
