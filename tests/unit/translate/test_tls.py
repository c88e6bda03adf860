"""TLS from Secrets: certificate checks, SNI filter chains, SDS secrets, the CertificatesReady
condition and the last good certificate, as pure functions of the inputs."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from tests.support.certs import CA, tls_secret
from tests.unit.translate._cases import load_case
from tsgw.translate import Inputs, Translator
from tsgw.translate._tls import TlsProblem, check_certificate, read_tls_secret

NOW = datetime.datetime.now(datetime.UTC)
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


def _services(tls: list[dict[str, Any]], protocol: str = "HTTP") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.tailscale.com/v1alpha1",
        "kind": "TailscaleServices",
        "metadata": {"name": "web", "namespace": "apps", "uid": "web-uid", "generation": 3},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "ports": [{"port": 443, "protocol": protocol, "targetPort": 8080, "tls": tls}],
            "backends": [{"service": "web-v1"}],
        },
    }


_BASE = load_case("services_http_rules")


def _inputs(obj: dict[str, Any], *secrets: dict[str, Any]) -> Inputs:
    base = _BASE
    others = [o for o in base.objects if o.get("kind") != "TailscaleServices"]
    return Inputs(
        objects=[*others, obj],
        services=base.services,
        endpoint_slices=base.endpoint_slices,
        tailnets=base.tailnets,
        secrets=list(secrets),
    )


def _condition(result: Any) -> Any:
    st = result.model.status("TailscaleServices", "apps", "web")
    return next(c for c in st.conditions if c.type == "CertificatesReady")


def _listener(result: Any) -> listener_pb2.Listener:
    (li,) = result.xds[("apps", "web-tssvc")].listeners
    return li


def _served(result: Any) -> dict[str, bytes]:
    return {
        s.name: s.tls_certificate.certificate_chain.inline_bytes
        for s in result.xds[("apps", "web-tssvc")].secrets
    }


def test_a_good_certificate_and_its_key_pass(ca: CA) -> None:
    leaf = ca.issue("web.example.com")
    assert check_certificate(leaf.chain, leaf.key, NOW) > NOW.isoformat()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (
            {"not_after": datetime.timedelta(hours=-1), "not_before": datetime.timedelta(days=-2)},
            "CertificateExpired",
        ),
        ({"not_before": datetime.timedelta(days=1)}, "CertificateNotYetValid"),
    ],
)
def test_a_certificate_outside_its_validity_is_refused(ca: CA, kwargs: Any, reason: str) -> None:
    leaf = ca.issue("web.example.com", **kwargs)
    with pytest.raises(TlsProblem) as e:
        check_certificate(leaf.chain, leaf.key, NOW)
    assert e.value.reason == reason


def test_a_key_of_another_certificate_or_garbage_is_invalid(ca: CA) -> None:
    a, b = ca.issue("a.example.com"), ca.issue("b.example.com")
    for chain, key in ((a.chain, b.key), (b"not pem", a.key), (a.chain, b"not a key")):
        with pytest.raises(TlsProblem) as e:
            check_certificate(chain, key, NOW)
        assert e.value.reason == "InvalidCertificate"


def test_a_secret_of_another_type_or_without_keys_is_invalid(ca: CA) -> None:
    raw = tls_secret("apps", "web-tls", ca.issue("web.example.com"))
    assert read_tls_secret(raw)[0].startswith(b"-----BEGIN CERTIFICATE-----")
    for bad in ({**raw, "type": "Opaque"}, {**raw, "data": {"tls.crt": raw["data"]["tls.crt"]}}):
        with pytest.raises(TlsProblem):
            read_tls_secret(bad)


def test_each_certificate_is_a_filter_chain_matched_by_sni_and_delivered_over_sds(ca: CA) -> None:
    a, b = ca.issue("web.example.com"), ca.issue("other.example.com")
    obj = _services([{"secretName": "web-tls", "hostnames": ["web.example.com"]}, {"secretName": "fallback"}])
    result = Translator().translate(
        _inputs(obj, tls_secret("apps", "web-tls", a), tls_secret("apps", "fallback", b))
    )
    assert _condition(result).status is True
    li = _listener(result)
    assert [f.name for f in li.listener_filters] == [
        "envoy.filters.listener.proxy_protocol",
        "envoy.filters.listener.tls_inspector",
    ]
    assert [list(c.filter_chain_match.server_names) for c in li.filter_chains] == [["web.example.com"], []]
    names = []
    for chain in li.filter_chains:
        ctx = tls_pb2.DownstreamTlsContext.FromString(chain.transport_socket.typed_config.value)
        (sds,) = ctx.common_tls_context.tls_certificate_sds_secret_configs
        assert sds.sds_config.HasField("ads")
        assert list(ctx.common_tls_context.alpn_protocols) == ["h2", "http/1.1"]
        assert [f.name for f in chain.filters][-1] == "envoy.filters.network.http_connection_manager"
        names.append(sds.name)
    assert names == ["apps/web-tls", "apps/fallback"]
    assert _served(result) == {"apps/fallback": b.chain, "apps/web-tls": a.chain}
    assert SECRET_TYPE in result.xds[("apps", "web-tssvc")].by_type()


def test_a_tcp_port_terminates_tls_before_tcp_proxy(ca: CA) -> None:
    result = Translator().translate(
        _inputs(
            _services([{"secretName": "web-tls"}], "TCP"),
            tls_secret("apps", "web-tls", ca.issue("x.example")),
        )
    )
    (chain,) = _listener(result).filter_chains
    assert [f.name for f in chain.filters] == ["envoy.filters.network.tcp_proxy"]
    ctx = tls_pb2.DownstreamTlsContext.FromString(chain.transport_socket.typed_config.value)
    assert list(ctx.common_tls_context.alpn_protocols) == []


def test_a_missing_secret_is_a_condition_and_the_port_is_not_served(ca: CA) -> None:
    result = Translator().translate(_inputs(_services([{"secretName": "nope"}])))
    cond = _condition(result)
    assert (cond.status, cond.reason) == (False, "SecretNotFound")
    assert result.xds[("apps", "web-tssvc")].listeners == ()
    assert _served(result) == {}


def test_an_expired_replacement_keeps_the_last_good_certificate_serving(ca: CA) -> None:
    good = ca.issue("web.example.com")
    expired = ca.issue(
        "web.example.com", not_before=datetime.timedelta(days=-3), not_after=datetime.timedelta(days=-1)
    )
    obj = _services([{"secretName": "web-tls"}])
    tr = Translator()
    first = tr.translate(_inputs(obj, tls_secret("apps", "web-tls", good, "1")))
    assert _served(first) == {"apps/web-tls": good.chain}
    second = tr.translate(_inputs(obj, tls_secret("apps", "web-tls", expired, "2")))
    cond = _condition(second)
    assert (cond.status, cond.reason) == (False, "CertificateExpired")
    assert "last good certificate" in cond.message
    assert _served(second) == {"apps/web-tls": good.chain}
    assert len(_listener(second).filter_chains) == 1
    # A fresh Translator never saw the good one: nothing to serve.
    fresh = Translator().translate(_inputs(obj, tls_secret("apps", "web-tls", expired, "2")))
    assert fresh.xds[("apps", "web-tssvc")].listeners == ()
    # A valid replacement serves and clears the condition.
    renewed = ca.issue("web.example.com")
    third = tr.translate(_inputs(obj, tls_secret("apps", "web-tls", renewed, "3")))
    assert _condition(third).status is True
    assert _served(third) == {"apps/web-tls": renewed.chain}


def test_a_rotated_secret_changes_the_group_and_only_the_sds_secret(ca: CA) -> None:
    obj = _services([{"secretName": "web-tls"}])
    tr = Translator()
    first = tr.translate(_inputs(obj, tls_secret("apps", "web-tls", ca.issue("a.example"), "1")))
    second = tr.translate(_inputs(obj, tls_secret("apps", "web-tls", ca.issue("a.example"), "2")))
    assert ("apps", "web-tssvc") in second.changed
    x1, x2 = first.xds[("apps", "web-tssvc")], second.xds[("apps", "web-tssvc")]
    assert x1.listeners == x2.listeners
    assert x1.clusters == x2.clusters
    assert x1.secrets != x2.secrets
    unchanged = tr.translate(_inputs(obj, tls_secret("apps", "web-tls", ca.issue("a.example"), "2")))
    assert ("apps", "web-tssvc") not in unchanged.changed  # same resourceVersion: reused


def test_a_repeated_hostname_is_reported_and_served_by_the_first_entry(ca: CA) -> None:
    obj = _services(
        [{"secretName": "a", "hostnames": ["x.example"]}, {"secretName": "b", "hostnames": ["x.example"]}]
    )
    result = Translator().translate(
        _inputs(
            obj,
            tls_secret("apps", "a", ca.issue("x.example")),
            tls_secret("apps", "b", ca.issue("x.example")),
        )
    )
    cond = _condition(result)
    assert (cond.status, cond.reason) == (False, "DuplicateHostname")
    assert len(_listener(result).filter_chains) == 1
    assert list(_served(result)) == ["apps/a"]


def test_dumps_of_the_resources_never_show_a_private_key(ca: CA) -> None:
    leaf = ca.issue("web.example.com")
    result = Translator().translate(
        _inputs(_services([{"secretName": "web-tls"}]), tls_secret("apps", "web-tls", leaf))
    )
    xds = result.xds[("apps", "web-tssvc")]
    assert xds.to_json()["secrets"] == [{"name": "apps/web-tls", "redacted": True}]
    assert "PRIVATE KEY" not in repr(result.model)


def test_a_last_good_certificate_that_has_expired_itself_is_not_served() -> None:
    from tsgw import api
    from tsgw.model import TlsSecret
    from tsgw.translate._tls import LastGood, resolve_port

    past = (NOW - datetime.timedelta(minutes=1)).isoformat()
    last = LastGood({"apps/web-tls": TlsSecret("apps/web-tls", b"chain", b"key", past)})
    port = api.IngressPort(port=443, tls=(api.IngressTLS(secret_name="web-tls"),))
    out = resolve_port({}, last, "apps", port, NOW)
    assert out.certificates == ()
    assert out.problems[0][0] == "SecretNotFound"
    assert "does not serve" in out.problems[0][1]
