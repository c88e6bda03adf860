"""TLS with the user's own certificate on the bed, through a Tailscale Service: tsgw installed as
a user installs it for Tailscale's hosted API (the tailnet in a box, as in
test_tailscale_services.py), a ``kubernetes.io/tls`` Secret as cert-manager would write it, and a
TailscaleServices port that names it for ``web.<custom domain>``.

- A tailnet client calls ``https://web.example.test`` through ``svc:web`` (SNI): the certificate
  presented is the Secret's, checked against the CA with Python's ssl;
- replacing the Secret switches certificates with no failed request in a loop across the switch;
- an expired certificate gives ``CertificatesReady=False`` (``CertificateExpired``) and the old
  certificate keeps serving;
- the proxies' Envoys are authenticated: each group's bootstrap is a Secret holding its token.
"""

from __future__ import annotations

import base64
import datetime
import re
import ssl
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.bed import Bed
from tests.e2e.bed.helpers import box_in_bed, operator_on_box, pods, ready, wait
from tests.support.boxed_fake import BoxedTailnet
from tests.support.certs import CA, Leaf
from tests.support.tailnet import Node, socks5_connect
from tests.support.tailnet_services import auth_key
from tsgw.tailscale import NotFoundError, TailscaleService

pytestmark = pytest.mark.e2e

NS = "tsgw-system"
APPS = "default"
SVC = "svc:web"
HOST = "web.example.test"
BOX_TAGS = ("tag:proxy", "tag:k8s", "tag:client")
INGRESS = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=web-tssvc"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture(scope="module")
def box(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxedTailnet]:
    with box_in_bed(bed, tmp_path_factory.mktemp("box"), BOX_TAGS) as tn:
        yield tn


@pytest.fixture(scope="module")
def installed(bed: Bed, box: BoxedTailnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with operator_on_box(
        bed, box, tmp_path_factory.mktemp("tls-install"), services=(SVC,), kinds=("tailscaleservices",)
    ) as overlay:
        yield overlay
        bed.kubectl("delete", "secret", "-n", APPS, "web-tls", "--ignore-not-found", check=False)


def _secret(bed: Bed, leaf: Leaf) -> None:
    crt, key = base64.b64encode(leaf.chain).decode(), base64.b64encode(leaf.key).decode()
    bed.apply(
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: web-tls, namespace: {APPS}}}\n"
        f"type: kubernetes.io/tls\ndata: {{tls.crt: {crt}, tls.key: {key}}}\n"
    )


