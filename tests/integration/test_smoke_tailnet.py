"""The tailnet fixture is real: two tailscaled nodes joined to Headscale exchange bytes over it."""

from __future__ import annotations

import pytest

from tests.support.echo import EchoServer
from tests.support.tailnet import Tailnet

pytestmark = pytest.mark.integration


def test_two_tailscaled_nodes_exchange_bytes_over_the_tailnet(tailnet: Tailnet) -> None:
    user = tailnet.create_user("smoke")
    key = tailnet.preauth_key(user)
    a = tailnet.join("smoke-a", key)
    b = tailnet.join("smoke-b", key)
    tailnet.wait_peers(a, 1)
    b_ip = b.ip4()
    assert b_ip.startswith("100.")
    with tailnet.ns.entered():
        echo = EchoServer()  # listens on 127.0.0.1 inside the namespace, where b forwards to
    try:
        payload = b"hello over the tailnet\n"
        # `tailscale nc` dials through a's netstack: the bytes can only reach b's echo server
        # over the WireGuard tunnel to b's tailnet address.
        out = a.exchange(b_ip, echo.port, payload)
        assert out == payload
        assert echo.connections == 1
    finally:
        echo.close()
