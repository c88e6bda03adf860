"""Route access: a TailscaleRouteAccess that Envoy Gateway passes with a route becomes that
route's HTTP RBAC configuration, with the first-match semantics of the policy's rules; every
HTTP connection manager gets the RBAC filter (no rules: enforces nothing) before its router;
everything that is not ours leaves the route unchanged."""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.translate._strategies import object_of
from tsgw import api, translate
from tsgw.extension import (
    RBAC_FILTER,
    ROUTE_ACCESS_KIND,
    post_http_listener_modify,
    post_route_modify,
    route_access_policy,
)
from tsgw.model import AccessPolicy, AccessRule

ROUTES = "gateway.networking.k8s.io"


def access(
    name: str = "p",
    rules: list[dict[str, Any]] | None = None,
    default: str = "Deny",
    created: str = "2026-01-01T00:00:00Z",
    namespace: str = "apps",
) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": ROUTE_ACCESS_KIND,
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, "generation": 3},
        "spec": {
            "policy": name,
            "targetRefs": [{"group": ROUTES, "kind": "HTTPRoute", "name": "web"}],
            "rules": rules if rules is not None else [{"action": "Allow", "cidrs": ["100.64.0.1/32"]}],
            "defaultAction": default,
        },
        # What Envoy Gateway's own translation set before calling (it drops the stored status).
        "status": {
            "ancestors": [{"ancestorRef": {"name": "eg"}, "controllerName": "gateway.envoyproxy.io/x"}]
        },
    }


