"""TLS termination from ``kubernetes.io/tls`` Secrets: certificate checks, last-good fallback, SNI
filter chains and the SDS resources that carry the certificates to Envoy.

A TailscaleServices port with ``tls`` entries terminates TLS in Envoy. Each entry names a Secret
of its namespace (``tls.crt``: PEM chain, leaf first; ``tls.key``: PEM key; base64 in ``data``
as the API server keeps it, or plain in ``stringData`` as a standalone file may write it) and the
SNI names it answers. Translation checks each certificate (:func:`check_certificate`, with the
``cryptography`` package): it must parse, its key must belong to the leaf, and the leaf must be
valid now (``notBefore`` ≤ now < ``notAfter``). The listener gets one filter chain per entry,
matched on ``server_names`` (Envoy's ``filter_chain_match``; the ``tls_inspector`` listener
filter reads the SNI), with a ``DownstreamTlsContext`` that names the certificate by SDS
(``tls_certificate_sds_secret_configs``, over ADS): the key reaches Envoy only through tsgw's
xDS server, never a file in the pod. A changed Secret is a new SDS ``Secret`` of the same name;
Envoy uses it for new handshakes and keeps the open connections (Envoy's SDS docs: "the
listener is not drained").

A certificate that fails the checks leaves the object with ``CertificatesReady=False``
(``SecretNotFound``, ``InvalidCertificate``, ``CertificateExpired``, ``CertificateNotYetValid``,
``DuplicateHostname``) and, when this Translator validated one from the same Secret before, the
last good certificate keeps serving (:class:`LastGood`, held by the Translator, pruned to the
Secrets live objects still name). With no good certificate ever, the entry's chain is left out;
a port with no chain left is not served. Expiry is judged when the object or Secret changes,
not on a timer.

Envoy's references: ``extensions.transport_sockets.tls.v3`` (DownstreamTlsContext, SdsSecretConfig,
Secret) and ``config.listener.v3.FilterChainMatch.server_names``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2

from tsgw import api
from tsgw.model import Condition, Listener, Protocol, ProxyGroup, TlsCertificate, TlsSecret

__all__ = [
    "CERTIFICATES_READY",
    "TLS_SECRET_TYPE",
    "LastGood",
    "PortTls",
    "TlsProblem",
    "apply_filter_chains",
    "certificate_condition",
    "check_certificate",
    "index_secrets",
    "read_tls_secret",
    "referenced",
    "resolve_port",
    "sds_secrets",
    "secret_deps",
]

CERTIFICATES_READY = "CertificatesReady"
"""Condition of a TailscaleServices with TLS ports: every certificate is valid and served."""

TLS_SECRET_TYPE = "kubernetes.io/tls"
_SECRET_TYPE_URL = "type.googleapis.com/" + secret_pb2.Secret.DESCRIPTOR.full_name


class TlsProblem(Exception):
    """Why a Secret's certificate cannot serve: a condition reason and a message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _field(raw: Mapping[str, Any], key: str) -> bytes | None:
    data = raw.get("data") or {}
    if isinstance(data, Mapping) and isinstance(data.get(key), str):
        try:
            return base64.b64decode(data[key], validate=True)
        except (binascii.Error, ValueError):
            raise TlsProblem("InvalidCertificate", f"data[{key!r}] is not base64") from None
    plain = raw.get("stringData") or {}
    if isinstance(plain, Mapping) and isinstance(plain.get(key), str):
        return str(plain[key]).encode()
    return None


