"""containerboot configured only from ``ProxyConfig`` joins real Headscale and carries traffic.

Each proxy is tailscale's own containerboot v1.102.3 (the proxy pods' entry point) with the
environment and serve-config file that :class:`tsgw.tailscale.ProxyConfig` renders, in the
tailnet's private namespace (state on disk: no Kubernetes here). Two such proxies reach each
other: one's outbound HTTP CONNECT listener (egress, as Envoy tunnels) carries a stream over
WireGuard to the other's serve-config TCP forward (ingress), which prefixes PROXY protocol v2.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.echo import EchoServer
from tests.support.netns import NetNS
from tests.support.process import Process
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
        env=env,
        netns=tailnet.ns.name,
        cwd=workdir,
    )


def _ns(tailnet: Tailnet) -> NetNS:
    assert isinstance(tailnet.ns, NetNS), "the tailnet fixture owns its namespace"
    return tailnet.ns


def _proxy_config(tailnet: Tailnet, name: str, key: str, d: Path, **kw: Any) -> ProxyConfig:
    d.mkdir(parents=True, exist_ok=True)
    return ProxyConfig(
        hostname=name,
        state_dir=str(d / "state"),
        tags=("tag:tsgw-proxy",),
        login_server=tailnet.url,
        auth_key=key,
        serve_config_path=str(d / "serve-config.json"),
        # Ports inside the tailnet's own namespace (NetNS.port): picking a free host port raced
        # the namespace's own connections for it ("address already in use" at the health port).
        outbound_http_proxy=f"127.0.0.1:{_ns(tailnet).port()}",
        local_addr_port=f"127.0.0.1:{_ns(tailnet).port()}",
        socket=str(d / "tailscaled.sock"),
        tailscaled_extra_args=("--port=0", "--no-logs-no-support"),
        extra_env=TAILSCALED_ENV,
        **kw,
    )


def _start(tailnet: Tailnet, cfg: ProxyConfig, d: Path) -> tuple[Process, str]:
    """Start containerboot for ``cfg``; returns it and its tailnet IPv4 once it is healthy."""
    (d / "serve-config.json").write_text(cfg.serve_config_json())
    if cfg.config_dir:
        Path(cfg.config_dir).mkdir(parents=True, exist_ok=True)
        for name, text in cfg.config_files().items():
            (Path(cfg.config_dir) / name).write_text(text)
    proc = _containerboot(tailnet, cfg, d)
    host, port = cfg.local_addr_port.rsplit(":", 1)

    def healthy() -> bool:
        with tailnet.ns.connect(host, int(port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(64)

    try:
        proc.wait_ready(healthy, timeout=60, what="healthy (joined the tailnet)")
        out = subprocess.run(
            [str(bin_path("tailscale")), f"--socket={cfg.socket}", "ip", "-4"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        )
    except BaseException:
        proc.stop(timeout=10)
        raise
    return proc, out.stdout.strip()


def _connect_through(tailnet: Tailnet, proxy: str, target: str) -> socket.socket:
    """A stream to ``target`` through the HTTP CONNECT proxy at ``proxy`` (as Envoy's tunnel)."""
    host, port = proxy.rsplit(":", 1)
    s = tailnet.ns.connect(host, int(port), timeout=5)
    s.settimeout(20)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            s.close()
            raise ConnectionError(f"proxy closed the CONNECT: {head!r}")
        head += chunk
    if head.split(b"\r\n", 1)[0].split(b" ")[1] != b"200":
        s.close()
        raise ConnectionError(f"CONNECT refused: {head!r}")
    return s


def _roundtrip(s: socket.socket, payload: bytes) -> bytes:
    with s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(1024)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.parametrize("mode", ["env", "config-file"])
async def test_two_proxies_configured_by_proxyconfig_reach_each_other_over_the_tailnet(
    tailnet: Tailnet, tmp_path: Path, mode: str
) -> None:
    async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
        ingress_key = await hs.create_auth_key(AuthKeyRequest(tags=("tag:tsgw-proxy",)))
        egress_key = await hs.create_auth_key(AuthKeyRequest(tags=("tag:tsgw-proxy",)))

    with tailnet.ns.entered():
        backend = ProxyProtocolEcho()  # the ingress proxy's "Envoy", on its loopback
    ingress_port = 9000
    a_cfg = _proxy_config(
        tailnet,
        f"tsgw-ingress-{mode}",
        ingress_key.key,
        tmp_path / "a",
        device_ports=(ServePort(ingress_port, backend.port),),
        config_dir=str(tmp_path / "a" / "tsconfig") if mode == "config-file" else "",
    )
    b_cfg = _proxy_config(
        tailnet,
        f"tsgw-egress-{mode}",
        egress_key.key,
        tmp_path / "b",
        config_dir=str(tmp_path / "b" / "tsconfig") if mode == "config-file" else "",
    )
    if mode == "config-file":
        assert "TS_AUTHKEY" not in a_cfg.env()  # the key is only in the config file
    procs: list[Process] = []
    try:
        a, a_ip = _start(tailnet, a_cfg, tmp_path / "a")
        procs.append(a)
        b, b_ip = _start(tailnet, b_cfg, tmp_path / "b")
        procs.append(b)
        assert a_ip.startswith("100.")
        assert b_ip.startswith("100.")

        # Egress proxy B → tailnet → ingress proxy A's serve config → "Envoy", PROXY v2 first:
        # the path of a cluster workload calling a service published by another tsgw.
        payload = b"through two tsgw proxies\n"
        target = f"{a_ip}:{ingress_port}"
        got = wait_for(
            lambda: _roundtrip(_connect_through(tailnet, b_cfg.outbound_http_proxy, target), payload)
        )
        assert got == payload
        assert backend.sources, "no PROXY v2 header arrived"
        assert backend.sources[-1][0] == b_ip  # Envoy sees which tailnet device called

        # And the other way: A's outbound proxy reaches a port on B's tailnet address, which
        # B's userspace netstack hands to B's loopback.
        with tailnet.ns.entered():
            b_echo = EchoServer()
        try:
            back = _roundtrip(
                _connect_through(tailnet, a_cfg.outbound_http_proxy, f"{b_ip}:{b_echo.port}"), payload
            )
            assert back == payload
        finally:
            b_echo.close()
    finally:
        for p in procs:
            p.stop(timeout=10)
        backend.close()