def _any(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def eg_route(name: str = "httproute/apps/web/rule/0/match/0/*") -> route_components_pb2.Route:
    """A route as Envoy Gateway builds it, with a per-filter configuration of its own."""
    r = route_components_pb2.Route(name=name)
    r.match.prefix = "/"
    r.route.cluster = "httproute/apps/web/rule/0"
    r.typed_per_filter_config["envoy.filters.http.cors"].CopyFrom(_any(cors_pb2.CorsPolicy()))
    r.metadata.filter_metadata["envoy-gateway"]["resources"] = "x"  # type: ignore[index]
    return r


def blob(obj: Any) -> bytes:
    return orjson.dumps(obj)


def rules_of(route: route_components_pb2.Route) -> rbac_config_pb2.RBAC:
    per_route = rbac_pb2.RBACPerRoute()
    assert route.typed_per_filter_config[RBAC_FILTER].Unpack(per_route)
    return per_route.rbac.rules


def without_ours(route: route_components_pb2.Route) -> bytes:
    r = route_components_pb2.Route()
    r.CopyFrom(route)
    del r.typed_per_filter_config[RBAC_FILTER]
    return r.SerializeToString(deterministic=True)


# --- an evaluator of the RBAC rules Envoy runs (the subset access_rules uses) ------------------


def _principal(p: rbac_config_pb2.Principal, source: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    which = p.WhichOneof("identifier")
    if which == "any":
        return p.any
    if which == "remote_ip":
        net = ipaddress.ip_network(
            f"{p.remote_ip.address_prefix}/{p.remote_ip.prefix_len.value}", strict=False
        )
        return source.version == net.version and source in net
    if which == "or_ids":
        return any(_principal(i, source) for i in p.or_ids.ids)
    if which == "and_ids":
        return all(_principal(i, source) for i in p.and_ids.ids)
    if which == "not_id":
        return not _principal(p.not_id, source)
    raise AssertionError(f"principal {which} not expected")


def envoy_allows(rules: rbac_config_pb2.RBAC, source: str) -> bool:
    addr = ipaddress.ip_address(source)
    matched = any(
        any(_principal(pr, addr) for pr in pol.principals) and any(pe.any for pe in pol.permissions)
        for pol in rules.policies.values()
    )
    return not matched if rules.action == rbac_config_pb2.RBAC.DENY else matched


def first_match(policy: AccessPolicy, source: str) -> bool:
    addr = ipaddress.ip_address(source)
    for rule in policy.rules:
        if any(addr.version == (n := ipaddress.ip_network(c)).version and addr in n for c in rule.cidrs):
            return rule.allow
    return policy.default_allow


# --- PostRouteModify --------------------------------------------------------------------------


def test_a_route_access_becomes_the_routes_rbac_and_nothing_else_changes() -> None:
    original = eg_route()
    before = original.SerializeToString(deterministic=True)
    rules = [{"action": "Deny", "cidrs": ["127.0.0.3/32"]}, {"action": "Allow", "cidrs": ["127.0.0.0/8"]}]
    answer = post_route_modify(original, [blob(access(rules=rules))])
    assert answer.route is not None
    assert answer.policy == "apps/p"
    assert answer.problems == ()
    assert original.SerializeToString(deterministic=True) == before  # the request is not modified
    assert without_ours(answer.route) == before
    got = rules_of(answer.route)
    assert not envoy_allows(got, "127.0.0.3")
    assert envoy_allows(got, "127.0.0.2")
    assert not envoy_allows(got, "10.0.0.1")  # default Deny


def test_the_oldest_of_several_applies_and_the_others_are_reported() -> None:
    older = access("older", [{"action": "Allow", "cidrs": ["10.0.0.1/32"]}], created="2026-01-01T00:00:00Z")
    newer = access("newer", [{"action": "Allow", "cidrs": ["10.0.0.2/32"]}], created="2026-02-01T00:00:00Z")
    for order in ([newer, older], [older, newer]):
        answer = post_route_modify(eg_route(), [blob(o) for o in order])
        assert answer.route is not None
        assert answer.policy == "apps/older"
        assert envoy_allows(rules_of(answer.route), "10.0.0.1")
        assert not envoy_allows(rules_of(answer.route), "10.0.0.2")
        assert answer.problems == (
            "TailscaleRouteAccess apps/newer ignored: apps/older is older and applies",
        )


def test_one_that_cannot_be_read_denies_every_request_of_the_route() -> None:
    for bad in (
        {"rules": [{"action": "Maybe", "cidrs": []}]},
        {"rules": [{"action": "Allow", "cidrs": ["not-a-cidr"]}]},
        {"defaultAction": "Sometimes"},
        {"rules": "all"},
    ):
        obj = access()
        obj["spec"].update(bad)
        answer = post_route_modify(eg_route(), [blob(obj)])
        assert answer.route is not None
        assert not envoy_allows(rules_of(answer.route), "100.64.0.1")
        assert len(answer.problems) == 1
        assert "every request denied" in answer.problems[0]
    no_spec = {k: v for k, v in access().items() if k != "spec"}
    assert post_route_modify(eg_route(), [blob(no_spec)]).problems


def test_the_readers_view_of_an_object_is_what_translate_derived() -> None:
    policy = api.load(
        {
            "apiVersion": api.API_VERSION,
            "kind": "TailscaleRoutePolicy",
            "metadata": {"name": "p", "namespace": "apps", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "tailnetRef": {"name": "corp"},
                "targetRefs": [{"group": ROUTES, "kind": "HTTPRoute", "name": "web"}],
                "access": {
                    "defaultAction": "Deny",
                    "rules": [
                        {"action": "Allow", "tags": ["tag:a"]},
                        {"action": "Deny", "cidrs": ["10.0.0.0/8"]},
                    ],
                },
            },
        }
    )
    facts = translate.TailnetFacts(devices=(translate.Device("a", ("100.64.0.1",), tags=("tag:a",)),))
    [derived] = translate.route_access_objects([policy], {"corp": facts})
    assert route_access_policy(derived) == translate.resolve_access(policy.spec.access, facts)


_foreign = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["v1", "example.com/v1", "gateway.tailscale.com.evil/v1alpha1"]),
        "kind": st.sampled_from([ROUTE_ACCESS_KIND, "TailscaleRoutePolicy", "SecurityPolicy", "Backend"]),
        "metadata": st.fixed_dictionaries({"name": st.text(max_size=8), "namespace": st.text(max_size=8)}),
        "spec": st.dictionaries(st.text(max_size=5), st.integers(-9, 9), max_size=3),
    }
).filter(
    lambda o: not (o["kind"] == ROUTE_ACCESS_KIND and o["apiVersion"].startswith("gateway.tailscale.com/"))
)
_names = st.sampled_from(["httproute/apps/web/rule/0/match/0/*", "grpcroute/a/b/rule/1/match/0/x", ""])


