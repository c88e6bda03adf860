"""A real Kubernetes API server (etcd + kube-apiserver) for tests, the way envtest starts one.

No kubelet, no controllers, no garbage collector: only the API semantics (SSA, the status
subresource, 409 conflicts, 410 after compaction, bookmarks, WatchList). The admin authenticates
with a static bearer token in ``system:masters``; the serving certificate and the service-account
keypair are made here with ``cryptography``, so nothing is downloaded.

``podtemplates`` are served without a watch cache (``--watch-cache-sizes=podtemplates#0``) so a
test can force a real 410 Gone: watches of that resource go straight to etcd, and compacting etcd
(:meth:`ControlPlane.compact`) makes every older resourceVersion expire at once.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import shutil
import ssl
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support.netns import _entered
from tests.support.process import BIND_ATTEMPTS, NotReady, Process, free_port, in_use_error
from tools.testbin import bin_path


def _write_pki(d: Path, sans: Sequence[str] = ()) -> None:
    """A self-signed CA, a serving cert for 127.0.0.1/localhost (+ ``sans``), and a SA keypair."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsgw-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                    *(_san(n) for n in sans),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    nokey = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    (d / "ca.crt").write_bytes(ca.public_bytes(pem))
    (d / "apiserver.crt").write_bytes(cert.public_bytes(pem))
    (d / "apiserver.key").write_bytes(key.private_bytes(pem, pkcs8, nokey))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "sa.key").write_bytes(sa.private_bytes(pem, pkcs8, nokey))
    (d / "sa.pub").write_bytes(
        sa.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class ControlPlane:
    """etcd plus kube-apiserver on loopback; :meth:`start` blocks until ``/readyz`` answers 200.

    ``url``, ``token``, ``ca_file`` and ``kubeconfig`` (an admin kubeconfig file with the token
    and the CA inline) are what a client needs.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        netns: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        sans: Sequence[str] = (),
        service_cidr: str = "10.0.0.0/24",
        authorization_mode: str = "RBAC",
        disable_admission_plugins: str = "ServiceAccount",
        extra_tokens: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        """Defaults are envtest's. The test bed (tests/bed) runs it inside a node's network
        namespace (``netns``), bound to the node's address (``host``), with extra serving-cert
        ``sans``, ``Node,RBAC``, the ServiceAccount admission plugin and more static tokens
        (``extra_tokens``: ``token,user,uid,"group1,group2"`` lines)."""
        self.netns = netns
        self.host = host
        self.sans = tuple(sans)
        self.service_cidr = service_cidr
        self.authorization_mode = authorization_mode
        self.disable_admission_plugins = disable_admission_plugins
        self.extra_tokens = tuple(extra_tokens)
        self.extra_args = tuple(extra_args)
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="tsgw-cp-")
        self.dir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.dir.mkdir(parents=True, exist_ok=True)
        # etcd and kube-apiserver take their ports as flags and cannot report a port they chose:
        # the ports are picked (free_port: below the ephemeral range, locked against other test
        # processes) and a start that fails with EADDRINUSE picks again (_start_etcd/_apiserver).
        self._fixed_port = port is not None
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.ca_file = self.dir / "pki" / "ca.crt"
        self.kubeconfig = self.dir / "kubeconfig"
        self._etcd_starts = 0
        self.etcd: Process | None = None
        self.apiserver: Process | None = None
        self._starts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        pki = self.dir / "pki"
        pki.mkdir(exist_ok=True)
        _write_pki(pki, (self.host, *self.sans))
        tokens = [f"{self.token},admin,admin-uid,system:masters", *self.extra_tokens]
        (self.dir / "tokens.csv").write_text("\n".join(tokens) + "\n")
        self._write_kubeconfig()
        self._start_etcd()
        self._start_apiserver()
        return self

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def _start_etcd(self) -> None:
        for attempt in range(1, BIND_ATTEMPTS + 1):
            try:
                return self._start_etcd_once()
            except NotReady:
                assert self.etcd is not None
                self.etcd.stop(timeout=10)
                if attempt == BIND_ATTEMPTS or not in_use_error(self.etcd.log):
                    raise
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)
                self.etcd_port, self.etcd_peer_port = free_port(), free_port()

    def _start_etcd_once(self) -> None:
        self._etcd_starts += 1
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = Process(
            "etcd",
            [
                bin_path("etcd"),
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.dir / ("etcd.log" if self._etcd_starts == 1 else f"etcd.{self._etcd_starts}.log"),
            netns=self.netns,
        )
        self.etcd.wait_ready(lambda: self._get(f"{self.etcd_url}/health") == 200, timeout=30)

    def _start_apiserver(self, *, retry: bool = True) -> None:
        for attempt in range(1, BIND_ATTEMPTS + 1):
            try:
                return self._start_apiserver_once()
            except NotReady:
                assert self.apiserver is not None
                self.apiserver.stop(timeout=20)
                if not retry or self._fixed_port or attempt == BIND_ATTEMPTS:
                    raise
                if not in_use_error(self.apiserver.log):
                    raise
                self.port = free_port()
                self._write_kubeconfig()

    def _start_apiserver_once(self) -> None:
        pki = self.dir / "pki"
        self._starts += 1
        self.apiserver = Process(
            "kube-apiserver",
            [
                bin_path("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--secure-port={self.port}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--allow-privileged=true",
                f"--disable-admission-plugins={self.disable_admission_plugins}",
                f"--authorization-mode={self.authorization_mode}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                f"--service-account-issuer={self.url}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--watch-cache-sizes=podtemplates#0",
                "--profiling=false",
                *self.extra_args,
            ],
            self.dir / f"kube-apiserver.{self._starts}.log",
            netns=self.netns,
        )
        self.apiserver.wait_ready(lambda: self._get(f"{self.url}/readyz") == 200, timeout=60)

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port with the same etcd."""
        assert self.apiserver is not None
        self.apiserver.stop(timeout=20)
        self._start_apiserver(retry=False)  # same port: clients hold its URL

    def stop(self) -> None:
        """API server first: one whose etcd is gone takes more than 20 s to exit."""
        if self.apiserver is not None:
            self.apiserver.stop(timeout=20)
        if self.etcd is not None:
            self.etcd.stop(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests -------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def compact(self) -> int:
        """Compact etcd at its current revision; every older resourceVersion then expires."""
        rev = int(
            self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
        )
        self._etcd_post("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        req = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def _get(self, url: str) -> int:
        if self.netns:
            with _entered(f"/run/netns/{self.netns}"):
                return self._get_here(url)
        return self._get_here(url)

    def _get_here(self, url: str) -> int:
        ctx = self.ssl_context() if url.startswith("https") else None
        req = urllib.request.Request(url)
        if url.startswith(self.url):
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
            return int(resp.status)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
