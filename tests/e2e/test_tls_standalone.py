"""TLS from Secrets and authenticated xDS, end to end in standalone mode: the real `tsgw run
--standalone` process, a real Envoy, real HTTP backends and Python's ssl as the client.

- Envoy terminates TLS with the Secret's certificate, chosen by SNI (checked against the CA);
- replacing the Secret switches certificates with no failed request in a loop running across
  the switch, and a connection opened before it keeps working;
- an expired certificate is a problem in `tsgw status` (CertificatesReady=CertificateExpired)
  and the last good one keeps serving;
- with --xds-auth-key-file, an Envoy without its group's token (none, or another group's) gets
  no listener and no secret, and `tsgw snapshot dump` shows no private key.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.standalone import (
    INGRESS_GROUP,
    Tsgw,
    add_tls_port,
    copy_example,
    envoy_bootstrap,
    tls_secret_yaml,
    wait_until,
    write,
)
from tests.e2e.standalone import (
    TLS_HOST as HOST,
)
from tests.support.backend import HttpBackend
from tests.support.certs import CA, Leaf
from tests.support.envoy import Envoy
from tsgw.xds import group_token

pytestmark = pytest.mark.e2e

KEY = b"standalone-test-key-0123456789"


@dataclass
class Tls:
    folder: Path
    tsgw: Tsgw
    ca: CA
    port: int
    tmp: Path

    def serve(self, leaf: Leaf) -> None:
        write(self.folder / "certs.yaml", tls_secret_yaml(leaf))


def _context(ca: CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _request(sock: ssl.SSLSocket) -> tuple[int, str]:
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = re.match(rb"HTTP/1\.[01] (\d+)", head)
    return (int(status.group(1)) if status else 0), body.decode(errors="replace")


def _open(port: int, ca: CA, sni: str = HOST, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.sendall(b"PROXY TCP4 100.64.0.99 127.0.0.1 40000 443\r\n")  # as tailscaled's serve does
    return _context(ca).wrap_socket(raw, server_hostname=sni)


def _serial(sock: ssl.SSLSocket) -> int:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def fetch(port: int, ca: CA) -> tuple[int, str, int]:
    """(status, body, certificate serial) of one HTTPS request on a new connection;
    (0, error, 0) when it fails (a TLS verification error included)."""
    try:
        with _open(port, ca) as s:
            status, body = _request(s)
            return status, body, _serial(s)
    except (OSError, ssl.SSLError) as e:
        return 0, str(e), 0


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Tls]:
    backend = HttpBackend("primary").start()
    standby = HttpBackend("standby").start()
    folder = copy_example(tmp_path / "standalone", backend.port, standby.port)
    add_tls_port(folder)
    ca = CA()
    (folder / "certs.yaml").write_text(tls_secret_yaml(ca.issue(HOST)))
    tsgw = Tsgw(folder, tmp_path)
    envoy = Envoy(
        envoy_bootstrap(INGRESS_GROUP, "web-0", tsgw.xds_port), tmp_path / "envoy", name="envoy-web"
    )
    try:
        envoy.start()
        yield Tls(folder, tsgw, ca, tsgw.listener_port + 1, tmp_path)
    finally:
        envoy.stop()
        tsgw.stop()
        backend.stop()
        standby.stop()


def test_envoy_presents_the_secrets_certificate_for_its_sni_name(tls: Tls) -> None:
    first = wait_until(lambda: (r := fetch(tls.port, tls.ca))[0] == 200 and r)
    assert first[1] == "primary"
    # Another SNI name matches no filter chain: Envoy closes the connection.
    with pytest.raises((OSError, ssl.SSLError)), _open(tls.port, tls.ca, sni="other.example.com") as s:
        _request(s)
    assert "CertificatesReady" not in tls.tsgw.status()


def test_replacing_the_secret_switches_certificates_without_a_failed_request(tls: Tls) -> None:
    old = wait_until(lambda: (r := fetch(tls.port, tls.ca))[0] == 200 and r)[2]
    held = _open(tls.port, tls.ca)  # a connection opened before the switch
    assert _request(held) == (200, "primary")
    results: list[tuple[int, str, int]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            results.append(fetch(tls.port, tls.ca))

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(results) >= 20)
        new = tls.ca.issue(HOST)
        tls.serve(new)
        wait_until(lambda: any(r[2] == new.serial for r in results))
        seen = len(results)
        wait_until(lambda: len(results) >= seen + 20)
    finally:
        stop.set()
        t.join(timeout=30)
    failed = [r for r in results if r[0] != 200]
    assert failed == []
    serials = [r[2] for r in results]
    switch = serials.index(new.serial)
    assert set(serials[:switch]) == {old}
    assert set(serials[switch:]) == {new.serial}  # once switched, never back
    with held:
        assert _request(held) == (200, "primary")  # the open connection was not dropped
        assert _serial(held) == old


def test_an_expired_certificate_is_reported_and_the_last_good_one_keeps_serving(tls: Tls) -> None:
    good = wait_until(lambda: (r := fetch(tls.port, tls.ca))[0] == 200 and r)[2]
    expired = tls.ca.issue(
        HOST, not_before=datetime.timedelta(days=-3), not_after=datetime.timedelta(days=-1)
    )
    tls.serve(expired)
    wait_until(lambda: "CertificatesReady=CertificateExpired" in tls.tsgw.status(), timeout=30)
    assert "last good certificate" in tls.tsgw.status()
    assert [fetch(tls.port, tls.ca)[::2] for _ in range(5)] == [(200, good)] * 5


def test_a_snapshot_dump_never_shows_the_private_key(tls: Tls) -> None:
    wait_until(lambda: fetch(tls.port, tls.ca)[0] == 200)
    out = tls.tsgw.cli("snapshot", "dump", "--group", INGRESS_GROUP, "-o", "json")
    assert out.returncode == 0, out.stderr
    assert "PRIVATE KEY" not in out.stdout
    assert "redacted" in out.stdout
    assert "demo/web-tls" in out.stdout


# --- authenticated xDS -------------------------------------------------------------------------


def _dynamic(envoy: Envoy) -> dict[str, Any]:
    """What an Envoy received over xDS: dynamic listeners, clusters and secrets."""
    out: dict[str, Any] = {"listeners": [], "clusters": [], "secrets": []}
    for c in envoy.config_dump()["configs"]:
        t = str(c.get("@type", ""))
        if t.endswith("ListenersConfigDump"):
            out["listeners"] = c.get("dynamic_listeners", [])
        elif t.endswith("ClustersConfigDump"):
            out["clusters"] = c.get("dynamic_active_clusters", []) + c.get("dynamic_warming_clusters", [])
        elif t.endswith("SecretsConfigDump"):
            out["secrets"] = c.get("dynamic_active_secrets", []) + c.get("dynamic_warming_secrets", [])
    return out


def _refusals(tsgw: Tsgw) -> dict[str, float]:
    """``tsgw_xds_auth_refused_total`` by its ``reason`` label."""
    _, text = tsgw.probe("/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'tsgw_xds_auth_refused_total\{reason="([^"]*)"\} (\S+)$', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_only_an_envoy_with_its_groups_token_gets_configuration_and_secrets(tmp_path: Path) -> None:
    backend = HttpBackend("primary").start()
    standby = HttpBackend("standby").start()
    folder = copy_example(tmp_path / "standalone", backend.port, standby.port)
    add_tls_port(folder)
    ca = CA()
    (folder / "certs.yaml").write_text(tls_secret_yaml(ca.issue(HOST)))
    key_file = tmp_path / "xds.key"
    key_file.write_bytes(KEY)
    tsgw = Tsgw(folder, tmp_path, extra=("--xds-auth-key-file", str(key_file)))
    envoys: list[Envoy] = []

    def envoy(name: str, token: str | None) -> Envoy:
        config = envoy_bootstrap(INGRESS_GROUP, name, tsgw.xds_port)
        if token is not None:
            svc = config["dynamic_resources"]["ads_config"]["grpc_services"][0]
            svc["initial_metadata"] = [{"key": "authorization", "value": f"Bearer {token}"}]
        e = Envoy(config, tmp_path / name, name=name)
        envoys.append(e)
        e.launch()
        return e

    try:
        good = envoy("web-0", group_token(KEY, INGRESS_GROUP))
        none = envoy("web-1", None)
        other = envoy("web-2", group_token(KEY, "tailnet-echo-tsep.demo"))  # another group's token
        wait_until(good.is_live)
        wait_until(lambda: fetch(tsgw.listener_port + 1, ca)[0] == 200)
        got = _dynamic(good)
        assert len(got["listeners"]) == 2
        assert [s["name"] for s in got["secrets"]] == ["demo/web-tls"]
        # The refused Envoys retried (each refusal counted, by its reason: web-1 sent no token,
        # web-2 another group's) and never received anything. (Counted per reason: the three
        # Envoys start at once, and one may have retried several times before the other's
        # first try.)
        refusals = wait_until(
            lambda: (r := _refusals(tsgw)).get("missing", 0) >= 2 and r.get("invalid", 0) >= 2 and r
        )
        for refused in (none, other):
            assert _dynamic(refused) == {"listeners": [], "clusters": [], "secrets": []}
        assert {reason for reason, n in refusals.items() if n} == {"missing", "invalid"}, refusals
        assert "web-1" not in tsgw.status()
        assert "web-2" not in tsgw.status()
    finally:
        for e in envoys:
            e.stop()
        tsgw.stop()
        backend.stop()
        standby.stop()