@given(
    name=_names, foreign=st.lists(_foreign, max_size=4), garbage=st.lists(st.binary(max_size=20), max_size=2)
)
def test_property_policies_that_are_not_ours_leave_the_route_unchanged(
    name: str, foreign: list[dict[str, Any]], garbage: list[bytes]
) -> None:
    answer = post_route_modify(eg_route(name), [*map(blob, foreign), *garbage])
    assert answer.route is None
    assert answer.problems == ()


_v4 = st.integers(0, 7).map(lambda i: f"10.0.0.{i}")
_v6 = st.integers(0, 3).map(lambda i: f"fd7a::{i}")
_cidr = st.one_of(
    st.builds(
        lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)),
        _v4,
        st.sampled_from([32, 31, 30, 29]),
    ),
    st.builds(
        lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)), _v6, st.sampled_from([128, 127])
    ),
)
_rule = st.builds(AccessRule, st.booleans(), st.lists(_cidr, max_size=3).map(tuple))
_policy = st.builds(AccessPolicy, st.lists(_rule, max_size=5).map(tuple), st.booleans())


@given(name=_names, policy=_policy, foreign=st.lists(_foreign, max_size=2))
def test_property_the_routes_rbac_decides_as_the_first_matching_rule_does(
    name: str, policy: AccessPolicy, foreign: list[dict[str, Any]]
) -> None:
    obj = access(
        rules=[{"action": "Allow" if r.allow else "Deny", "cidrs": list(r.cidrs)} for r in policy.rules],
        default="Allow" if policy.default_allow else "Deny",
    )
    assert route_access_policy(obj) == policy
    original = eg_route(name)
    answer = post_route_modify(original, [*map(blob, foreign), blob(obj)])
    assert answer.route is not None
    assert without_ours(answer.route) == original.SerializeToString(deterministic=True)
    got = rules_of(answer.route)
    for source in [f"10.0.0.{i}" for i in range(8)] + [f"fd7a::{i}" for i in range(4)] + ["192.168.1.1"]:
        assert envoy_allows(got, source) == first_match(policy, source), source


# --- PostHTTPListenerModify -------------------------------------------------------------------


def hcm(*filters: str) -> hcm_pb2.HttpConnectionManager:
    h = hcm_pb2.HttpConnectionManager(stat_prefix="http-8890")
    for f in filters:
        msg = router_pb2.Router() if f == "envoy.filters.http.router" else cors_pb2.Cors()
        h.http_filters.add(name=f).typed_config.CopyFrom(_any(msg))
    return h


def eg_listener(
    *chains: hcm_pb2.HttpConnectionManager | None, default: bool = False
) -> listener_pb2.Listener:
    lst = listener_pb2.Listener(name="default/eg/http")
    for h in chains:
        chain = lst.filter_chains.add()
        if h is None:
            chain.filters.add(name="envoy.filters.network.tcp_proxy").typed_config.CopyFrom(
                _any(tcp_proxy_pb2.TcpProxy(stat_prefix="tcp", cluster="c"))
            )
        else:
            chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.CopyFrom(
                _any(h)
            )
    if default:
        lst.default_filter_chain.filters.add(
            name="envoy.filters.network.http_connection_manager"
        ).typed_config.CopyFrom(_any(hcm("envoy.filters.http.router")))
    return lst


def filter_names(chain: Any) -> list[str]:
    h = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(h)
    return [f.name for f in h.http_filters]


def test_every_http_connection_manager_gets_the_filter_before_its_router_once() -> None:
    original = eg_listener(
        hcm("envoy.filters.http.cors", "envoy.filters.http.router"),
        None,
        hcm("envoy.filters.http.router"),
        default=True,
    )
    before = original.SerializeToString(deterministic=True)
    answer = post_http_listener_modify(original)
    out = answer.listener
    assert out is not None
    assert original.SerializeToString(deterministic=True) == before
    assert filter_names(out.filter_chains[0]) == [
        "envoy.filters.http.cors",
        RBAC_FILTER,
        "envoy.filters.http.router",
    ]
    assert out.filter_chains[1] == original.filter_chains[1]  # TCP: untouched
    assert filter_names(out.filter_chains[2]) == [RBAC_FILTER, "envoy.filters.http.router"]
    assert filter_names(out.default_filter_chain) == [RBAC_FILTER, "envoy.filters.http.router"]
    h = hcm_pb2.HttpConnectionManager()
    out.filter_chains[0].filters[0].typed_config.Unpack(h)
    rbac = rbac_pb2.RBAC()
    h.http_filters[1].typed_config.Unpack(rbac)
    assert rbac == rbac_pb2.RBAC()  # no rules: Envoy enforces nothing where no route sets any
    assert h.stat_prefix == "http-8890"
    # Asked again (Envoy Gateway builds its listener afresh each time; a repeat changes nothing).
    assert post_http_listener_modify(out).listener is None


