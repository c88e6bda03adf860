"""A closed forward refuses connections at once, although its accept thread was blocked in
accept(): on Linux, close() alone leaves such a socket listening (and the tests that cut Envoy
Gateway off from the extension server relied on a closed port being closed)."""

from __future__ import annotations

import socket

import pytest

from tests.support.netns import NetNS

pytestmark = pytest.mark.integration


def test_a_closed_reverse_forward_refuses_new_connections_and_resets_open_ones() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # on the host, as the extension server is
    ns = NetNS(prefix="tsgw-fwd")
    try:
        inside = ns.expose_host_port(server.getsockname()[1])
        conn = ns.connect("127.0.0.1", inside)
        peer, _ = server.accept()
        conn.sendall(b"ping")
        assert peer.recv(4) == b"ping"
        ns.close_forward(inside)
        conn.settimeout(5)
        assert conn.recv(1) == b""  # the open connection is closed too
        with pytest.raises(ConnectionRefusedError):
            ns.connect("127.0.0.1", inside)
        peer.close()
        conn.close()
    finally:
        ns.delete()
        server.close()
