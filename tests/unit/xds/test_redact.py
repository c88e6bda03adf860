"""Dumps of a snapshot (the admin API's GetSnapshot, `tsgw snapshot dump`) never carry secret
material: SDS secrets' private keys and other secret data sources are redacted."""

from __future__ import annotations

import json

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from tsgw.xds import SecretDiscovery, Snapshot
from tsgw.xds._redact import REDACTED, redact_secret

KEY = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
CHAIN = b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


def test_a_snapshot_dump_shows_the_chain_but_never_the_key() -> None:
    s = secret_pb2.Secret(name="apps/web-tls")
    s.tls_certificate.certificate_chain.inline_bytes = CHAIN
    s.tls_certificate.private_key.inline_bytes = KEY
    g = secret_pb2.Secret(name="ticket")
    g.session_ticket_keys.keys.add(inline_bytes=b"k" * 80)
    generic = secret_pb2.Secret(name="generic")
    generic.generic_secret.secret.inline_string = "hunter2"
    snap = Snapshot({SecretDiscovery: [s, g, generic]})
    text = json.dumps(snap.to_dict())
    for secret in ("QUFBQ", "AAAA", "hunter2", "a2tr"):
        assert secret not in text
    res = snap.to_dict()["types"]["sds"]["resources"]
    assert res["apps/web-tls"]["tls_certificate"]["certificate_chain"]["inline_bytes"]
    assert res["apps/web-tls"]["tls_certificate"]["private_key"]["redacted"].startswith(REDACTED)
    # The wire bytes Envoy gets are untouched.
    (wire,) = [r for n, r in snap.resources(SecretDiscovery).items.items() if n == "apps/web-tls"]
    assert secret_pb2.Secret.FromString(wire.data).tls_certificate.private_key.inline_bytes == KEY


def test_redaction_keeps_what_identifies_the_secret() -> None:
    doc = {
        "name": "x",
        "tls_certificate": {"private_key": {"filename": "/k"}, "certificate_chain": {"filename": "/c"}},
    }
    out = redact_secret(doc)
    assert out["tls_certificate"]["certificate_chain"] == {"filename": "/c"}
    assert out["tls_certificate"]["private_key"] == {"redacted": REDACTED}
    assert doc["tls_certificate"]["private_key"] == {"filename": "/k"}  # input untouched


def test_a_listener_naming_a_secret_the_snapshot_lacks_is_inconsistent() -> None:
    import pytest
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

    from tsgw.xds import InconsistentSnapshotError, ListenerDiscovery

    li = listener_pb2.Listener(name="l")
    li.address.socket_address.address = "127.0.0.1"
    li.address.socket_address.port_value = 1
    chain = li.filter_chains.add()
    ctx = tls_pb2.DownstreamTlsContext()
    ctx.common_tls_context.tls_certificate_sds_secret_configs.add(name="apps/web-tls")
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.Pack(ctx)
    with pytest.raises(InconsistentSnapshotError, match="apps/web-tls"):
        Snapshot({ListenerDiscovery: [li]})
    s = secret_pb2.Secret(name="apps/web-tls")
    s.tls_certificate.certificate_chain.inline_bytes = CHAIN
    assert Snapshot({ListenerDiscovery: [li], SecretDiscovery: [s]}).counts()[SecretDiscovery] == 1
