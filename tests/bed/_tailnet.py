"""The bed's tailnet: Headscale (embedded DERP) and tailnet devices in the tailnet namespace.

The namespace sits on the bed's fabric (``10.o.255.2``), so pods reach Headscale at
``http://10.o.255.2:8080`` through their node; nothing of it reaches the host or the world.
It is :class:`tests.support.tailnet.Tailnet` run in the bed's namespace; each device is a
userspace tailscaled driven through its unix socket (``tests.support.tailnet.Node``).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.tailnet import Node, Tailnet
from tools.netns import Namespace


class BedTailnet(Tailnet):
    """Headscale on the bed's tailnet namespace address, and devices with SOCKS5 for dialling."""

    def __init__(self, workdir: Path, ns: Namespace, address: str) -> None:
        super().__init__(workdir, ns, address)

    def preauth_key_for(self, user: str = "bed") -> str:
        """A reusable key of ``user``, made on first use."""
        users = self.headscale_cli("users", "list") or []
        uid = next((u["id"] for u in users if u["name"] == user), None)
        return self.preauth_key(int(uid) if uid is not None else self.create_user(user))

    def device(self, name: str, auth_key: str) -> Node:
        """A tailscaled in the tailnet namespace, joined with ``auth_key``, dialling with
        :meth:`Node.dial` through its SOCKS5 server."""
        return self.join(name, auth_key, socks5=True)
