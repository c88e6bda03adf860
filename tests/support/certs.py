"""Test certificates: a CA and leaves it signs, as PEM, with the ``cryptography`` package.

A leaf's validity window is given relative to now, so a test can make an expired or a
not-yet-valid certificate. Keys are EC P-256 (fast to generate)."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CA", "Leaf", "tls_secret"]


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Leaf:
    chain: bytes
    key: bytes
    serial: int


class CA:
    """A self-signed CA that issues server certificates."""

    def __init__(self, name: str = "tsgw test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._name = subject
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *names: str,
        not_before: datetime.timedelta = datetime.timedelta(hours=-1),
        not_after: datetime.timedelta = datetime.timedelta(days=7),
    ) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now + not_before)
            .not_valid_after(now + not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Leaf(cert.public_bytes(serialization.Encoding.PEM) + self.pem, _pem_key(key), serial)


def tls_secret(namespace: str, name: str, leaf: Leaf, resource_version: str | None = None) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret holding ``leaf`` (base64 ``data``, as the API server keeps it)."""
    md: dict[str, Any] = {"namespace": namespace, "name": name}
    if resource_version is not None:
        md["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": md,
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(leaf.chain).decode(),
            "tls.key": base64.b64encode(leaf.key).decode(),
        },
    }
