"""The hooks' pure logic: a TailscaleEndpoints backendRef becomes a DNS cluster to its egress
Service; everything that is not ours is left unchanged."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.translate._strategies import _valid, api_object
from tsgw import api, translate
from tsgw.extension import (
    ExtensionOptions,
    contexts,
    messages,
    post_cluster_modify,
    post_translate_modify,
    tailnet_backend,
)
from tsgw.model import Protocol

OPTS = ExtensionOptions()
ENDPOINTS = next(k for k in api.KINDS if k.kind == "TailscaleEndpoints")


def endpoints(name: str = "db", namespace: str = "apps", ports: Any = None) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": "TailscaleEndpoints",
        "metadata": {"name": name, "namespace": namespace, "uid": "u1", "resourceVersion": "7"},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "targets": [
                {
                    "name": "a",
                    "address": "100.64.0.7",
                    "ports": ports or [{"port": 8080, "protocol": "HTTP"}],
                }
            ],
        },
        "status": {"conditions": []},
    }


def eg_cluster(name: str = "httproute/apps/web/rule/0") -> cluster_pb2.Cluster:
    """A cluster as Envoy Gateway builds it for a custom backend: EDS, no endpoints."""
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.connect_timeout.FromSeconds(10)
    c.per_connection_buffer_limit_bytes.value = 32768
    return c


def blob(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def endpoints_of(c: cluster_pb2.Cluster) -> list[tuple[str, int]]:
    return [
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for loc in c.load_assignment.endpoints
        for lb in loc.lb_endpoints
    ]


def test_a_tailscale_endpoints_becomes_a_dns_cluster_to_its_egress_service() -> None:
    original = eg_cluster()
    before = original.SerializeToString(deterministic=True)
    answer = post_cluster_modify(original, [blob(endpoints())], OPTS)
    c = answer.cluster
    assert c is not None
    assert c.name == "httproute/apps/web/rule/0"
    assert c.type == cluster_pb2.Cluster.STRICT_DNS
    assert not c.HasField("eds_cluster_config")
    assert c.load_assignment.cluster_name == c.name
    assert endpoints_of(c) == [("db.apps.svc.cluster.local", 8080)]
    assert c.dns_refresh_rate.ToNanoseconds() == 5_000_000_000
    assert [loc.load_balancing_weight.value for loc in c.load_assignment.endpoints] == [1]
    # What Envoy Gateway set is kept; its own message is not touched.
    assert c.connect_timeout.seconds == 10
    assert c.per_connection_buffer_limit_bytes.value == 32768
    assert original.SerializeToString(deterministic=True) == before
    assert answer.problems == ()
    assert [(b.namespace, b.name, b.port, b.protocol) for b in answer.backends] == [
        ("apps", "db", 8080, Protocol.HTTP)
    ]


def test_the_service_is_the_one_translation_owns() -> None:
    # The egress Service tsgw applies for a TailscaleEndpoints has this name and these ports.
    obj = api.load(endpoints(ports=[{"port": 80, "protocol": "HTTP"}, {"port": 5432}]))
    assert translate.egress_service_name("db") == "db"
    assert translate.egress_service_ports(obj.spec) == ((80, Protocol.HTTP), (5432, Protocol.TCP))


def test_the_cluster_domain_is_an_option() -> None:
    answer = post_cluster_modify(eg_cluster(), [blob(endpoints())], ExtensionOptions(cluster_domain="k.test"))
    assert answer.cluster is not None
    assert endpoints_of(answer.cluster) == [("db.apps.svc.k.test", 8080)]


@pytest.mark.parametrize(
    ("route", "ports", "want"),
    [
        ("httproute", [{"port": 9000, "protocol": "GRPC"}, {"port": 8080, "protocol": "HTTP"}], 8080),
        ("grpcroute", [{"port": 9000, "protocol": "GRPC"}, {"port": 8080, "protocol": "HTTP"}], 9000),
        ("httproute", [{"port": 9000, "protocol": "GRPC"}, {"port": 5432, "protocol": "TCP"}], 9000),
        ("httproute", [{"port": 443, "protocol": "TLS"}, {"port": 5432, "protocol": "TCP"}], 5432),
        ("httproute", [{"port": 81, "protocol": "HTTP"}, {"port": 80, "protocol": "HTTP"}], 80),
    ],
)
def test_the_port_suits_the_route(route: str, ports: list[dict[str, Any]], want: int) -> None:
    answer = post_cluster_modify(eg_cluster(f"{route}/apps/web/rule/0"), [blob(endpoints(ports=ports))], OPTS)
    assert answer.cluster is not None
    assert endpoints_of(answer.cluster) == [("db.apps.svc.cluster.local", want)]


def test_grpc_settings_envoy_gateway_made_are_kept() -> None:
    c = eg_cluster("grpcroute/apps/rpc/rule/0")
    opts = protocol_pb2.Http2ProtocolOptions()
    c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Pack(opts)
    answer = post_cluster_modify(c, [blob(endpoints(ports=[{"port": 9000, "protocol": "GRPC"}]))], OPTS)
    assert answer.cluster is not None
    assert set(answer.cluster.typed_extension_protocol_options) == set(c.typed_extension_protocol_options)


def test_several_tailscale_endpoints_in_a_rule_are_endpoints_of_one_cluster_in_order() -> None:
    resources = [blob(endpoints("zeta")), blob(endpoints("alpha")), blob(endpoints("zeta"))]
    answer = post_cluster_modify(eg_cluster(), resources, OPTS)
    assert answer.cluster is not None
    assert endpoints_of(answer.cluster) == [
        ("alpha.apps.svc.cluster.local", 8080),
        ("zeta.apps.svc.cluster.local", 8080),
    ]


def test_resources_of_others_beside_ours_are_ignored() -> None:
    pool = {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "p"},
    }
    answer = post_cluster_modify(eg_cluster(), [blob(pool), blob(endpoints())], OPTS)
    assert answer.cluster is not None
    assert endpoints_of(answer.cluster) == [("db.apps.svc.cluster.local", 8080)]


@pytest.mark.parametrize(
    "resource",
    [
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "p"}},
        {"apiVersion": "example.com/v1", "kind": "TailscaleEndpoints", "metadata": {"name": "x"}},
        {"apiVersion": api.API_VERSION, "kind": "TailscaleServices", "metadata": {"name": "x"}},
        [],
        "not an object",
    ],
)
def test_not_ours_is_unchanged(resource: Any) -> None:
    assert post_cluster_modify(eg_cluster(), [orjson.dumps(resource)], OPTS).cluster is None
    assert post_cluster_modify(eg_cluster(), [b"\xff not json"], OPTS).cluster is None
    assert post_cluster_modify(eg_cluster(), [], OPTS).cluster is None


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (endpoints(ports=[{"port": 443, "protocol": "TLS"}]), "has no HTTP, GRPC or TCP port"),
        ({**endpoints(), "spec": {"targets": []}}, "is invalid"),
        ({**endpoints(), "metadata": {"name": "db"}}, "is invalid"),
    ],
)
def test_an_unusable_object_of_ours_is_a_problem_and_leaves_the_cluster_as_built(
    obj: dict[str, Any], problem: str
) -> None:
    answer = post_cluster_modify(eg_cluster(), [blob(obj)], OPTS)
    assert answer.cluster is None
    assert len(answer.problems) == 1
    assert problem in answer.problems[0]


def test_a_usable_object_beside_an_unusable_one_still_gives_the_cluster() -> None:
    bad = endpoints("tls", ports=[{"port": 443, "protocol": "TLS"}])
    answer = post_cluster_modify(eg_cluster(), [blob(bad), blob(endpoints())], OPTS)
    assert answer.cluster is not None
    assert endpoints_of(answer.cluster) == [("db.apps.svc.cluster.local", 8080)]
    assert len(answer.problems) == 1


# properties ---------------------------------------------------------------------------------------

_names = st.sampled_from(
    ["httproute/apps/web/rule/0", "grpcroute/apps/rpc/rule/2", "tcproute/a/b/rule/0", ""]
)
_foreign = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["v1", "example.com/v1", "gateway.tailscale.com.evil/v1alpha1"]),
        "kind": st.sampled_from(["TailscaleEndpoints", "Service", "InferencePool", "Backend"]),
        "metadata": st.fixed_dictionaries({"name": st.text(max_size=8), "namespace": st.text(max_size=8)}),
        "spec": st.dictionaries(st.text(max_size=5), st.integers(-9, 9), max_size=3),
    }
)
_port = st.fixed_dictionaries(
    {"port": st.sampled_from([80, 443, 5432, 8080, 9000])},
    optional={"protocol": st.sampled_from(["TCP", "HTTP", "GRPC", "TLS"]), "targetPort": st.integers(1, 9)},
)
_target = st.fixed_dictionaries(
    {
        "address": st.sampled_from(["100.64.0.7", "db-eu-1", "db.tail1234.ts.net"]),
        "ports": st.lists(_port, min_size=1, max_size=3, unique_by=lambda p: p["port"]),
    },
    optional={"weight": st.integers(1, 9), "priority": st.integers(0, 3)},
)
_ours = st.builds(
    lambda name, targets: {
        "apiVersion": api.API_VERSION,
        "kind": "TailscaleEndpoints",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "targets": [{"name": f"t{i}", **t} for i, t in enumerate(targets)],
        },
    },
    st.sampled_from(["db", "web", "a-b", "x"]),
    st.lists(_target, min_size=1, max_size=3),
)
# Schema-valid objects of every shape tsgw.api declares (fewer, since most are filtered out).
_generated = api_object(ENDPOINTS, 0).filter(_valid)


@given(
    name=_names, foreign=st.lists(_foreign, max_size=4), garbage=st.lists(st.binary(max_size=20), max_size=2)
)
def test_property_resources_that_are_not_ours_leave_the_cluster_unchanged(
    name: str, foreign: list[dict[str, Any]], garbage: list[bytes]
) -> None:
    answer = post_cluster_modify(eg_cluster(name), [*map(blob, foreign), *garbage], OPTS)
    assert answer.cluster is None
    assert answer.backends == answer.problems == ()


@given(name=_names, ours=st.lists(_ours, min_size=1, max_size=4), foreign=st.lists(_foreign, max_size=2))
def test_property_ours_give_the_expected_cluster(
    name: str, ours: list[dict[str, Any]], foreign: list[dict[str, Any]]
) -> None:
    check_ours(name, ours, foreign)


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow], max_examples=30)
@given(name=_names, one=_generated)
def test_property_any_schema_valid_object_of_ours_gives_the_expected_cluster(
    name: str, one: dict[str, Any]
) -> None:
    check_ours(name, [one], [])


def check_ours(name: str, ours: list[dict[str, Any]], foreign: list[dict[str, Any]]) -> None:
    original = eg_cluster(name)
    before = original.SerializeToString(deterministic=True)
    answer = post_cluster_modify(original, [*map(blob, foreign), *map(blob, ours)], OPTS)
    assert original.SerializeToString(deterministic=True) == before  # the input is never changed
    want: dict[tuple[str, int], None] = {}
    for raw in ours:
        found = tailnet_backend(raw, name.partition("/")[0], OPTS)
        if not isinstance(found, str):
            ports = dict(translate.egress_service_ports(api.load(raw).spec))
            assert ports[found.port] is found.protocol
            assert found.protocol is not Protocol.TLS
            want[(f"{raw['metadata']['name']}.apps.svc.cluster.local", found.port)] = None
    if not want:
        assert answer.cluster is None
        assert len(answer.problems) == len(ours)
        return
    c = answer.cluster
    assert c is not None
    assert c.name == name
    assert c.type == cluster_pb2.Cluster.STRICT_DNS
    assert not c.HasField("eds_cluster_config")
    assert c.connect_timeout.seconds == 10
    assert endpoints_of(c) == sorted(want)
    # Deterministic: the same request gives the same bytes, whatever the resources' order.
    again = post_cluster_modify(eg_cluster(name), [*map(blob, reversed(ours)), *map(blob, foreign)], OPTS)
    assert again.cluster is not None
    assert again.cluster.SerializeToString(deterministic=True) == c.SerializeToString(deterministic=True)


# PostTranslateModify: every list back, byte for byte -----------------------------------------------

_cluster = st.builds(
    lambda name, kind, timeout, extra: (
        cluster_pb2.Cluster(name=name, type=kind, connect_timeout={"seconds": timeout}).SerializeToString()
        + extra
    ),
    st.text(max_size=30),
    st.sampled_from([cluster_pb2.Cluster.EDS, cluster_pb2.Cluster.STRICT_DNS, cluster_pb2.Cluster.STATIC]),
    st.integers(0, 3600),
    # Fields this protobuf version does not know (a newer Envoy's): they must survive too.
    st.sampled_from([b"", b"\xf8\xff\x03\x07", b"\x82\x80\x04\x03abc"]),
)
_named = st.text(max_size=20).map(lambda n: secret_pb2.Secret(name=n).SerializeToString())
_listener = st.text(max_size=20).map(lambda n: listener_pb2.Listener(name=n).SerializeToString())
_route = st.text(max_size=20).map(lambda n: route_pb2.RouteConfiguration(name=n).SerializeToString())


def _field(number: int, payload: bytes) -> bytes:
    out = bytearray()
    for value in (number << 3 | 2, len(payload)):
        while value > 0x7F:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def context_bytes(raw: bytes) -> bytes:
    """A PostTranslateExtensionContext with one resource, serialized."""
    return contexts.PostTranslateExtensionContext(
        extension_resources=[contexts.ExtensionResource(unstructured_bytes=raw)]
    ).SerializeToString()


@given(
    entries=st.lists(
        st.one_of(
            st.tuples(st.just(1), st.binary(max_size=40).map(context_bytes)),
            st.tuples(st.just(2), _cluster),
            st.tuples(st.just(3), _named),
            st.tuples(st.just(4), _listener),
            st.tuples(st.just(5), _route),
        ),
        max_size=12,
    )
)
def test_property_post_translate_modify_gives_every_list_back_byte_for_byte(
    entries: list[tuple[int, bytes]],
) -> None:
    request = b"".join(_field(n, payload) for n, payload in entries)
    answer = post_translate_modify(request)
    # The answer is the request's resources, in order, each under its response field number.
    assert answer == b"".join(_field(n - 1, payload) for n, payload in entries if n != 1)
    # And Envoy Gateway reads back what it sent.
    sent = messages.PostTranslateModifyRequest.FromString(request)
    got = messages.PostTranslateModifyResponse.FromString(answer)
    assert list(got.clusters) == list(sent.clusters)
    assert list(got.secrets) == list(sent.secrets)
    assert list(got.listeners) == list(sent.listeners)
    assert list(got.routes) == list(sent.routes)


def test_post_translate_modify_refuses_what_is_not_a_message() -> None:
    with pytest.raises(ValueError, match="truncated"):
        post_translate_modify(b"\x12\x05ab")
    assert post_translate_modify(b"") == b""
