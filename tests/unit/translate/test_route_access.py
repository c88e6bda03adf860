"""A TailscaleRoutePolicy on Gateway API routes becomes a TailscaleRouteAccess: the routes it
holds (the older policy wins, as for tsgw's own targets) and its rules with tags and users
resolved to the tailnet's addresses, so that a change of the tailnet changes its spec."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsgw import api
from tsgw.api._schema import parse
from tsgw.model import PolicyDetails
from tsgw.translate import ROUTE_ACCESS_KIND, Device, Inputs, TailnetFacts, route_access_objects, translate

FACTS = TailnetFacts(
    devices=(
        Device("a.ts.net", ("100.64.0.1", "fd7a:115c:a1e0::1"), tags=("tag:a",)),
        Device("b.ts.net", ("100.64.0.2",), tags=("tag:b",)),
        Device("laptop.ts.net", ("100.64.0.3",), user="alice@example.com"),
    )
)
TAILNETS = {"corp": FACTS}
ROUTES = "gateway.networking.k8s.io"


def policy(name: str, created: str, targets: list[dict[str, Any]], access: Any = None, **spec: Any) -> Any:
    body: dict[str, Any] = {"targetRefs": targets, **spec}
    if access is not None:
        body["access"] = access
    return api.load(
        {
            "apiVersion": api.API_VERSION,
            "kind": "TailscaleRoutePolicy",
            "metadata": {"name": name, "namespace": "apps", "creationTimestamp": created},
            "spec": {"tailnetRef": {"name": "corp"}, **body},
        }
    )


def route(name: str, kind: str = "HTTPRoute", section: str | None = None) -> dict[str, Any]:
    ref = {"group": ROUTES, "kind": kind, "name": name}
    if section:
        ref["sectionName"] = section
    return ref


ACCESS = {
    "defaultAction": "Deny",
    "rules": [
        {"action": "Deny", "tags": ["tag:b"]},
        {"action": "Allow", "tags": ["tag:a"], "users": ["alice@example.com"], "cidrs": ["10.1.2.3/8"]},
    ],
}


def test_tags_and_users_become_the_addresses_of_their_devices() -> None:
    [obj] = route_access_objects([policy("p", "2026-01-01T00:00:00Z", [route("web")], ACCESS)], TAILNETS)
    assert obj == {
        "apiVersion": api.API_VERSION,
        "kind": ROUTE_ACCESS_KIND,
        "metadata": {"name": "p", "namespace": "apps"},
        "spec": {
            "policy": "p",
            "targetRefs": [{"group": ROUTES, "kind": "HTTPRoute", "name": "web"}],
            "rules": [
                {"action": "Deny", "cidrs": ["100.64.0.2/32"]},
                {
                    "action": "Allow",
                    "cidrs": ["10.0.0.0/8", "100.64.0.1/32", "100.64.0.3/32", "fd7a:115c:a1e0::1/128"],
                },
            ],
            "defaultAction": "Deny",
        },
    }


def test_a_change_of_the_tailnet_changes_the_spec() -> None:
    pol = policy("p", "2026-01-01T00:00:00Z", [route("web")], ACCESS)
    moved = TailnetFacts(devices=(Device("a.ts.net", ("100.64.0.9",), tags=("tag:a",)),))
    before = route_access_objects([pol], TAILNETS)[0]["spec"]
    after = route_access_objects([pol], {"corp": moved})[0]["spec"]
    assert before != after
    assert after["rules"] == [
        {"action": "Deny", "cidrs": []},
        {"action": "Allow", "cidrs": ["10.0.0.0/8", "100.64.0.9/32"]},
    ]


def test_the_older_policy_holds_a_route_and_the_newer_keeps_what_it_alone_targets() -> None:
    older = policy("older", "2026-01-01T00:00:00Z", [route("web"), route("rpc", "GRPCRoute", "read")], ACCESS)
    newer = policy(
        "newer",
        "2026-02-01T00:00:00Z",
        [route("web", section="admin"), route("rpc", "GRPCRoute"), route("rpc", "GRPCRoute", "write")],
        ACCESS,
    )
    objs = {
        o["metadata"]["name"]: o["spec"]["targetRefs"] for o in route_access_objects([newer, older], TAILNETS)
    }
    assert objs == {
        "older": [route("web"), route("rpc", "GRPCRoute", "read")],
        "newer": [route("rpc", "GRPCRoute", "write")],
    }


def test_policies_without_access_or_without_route_targets_derive_nothing() -> None:
    timeouts = policy("t", "2026-01-01T00:00:00Z", [route("web")], timeout="5s")
    own = policy("own", "2026-01-01T00:00:00Z", [{"kind": "TailscaleServices", "name": "web"}], ACCESS)
    assert route_access_objects([timeouts, own], TAILNETS) == []


_created = st.integers(0, 3).map(lambda d: f"2026-01-0{d + 1}T00:00:00Z")
_targets = st.lists(
    st.builds(
        route, st.sampled_from(["web", "rpc"]), st.just("HTTPRoute"), st.sampled_from([None, "a", "b"])
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda r: (r["name"], r.get("sectionName")),
)


@settings(max_examples=200, deadline=None)
@given(specs=st.lists(st.tuples(_created, _targets), min_size=1, max_size=5, unique_by=lambda s: str(s)))
def test_property_no_route_or_rule_is_held_twice_and_the_answer_is_order_independent(
    specs: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    pols = [policy(f"p{i}", created, targets, ACCESS) for i, (created, targets) in enumerate(specs)]
    objs = route_access_objects(pols, TAILNETS)
    assert objs == route_access_objects(list(reversed(pols)), TAILNETS)
    held = [(r["name"], r.get("sectionName")) for o in objs for r in o["spec"]["targetRefs"]]
    assert len(held) == len(set(held))
    for name, section in held:
        # A whole route and one of its rules are never held at once.
        assert section is None or (name, None) not in held


def test_what_is_derived_is_valid_by_the_crds_schema() -> None:
    older = policy("p", "2026-01-01T00:00:00Z", [route("web"), route("rpc", "GRPCRoute", "read")], ACCESS)
    for obj in route_access_objects([older], TAILNETS):
        spec = parse(api.TailscaleRouteAccessSpec, obj["spec"])
        assert spec.policy == "p"
        assert [t.kind for t in spec.target_refs] == ["HTTPRoute", "GRPCRoute"]


def test_while_the_tailnets_devices_are_not_known_every_request_is_denied() -> None:
    pol = policy("p", "2026-01-01T00:00:00Z", [route("web")], {**ACCESS, "defaultAction": "Allow"})
    for tailnets in ({}, {"other": FACTS}):
        [obj] = route_access_objects([pol], tailnets)
        assert obj["spec"]["rules"] == []
        assert obj["spec"]["defaultAction"] == "Deny"


def test_a_policy_on_a_route_names_its_tailnet() -> None:
    with pytest.raises(api.ValidationError, match="tailnetRef"):
        api.load(
            {
                "apiVersion": api.API_VERSION,
                "kind": "TailscaleRoutePolicy",
                "metadata": {"name": "p", "namespace": "apps"},
                "spec": {"targetRefs": [route("web")], "access": ACCESS},
            }
        )


def test_a_policy_of_cidrs_only_needs_no_facts() -> None:
    cidrs = {"defaultAction": "Deny", "rules": [{"action": "Allow", "cidrs": ["127.0.0.2/32"]}]}
    [obj] = route_access_objects([policy("p", "2026-01-01T00:00:00Z", [route("web")], cidrs)], {})
    assert obj["spec"]["rules"] == [{"action": "Allow", "cidrs": ["127.0.0.2/32"]}]
    assert obj["spec"]["defaultAction"] == "Deny"


def _raw(name: str, created: str, targets: list[dict[str, Any]], with_access: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"tailnetRef": {"name": "corp"}, "targetRefs": targets}
    if with_access:
        spec["access"] = ACCESS
    else:
        spec["timeout"] = "5s"
    return {
        "apiVersion": api.API_VERSION,
        "kind": "TailscaleRoutePolicy",
        "metadata": {"name": name, "namespace": "apps", "uid": name, "creationTimestamp": created},
        "spec": spec,
    }


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(st.tuples(_created, _targets, st.booleans()), min_size=1, max_size=5),
)
def test_property_the_routes_a_status_accepts_are_the_routes_its_derived_object_targets(
    specs: list[tuple[str, list[dict[str, Any]], bool]],
) -> None:
    raws = [_raw(f"p{i}", created, targets, access) for i, (created, targets, access) in enumerate(specs)]
    result = translate(Inputs(objects=raws, tailnets=TAILNETS))
    accepted = {
        (st.ref.name, a.kind, a.name, a.section_name)
        for st in result.model.statuses
        if isinstance(st.details, PolicyDetails)
        for a in st.details.ancestors
        if a.conditions[0].status
    }
    derived = {
        (o["metadata"]["name"], t["kind"], t["name"], t.get("sectionName"))
        for o in result.route_access
        for t in o["spec"]["targetRefs"]
    }
    assert accepted == derived