def test_a_listener_without_an_http_connection_manager_is_unchanged() -> None:
    assert post_http_listener_modify(eg_listener(None)).listener is None
    assert post_http_listener_modify(listener_pb2.Listener(name="x")).listener is None


@given(
    chains=st.lists(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(["envoy.filters.http.cors", "x.other"]), max_size=2).map(
                lambda fs: hcm(*fs, "envoy.filters.http.router")
            ),
        ),
        max_size=4,
    ),
    default=st.booleans(),
)
def test_property_the_listener_changes_only_by_the_filter(
    chains: list[hcm_pb2.HttpConnectionManager | None], default: bool
) -> None:
    original = eg_listener(*chains, default=default)
    out = post_http_listener_modify(original).listener
    if out is None:
        assert not any(chains)
        assert not default
        return
    stripped = listener_pb2.Listener()
    stripped.CopyFrom(out)
    all_chains = list(stripped.filter_chains) + ([stripped.default_filter_chain] if default else [])
    for chain in all_chains:
        f = chain.filters[0]
        if f.name != "envoy.filters.network.http_connection_manager":
            continue
        h = hcm_pb2.HttpConnectionManager()
        f.typed_config.Unpack(h)
        names = [x.name for x in h.http_filters]
        assert names.count(RBAC_FILTER) == 1
        assert names.index(RBAC_FILTER) == len(names) - 2
        kept = [x for x in h.http_filters if x.name != RBAC_FILTER]
        del h.http_filters[:]
        h.http_filters.extend(kept)
        f.typed_config.Pack(h)
    assert stripped == original


_schema_shaped = object_of(api.DERIVED_KINDS[0].spec).map(
    lambda spec: {
        "apiVersion": api.API_VERSION,
        "kind": ROUTE_ACCESS_KIND,
        "metadata": {"name": "p", "namespace": "apps"},
        "spec": spec,
    }
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=50)
@given(obj=_schema_shaped)
def test_property_an_object_of_the_crds_shape_is_applied_or_denies_never_fails(obj: dict[str, Any]) -> None:
    read = route_access_policy(obj)
    answer = post_route_modify(eg_route(), [blob(obj)])
    assert answer.route is not None
    if isinstance(read, str):  # e.g. a cidrs item that is not a CIDR (the schema does not say)
        assert not envoy_allows(rules_of(answer.route), "10.0.0.1")
        assert len(answer.problems) == 1
    else:
        assert answer.problems == ()


def test_asked_again_the_answer_is_the_same_and_a_bad_object_is_reported_each_time() -> None:
    # (The rules of a spec are memoized: Envoy Gateway sends the same objects every translation.)
    good = access("p", [{"action": "Allow", "cidrs": ["10.0.0.1/32"]}])
    renamed = access("q", [{"action": "Allow", "cidrs": ["10.0.0.1/32"]}], namespace="other")
    first = post_route_modify(eg_route(), [blob(good)])
    again = post_route_modify(eg_route(), [blob(renamed)])
    assert first.route == again.route
    assert (first.policy, again.policy) == ("apps/p", "other/q")
    assert first.route is not None
    first.route.typed_per_filter_config[RBAC_FILTER].value = b"changed by a caller"
    assert post_route_modify(eg_route(), [blob(good)]).route == again.route
    bad = access(rules=[{"action": "Allow", "cidrs": ["nope"]}])
    for _ in range(2):
        assert len(post_route_modify(eg_route(), [blob(bad)]).problems) == 1
