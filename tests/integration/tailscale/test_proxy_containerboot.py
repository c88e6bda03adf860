"""containerboot configured only from ``ProxyConfig`` joins real Headscale and carries traffic.

The proxy is tailscale's own containerboot v1.102.3 (the proxy pods' entry point) with the
environment and serve-config file that :class:`tsgw.tailscale.ProxyConfig` renders, in the
tailnet's private namespace (state on disk: no Kubernetes here). A plain tailscaled peer then
reaches it both ways: ingress through the serve config's TCP forward with PROXY protocol v2,
and egress through the proxy's outbound HTTP CONNECT listener.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from pathlib import Path

import pytest

from tests.support.echo import EchoServer
from tests.support.process import Process, free_port
from tests.support.tailnet import TAILSCALED_ENV, Tailnet, wait_for
from tools.testbin import bin_path
from tsgw.tailscale import APIKey, AuthKeyRequest, ClientOptions, HeadscaleClient, ProxyConfig, ServePort

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class ProxyProtocolEcho:
    """Reads a PROXY protocol v2 header, records the source it names, then echoes the stream."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.sources: list[tuple[str, int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed inside the PROXY header")
            buf += chunk
        return buf

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                head = self._read(conn, 16)
                if head[:12] != _SIG or head[12] != 0x21:  # v2, PROXY command
                    return
                rest = self._read(conn, struct.unpack("!H", head[14:16])[0])
                if head[13] == 0x11:  # TCP over IPv4
                    src = str(ipaddress.IPv4Address(rest[0:4]))
                    self.sources.append((src, struct.unpack("!H", rest[8:10])[0]))
                elif head[13] == 0x21:  # TCP over IPv6
                    src = str(ipaddress.IPv6Address(rest[0:16]))
                    self.sources.append((src, struct.unpack("!H", rest[32:34])[0]))
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self._sock.close()


def _containerboot(tailnet: Tailnet, cfg: ProxyConfig, workdir: Path) -> Process:
    bindir = Path(bin_path("tailscaled")).parent
    env = {**cfg.env(), "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    return Process(
        f"containerboot-{cfg.hostname}",
        [bin_path("containerboot")],
        workdir / "containerboot.log",
        env={k: v for k, v in env.items()},
        netns=tailnet.ns.name,
        cwd=workdir,
    )


async def test_a_proxy_configured_by_proxyconfig_serves_ingress_and_egress_over_the_tailnet(
    tailnet: Tailnet, tmp_path: Path
) -> None:
    async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
        proxy_key = await hs.create_auth_key(AuthKeyRequest(tags=("tag:tsgw-proxy",)))
        peer_key = await hs.create_auth_key(AuthKeyRequest(tags=("tag:tsgw-client",)))

    with tailnet.ns.entered():
        backend = ProxyProtocolEcho()  # "Envoy" on the proxy's loopback
        echo = EchoServer()  # a service on the peer, reached by egress
    ingress_port = 9000
    proxy_http = free_port()
    health = free_port()
    cfg = ProxyConfig(
        hostname="tsgw-proxy-0",
        state_dir=str(tmp_path / "state"),
        tags=("tag:tsgw-proxy",),
        login_server=tailnet.url,
        auth_key=proxy_key.key,
        device_ports=(ServePort(ingress_port, backend.port),),
        serve_config_path=str(tmp_path / "serve-config.json"),
        outbound_http_proxy=f"127.0.0.1:{proxy_http}",
        local_addr_port=f"127.0.0.1:{health}",
        socket=str(tmp_path / "tailscaled.sock"),
        tailscaled_extra_args=("--port=0", "--no-logs-no-support"),
        extra_env=TAILSCALED_ENV,
    )
    (tmp_path / "serve-config.json").write_text(cfg.serve_config_json())
    proc = _containerboot(tailnet, cfg, tmp_path)
    try:

        def healthy() -> bool:
            with tailnet.ns.connect("127.0.0.1", health, timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return b" 200 " in s.recv(64)

        proc.wait_ready(healthy, timeout=60, what="healthy (joined the tailnet)")
        peer = tailnet.join("tsgw-peer", peer_key.key)
        proxy_ip = wait_for(
            lambda: next(
                (
                    p["TailscaleIPs"][0]
                    for p in (peer.status().get("Peer") or {}).values()
                    if p.get("HostName") == "tsgw-proxy-0" and p.get("Online")
                ),
                None,
            ),
            timeout=30,
        )

        # Ingress: peer → proxy's tailnet address:9000 → serve TCP forward → "Envoy", PROXY v2 first.
        payload = b"ingress through the serve config\n"
        out = wait_for(
            lambda: peer.cli("nc", proxy_ip, str(ingress_port), input=payload, timeout=20), timeout=40
        )
        assert out == payload
        assert backend.sources, "no PROXY v2 header arrived"
        assert backend.sources[-1][0] == peer.ip4()  # Envoy would see the tailnet client

        # Egress: "Envoy" on the proxy → its HTTP CONNECT listener → tailnet → the peer's service.
        peer_ip = peer.ip4()
        with tailnet.ns.connect("127.0.0.1", proxy_http, timeout=5) as s:
            s.settimeout(20)
            s.sendall(
                f"CONNECT {peer_ip}:{echo.port} HTTP/1.1\r\nHost: {peer_ip}:{echo.port}\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(1024)
                assert chunk, f"proxy closed the CONNECT: {head!r}"
                head += chunk
            assert head.split(b"\r\n", 1)[0].split(b" ")[1] == b"200", head
            s.sendall(b"egress through the outbound proxy\n")
            got = b""
            while len(got) < 34:
                got += s.recv(1024)
        assert got == b"egress through the outbound proxy\n"
        assert echo.connections >= 1
        peer.process.stop()
    finally:
        proc.stop(timeout=10)
        backend.close()
        echo.close()
