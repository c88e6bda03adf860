"""A running `tsgw run --standalone` (the real CLI, as a process) on a copy of
examples/standalone, and the Envoys bootstrapped to it. Shared by the e2e tests and the
standalone benchmark.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.certs import Leaf
from tests.support.envoy import Envoy
from tests.support.process import BIND_ATTEMPTS, NotReady, Process, free_port, in_use_error, tcp_open
from tsgw.xds import bootstrap

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "standalone"
INGRESS_GROUP = "web-tssvc.demo"
EGRESS_GROUP = "tailnet-echo-tsep.demo"
PRIMARY_PORT, STANDBY_PORT = 18081, 18082
TLS_HOST = "web.example.com"
"""The SNI name of :func:`add_tls_port`'s certificate."""
_INTERNAL_LISTENER = "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"


def copy_example(dest: Path, primary: int, standby: int) -> Path:
    """examples/standalone in ``dest``, its backend ports replaced by the given ones."""
    shutil.copytree(EXAMPLE, dest)
    backends = dest / "backends.yaml"
    text = backends.read_text()
    assert f"port: {PRIMARY_PORT}" in text
    assert f"port: {STANDBY_PORT}" in text
    text = text.replace(f"port: {PRIMARY_PORT}", f"port: {primary}")
    backends.write_text(text.replace(f"port: {STANDBY_PORT}", f"port: {standby}"))
    return dest


def tls_secret_yaml(leaf: Leaf) -> str:
    """A kubernetes.io/tls Secret ``demo/web-tls`` holding ``leaf`` (plain ``stringData``)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-tls", "namespace": "demo"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": leaf.chain.decode(), "tls.key": leaf.key.decode()},
    }
    return json.dumps(doc)  # JSON is YAML


def add_tls_port(folder: Path) -> None:
    """web.yaml with a second port, 443, terminating TLS for TLS_HOST with ``demo/web-tls``."""
    web = folder / "web.yaml"
    text = web.read_text()
    marker = "      targetPort: http            # the backend Services' port, by name (backends.yaml)\n"
    assert marker in text
    extra = (
        "    - port: 443\n      protocol: HTTP\n      targetPort: http\n"
        f"      tls: [{{secretName: web-tls, hostnames: [{TLS_HOST}]}}]\n"
    )
    web.write_text(text.replace(marker, marker + extra))


def write(path: Path, text: str) -> None:
    """Replace a file the way editors do (a new file renamed over the old one)."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Tsgw:
    """`python -m tsgw run --standalone DIR` on free loopback ports."""

    def __init__(
        self,
        folder: Path,
        workdir: Path,
        *,
        listener_port: int | None = None,
        connect_proxy_port: int = 1055,
        extra: tuple[str, ...] = (),
        xds_port: int | None = None,
        admin_port: int | None = None,
    ) -> None:
        """``xds_port``/``admin_port``: the ports of a previous instance, to restart it in its
        place (default: free ones)."""
        self.folder = folder
        # tsgw takes its ports as flags and does not report ports it chose: they are picked
        # (free_port: below the ephemeral range, locked against other test processes) and a
        # start that fails with EADDRINUSE picks again.
        for attempt in range(1, BIND_ATTEMPTS + 1):
            # A restart in place keeps the ports it is given (and does not retry on others).
            self.xds_port = xds_port or free_port()
            self.admin_port = admin_port or free_port()
            self.probe_port = free_port()
            self.listener_port = listener_port or free_port()
            self.admin = f"127.0.0.1:{self.admin_port}"
            log = workdir / ("tsgw.log" if attempt == 1 else f"tsgw.{attempt}.log")
            self.process = Process(
                "tsgw-standalone",
                [
                    sys.executable,
                    "-m",
                    "tsgw",
                    "run",
                    "--standalone",
                    folder,
                    "--xds",
                    f"127.0.0.1:{self.xds_port}",
                    "--admin",
                    self.admin,
                    "--listener-port",
                    str(self.listener_port),
                    "--connect-proxy-port",
                    str(connect_proxy_port),
                    "--health-probe-bind-address",
                    f"127.0.0.1:{self.probe_port}",
                    *extra,
                ],
                log,
                cwd=ROOT,
            )
            try:
                self.process.wait_ready(
                    lambda: tcp_open("127.0.0.1", self.admin_port), timeout=30, what="serving its admin API"
                )
                return
            except NotReady:
                self.process.stop(timeout=10)
                fixed = xds_port is not None or admin_port is not None
                if fixed or attempt == BIND_ATTEMPTS or not in_use_error(log):
                    raise

    def probe(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the /healthz, /readyz and /metrics endpoint."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tsgw", *args, "--admin", self.admin],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )

    def status(self) -> str:
        out = self.cli("status")
        assert out.returncode == 0, out.stderr
        return out.stdout

    def status_json(self) -> Any:
        out = self.cli("status", "-o", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def stop(self) -> None:
        self.process.stop(timeout=10)


def envoy_bootstrap(group: str, node: str, xds_port: int, *, egress: bool = False) -> dict[str, Any]:
    """tsgw.xds's bootstrap for one proxy of ``group`` (admin on a port Envoy picks)."""
    config = bootstrap(node, group, f"127.0.0.1:{xds_port}", admin_port=0)
    if egress:
        # Egress targets may be internal listeners tunnelling through tailscaled (as the proxy
        # pods' bootstrap enables them).
        config["bootstrap_extensions"] = [
            {
                "name": "envoy.bootstrap.internal_listener",
                "typed_config": {"@type": _INTERNAL_LISTENER},
            }
        ]
    return config


def ingress_envoy(tsgw: Tsgw, workdir: Path) -> Envoy:
    envoy = Envoy(envoy_bootstrap(INGRESS_GROUP, "web-0", tsgw.xds_port), workdir / "envoy", name="envoy-web")
    envoy.start()
    return envoy


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    """GET through an ingress listener as tailscaled would send it: a PROXY header first
    (the tailnet client's address), then the request. Returns (status, body); (0, error) when
    the connection fails. The client closes first (after reading Content-Length bytes), so
    TIME_WAIT stays on this side and a reused port never meets Envoy's (a SYN retransmit
    would add a second)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(
                b"PROXY TCP4 100.64.0.99 127.0.0.1 40000 80\r\n"
                + f"GET {path} HTTP/1.1\r\nHost: web\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            want = int(m.group(1)) if m else 0
            while len(body) < want:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
    except OSError as e:
        return 0, str(e)
    status = re.match(rb"HTTP/1\.[01] (\d+)", head)
    return (int(status.group(1)) if status else 0), body.decode(errors="replace")


def wait_until(check: Any, timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll ``check()`` until truthy; returns its value. Fails with the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value {value!r}")