@pytest.fixture(scope="module")
def web(bed: Bed, box: BoxedTailnet, installed: Path, ca: CA) -> TailscaleService:
    _secret(bed, ca.issue(HOST))
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: web, namespace: {APPS}}}
            spec:
              replicas: 1
              selector: {{matchLabels: {{app: web}}}}
              template:
                metadata: {{labels: {{app: web}}}}
                spec:
                  containers: [{{name: web, image: bed.test/backend}}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: web, namespace: {APPS}}}
            spec:
              selector: {{app: web}}
              ports: [{{name: http, port: 80, targetPort: 8080}}]
            ---
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleServices
            metadata: {{name: web, namespace: {APPS}}}
            spec:
              tailnetRef: {{name: tailscale}}
              proxy: {{replicas: 1}}
              ports:
                - port: 443
                  protocol: HTTP
                  targetPort: http
                  tls: [{{secretName: web-tls, hostnames: [{HOST}]}}]
              backends: [{{service: web}}]
              tags: [tag:k8s]
            """
        )
    )
    svc: TailscaleService = wait(
        lambda: _service(box, SVC), timeout=60, what=f"{SVC} created through the API"
    )
    wait(
        lambda: len([p for p in pods(bed, INGRESS, APPS) if ready(p)]) == 1,
        timeout=240,
        what="the ingress proxy Ready",
        interval=1,
    )

    def serving() -> list[str]:
        hosts = box.box.admin.service_hosts(SVC)
        return [str(h["name"]) for h in hosts if h.get("approved") and h.get("serviceHost")]

    wait(serving, timeout=120, what=f"the proxy is an approved host of {SVC}", interval=1)
    return svc


def _service(box: BoxedTailnet, name: str) -> TailscaleService | None:
    try:
        return box.call(box.ts.get_service, name)
    except NotFoundError:
        return None


def fetch(client: Node, vip: str, ca: CA) -> tuple[str, int]:
    """(status line, certificate serial) of one HTTPS request to ``vip`` with SNI ``HOST``;
    ("unreachable: ...", 0) when the tailnet dial fails (SOCKS5 through the client's tailscaled:
    says nothing of the proxy), ("failed: ...", 0) when the proxy's handshake or answer fails.
    A dial is tried up to 5 times, so a loaded machine's lost tailnet dial is not a failure."""
    ctx = ssl.create_default_context(cadata=ca.pem.decode())
    unreachable = ""
    for _ in range(5):
        try:
            raw = socks5_connect(client.tailnet.ns, int(client.extra["socks5"]), vip, 443, timeout=5)
            break
        except OSError as e:
            unreachable = f"unreachable: {e!r}"
    else:
        return unreachable, 0
    try:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            s.sendall(f"GET /headers HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            der = s.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        return f"failed: {e!r}", 0
    serial = x509.load_der_x509_certificate(der).serial_number if der else 0
    m = re.match(rb"HTTP/1\.[01] \d+[^\r\n]*", data)
    return (m.group(0).decode() if m else ""), serial


def _condition(bed: Bed) -> dict[str, Any] | None:
    status = bed.get("tailscaleservices", "-n", APPS, "web").get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}.get("CertificatesReady")


def test_a_tailnet_client_gets_the_secrets_certificate_and_switches_with_the_secret(
    bed: Bed, box: BoxedTailnet, web: TailscaleService, ca: CA
) -> None:
    vip = next(a for a in web.addrs if "." in a)
    client = box.box.join("tls-client", auth_key(box, ("tag:client",)), socks5=True)
    _, old = wait(
        lambda: r if " 200 " in f"{(r := fetch(client, vip, ca))[0]} " else None,
        timeout=120,
        what=f"https://{HOST} through {SVC} ({vip}) answers 200",
        interval=1,
    )
    cond = wait(lambda: _condition(bed), timeout=60, what="CertificatesReady reported")
    assert cond["status"] == "True", cond
    # The proxies' Envoys hold a token: their bootstrap is a Secret, not a ConfigMap.
    assert (
        "initial_metadata"
        in base64.b64decode(bed.get("secret", "-n", APPS, "web-tssvc-envoy")["data"]["envoy.json"]).decode()
    )

    # Rotation: a loop of requests across the switch; none fails, the serial changes once.
    new = ca.issue(HOST)
    results = [fetch(client, vip, ca) for _ in range(5)]
    _secret(bed, new)
    for _ in range(300):
        results.append(fetch(client, vip, ca))
        if sum(1 for r in results if r[1] == new.serial) >= 5:
            break
    failed = [r for r in results if " 200 " not in f"{r[0]} "]
    assert failed == [], failed
    serials = [r[1] for r in results]
    assert new.serial in serials, "the new certificate was never served"
    switch = serials.index(new.serial)
    assert set(serials[:switch]) == {old}
    assert set(serials[switch:]) == {new.serial}

    # An expired certificate: a condition, and the last good one keeps serving.
    expired = ca.issue(HOST, not_before=datetime.timedelta(days=-3), not_after=datetime.timedelta(days=-1))
    _secret(bed, expired)
    cond = wait(
        lambda: c if (c := _condition(bed)) and c["reason"] == "CertificateExpired" else None,
        timeout=60,
        what="CertificatesReady=False CertificateExpired",
    )
    assert cond["status"] == "False"
    assert "last good certificate" in cond["message"]
    for _ in range(3):
        line, serial = fetch(client, vip, ca)
        assert " 200 " in f"{line} ", line
        assert serial == new.serial