def read_tls_secret(raw: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a ``kubernetes.io/tls`` Secret; :class:`TlsProblem` otherwise."""
    kind = raw.get("type")
    if kind != TLS_SECRET_TYPE:
        raise TlsProblem("InvalidCertificate", f"the Secret's type is {kind!r}, not {TLS_SECRET_TYPE!r}")
    chain, key = _field(raw, "tls.crt"), _field(raw, "tls.key")
    if not chain or not key:
        raise TlsProblem("InvalidCertificate", "the Secret lacks tls.crt or tls.key")
    return chain, key


def _public(key: Any) -> bytes:
    out: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return out


def check_certificate(chain: bytes, key: bytes, now: datetime.datetime) -> str:
    """Check a PEM chain and key as Envoy would need them; returns the leaf's notAfter (RFC 3339).

    Raises :class:`TlsProblem`: ``InvalidCertificate`` (no certificate, unparsable, the key not
    the leaf's), ``CertificateNotYetValid``, ``CertificateExpired``. Pure: ``now`` is given."""
    try:
        certs = x509.load_pem_x509_certificates(chain)
    except ValueError as e:
        raise TlsProblem("InvalidCertificate", f"tls.crt is not a PEM certificate chain ({e})") from None
    try:
        private: PrivateKeyTypes = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise TlsProblem(
            "InvalidCertificate", f"tls.key is not an unencrypted PEM private key ({e})"
        ) from None
    leaf = certs[0]
    if _public(private.public_key()) != _public(leaf.public_key()):
        raise TlsProblem("InvalidCertificate", "tls.key is not the key of the first certificate in tls.crt")
    not_after = leaf.not_valid_after_utc
    if now < leaf.not_valid_before_utc:
        raise TlsProblem(
            "CertificateNotYetValid", f"the certificate is valid from {leaf.not_valid_before_utc.isoformat()}"
        )
    if now >= not_after:
        raise TlsProblem("CertificateExpired", f"the certificate expired at {not_after.isoformat()}")
    return not_after.isoformat()


@dataclass
class LastGood:
    """The last certificate each Secret (``namespace/name``) held that passed the checks: what
    keeps serving while the Secret holds a bad one. One per Translator, never global."""

    by_secret: dict[str, TlsSecret] = field(default_factory=dict)

    def prune(self, live: Iterable[str]) -> None:
        keep = set(live)
        for k in [k for k in self.by_secret if k not in keep]:
            del self.by_secret[k]


def _fp(raw: Mapping[str, Any] | None) -> Any:
    if raw is None:
        return None
    md = raw.get("metadata") or {}
    rv = md.get("resourceVersion")
    if rv:
        return (md.get("uid"), rv)
    h = hashlib.sha256(repr((raw.get("type"), raw.get("data"), raw.get("stringData"))).encode())
    return h.digest()


def referenced(spec: api.TailscaleServicesSpec, namespace: str) -> tuple[str, ...]:
    """``namespace/name`` of every Secret the object's ports name, sorted."""
    return tuple(sorted({f"{namespace}/{t.secret_name}" for p in spec.ports for t in p.tls}))


def secret_deps(secrets: Mapping[str, Mapping[str, Any]], spec: Any, namespace: str) -> tuple[Any, ...]:
    """What an object's translation reads of the Secrets (for the Translator's reuse check)."""
    if not isinstance(spec, api.TailscaleServicesSpec):
        return ()
    return tuple((k, _fp(secrets.get(k))) for k in referenced(spec, namespace))


@dataclass
class PortTls:
    """What one port's ``tls`` entries resolved to."""

    certificates: tuple[TlsCertificate, ...] = ()
    secrets: tuple[TlsSecret, ...] = ()
    problems: tuple[tuple[str, str], ...] = ()
    """(reason, message) for each entry that is not served as written."""


def resolve_port(
    secrets: Mapping[str, Mapping[str, Any]],
    last_good: LastGood,
    namespace: str,
    port: api.IngressPort,
    now: datetime.datetime,
) -> PortTls:
    """The certificates a port presents: each entry's Secret checked, the last good one used
    when it fails, entries without any good certificate (and repeated hostnames) left out."""
    certs: list[TlsCertificate] = []
    served: dict[str, TlsSecret] = {}
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in port.tls:
        key = f"{namespace}/{entry.secret_name}"
        names = entry.hostnames or ("",)
        clash = sorted(n or "(any name)" for n in names if n in seen)
        if clash:
            problems.append(
                (
                    "DuplicateHostname",
                    f"port {port.port}: Secret {entry.secret_name!r} repeats {', '.join(clash)}; "
                    "the first entry serves it",
                )
            )
            continue
        good = _resolve(secrets.get(key), key, entry.secret_name, last_good, now, problems, port.port)
        if good is None:
            continue
        seen.update(names)
        served[good.name] = good
        certs.append(TlsCertificate(good.name, tuple(entry.hostnames)))
    return PortTls(tuple(certs), tuple(served[k] for k in sorted(served)), tuple(problems))


def _resolve(
    raw: Mapping[str, Any] | None,
    key: str,
    name: str,
    last_good: LastGood,
    now: datetime.datetime,
    problems: list[tuple[str, str]],
    port: int,
) -> TlsSecret | None:
    try:
        if raw is None:
            raise TlsProblem("SecretNotFound", "the Secret does not exist")
        chain, pem_key = read_tls_secret(raw)
        not_after = check_certificate(chain, pem_key, now)
    except TlsProblem as e:
        old = last_good.by_secret.get(key)
        if old is not None and now < datetime.datetime.fromisoformat(old.not_after):
            tail = f"; the last good certificate (valid until {old.not_after}) keeps serving"
        else:
            old, tail = None, f"; port {port} does not serve this certificate"
        problems.append((e.reason, f"Secret {name!r}: {e.message}{tail}"))
        return old
    good = TlsSecret(key, chain, pem_key, not_after)
    last_good.by_secret[key] = good
    return good


def certificate_condition(problems: Iterable[tuple[str, str]]) -> Condition:
    """``CertificatesReady``: True, or False with the first problem's reason and every message."""
    found = list(dict.fromkeys(problems))
    if not found:
        return Condition(CERTIFICATES_READY, True, "Valid", "every certificate is valid and served")
    return Condition(CERTIFICATES_READY, False, found[0][0], "; ".join(m for _, m in found))


def index_secrets(secrets: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Secrets by ``namespace/name``."""
    out: dict[str, Mapping[str, Any]] = {}
    for s in secrets:
        md = s.get("metadata") or {}
        out[f"{md.get('namespace', '')}/{md.get('name', '')}"] = s
    return out


# --- Envoy ------------------------------------------------------------------------------------


def _any(msg: Any) -> any_pb2.Any:
    return any_pb2.Any(
        type_url="type.googleapis.com/" + msg.DESCRIPTOR.full_name,
        value=msg.SerializeToString(deterministic=True),
    )


_TLS_INSPECTOR = _any(tls_inspector_pb2.TlsInspector())


def _transport_socket(secret: str, http: bool) -> base_pb2.TransportSocket:
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    if http:
        common.alpn_protocols.extend(("h2", "http/1.1"))
    sds = common.tls_certificate_sds_secret_configs.add(name=secret)
    sds.sds_config.ads.SetInParent()
    sds.sds_config.resource_api_version = config_source_pb2.V3
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=_any(ctx))


def apply_filter_chains(msg: listener_pb2.Listener, li: Listener) -> None:
    """Turn a listener's one filter chain into one TLS chain per certificate, matched by SNI, and
    read the SNI (``tls_inspector``, after the PROXY protocol filter)."""
    if not li.tls:
        return
    if not any(f.name == "envoy.filters.listener.tls_inspector" for f in msg.listener_filters):
        msg.listener_filters.add(name="envoy.filters.listener.tls_inspector").typed_config.CopyFrom(
            _TLS_INSPECTOR
        )
    template = listener_components_pb2.FilterChain()
    template.CopyFrom(msg.filter_chains[0])
    del msg.filter_chains[:]
    http = li.protocol in (Protocol.HTTP, Protocol.GRPC)
    for i, cert in enumerate(li.tls):
        chain = msg.filter_chains.add()
        chain.CopyFrom(template)
        chain.name = f"tls-{i}"
        chain.filter_chain_match.server_names.extend(cert.hostnames)
        chain.transport_socket.CopyFrom(_transport_socket(cert.secret, http))


def sds_secrets(group: ProxyGroup) -> tuple[secret_pb2.Secret, ...]:
    """The group's certificates as SDS ``Secret`` resources, by name."""
    out = []
    for s in sorted(group.secrets, key=lambda s: s.name):
        msg = secret_pb2.Secret(name=s.name)
        msg.tls_certificate.certificate_chain.inline_bytes = s.certificate_chain
        msg.tls_certificate.private_key.inline_bytes = s.private_key
        out.append(msg)
    return tuple(out)
