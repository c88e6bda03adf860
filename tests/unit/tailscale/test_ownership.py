"""Owner claims on a Tailscale Service: examples for each rule, and properties over any
sequence of claims and releases by several operators."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from tsgw.tailscale import (
    OWNER_ANNOTATION,
    OwnerRef,
    TailscaleService,
    owners_of,
    plan_claim,
    plan_release,
    with_owners,
)

A = OwnerRef("cluster-a", "TailscaleServices", "apps", "web", "uid-1")
B = OwnerRef("cluster-b", "TailscaleServices", "apps", "web", "uid-2")
WEB = TailscaleService("svc:web", ports=("tcp:80",), tags=("tag:web",), comment="tsgw")


def test_a_new_service_is_created_with_one_claim() -> None:
    p = plan_claim(None, WEB, A)
    assert p.action == "put"
    assert p.service is not None
    assert owners_of(p.service) == (A,)
    assert p.service.ports == ("tcp:80",)
    assert p.service.addrs == ()


def test_claiming_again_writes_nothing() -> None:
    created = plan_claim(None, WEB, A).service
    assert created is not None
    live = dataclasses.replace(created, addrs=("100.100.0.1", "fd7a::1"))
    assert plan_claim(live, WEB, A).action == "none"


def test_a_second_operator_adds_its_claim_and_keeps_the_vips() -> None:
    first = plan_claim(None, WEB, A).service
    assert first is not None
    live = dataclasses.replace(first, addrs=("100.100.0.1",))
    p = plan_claim(live, WEB, B)
    assert p.action == "put"
    assert p.service is not None
    assert set(owners_of(p.service) or ()) == {A, B}
    assert p.service.addrs == ("100.100.0.1",)


def test_two_owners_whose_comments_differ_never_rewrite_each_others() -> None:
    """Objects in different namespaces (so different comments) share one service: once both
    hold claims, neither's reconcile has anything to write (no comment flapping)."""
    a_web = dataclasses.replace(WEB, comment="tsgw TailscaleServices apps/web")
    b_web = dataclasses.replace(WEB, comment="tsgw TailscaleServices shop/web")
    first = plan_claim(None, a_web, A).service
    assert first is not None
    live = dataclasses.replace(first, addrs=("100.100.0.1",))
    shared = plan_claim(live, b_web, B).service
    assert shared is not None
    assert shared.comment == a_web.comment
    assert plan_claim(shared, a_web, A).action == "none"
    assert plan_claim(shared, b_web, B).action == "none"


def test_a_service_tsgw_did_not_make_is_never_taken_over() -> None:
    theirs = TailscaleService("svc:web", ("100.100.0.1",), ("tcp:80",), ("tag:web",))
    p = plan_claim(theirs, WEB, A)
    assert p.action == "foreign"
    assert "not made by tsgw" in p.reason
    garbled = TailscaleService("svc:web", annotations={OWNER_ANNOTATION: "{not json"})
    assert plan_claim(garbled, WEB, A).action == "foreign"


def test_a_different_definition_from_another_owner_is_a_conflict_not_an_overwrite() -> None:
    first = plan_claim(None, WEB, A).service
    assert first is not None
    other = TailscaleService("svc:web", ports=("tcp:443",), tags=("tag:web",))
    p = plan_claim(first, other, B)
    assert p.action == "conflict"
    assert "cluster-a/TailscaleServices/apps/web" in p.reason
    assert "tcp:443" in p.reason


def test_the_only_owner_may_change_the_definition() -> None:
    first = plan_claim(None, WEB, A).service
    assert first is not None
    p = plan_claim(first, TailscaleService("svc:web", ports=("tcp:443",)), A)
    assert p.action == "put"
    assert p.service is not None
    assert p.service.ports == ("tcp:443",)


def test_a_recreated_object_replaces_its_own_old_claim() -> None:
    first = plan_claim(None, WEB, A).service
    assert first is not None
    again = OwnerRef(A.operator_id, A.kind, A.namespace, A.name, "uid-new")
    p = plan_claim(first, WEB, again)
    assert p.action == "put"
    assert p.service is not None
    assert owners_of(p.service) == (again,)


def test_release_keeps_the_service_for_the_others_and_deletes_it_after_the_last() -> None:
    first = plan_claim(None, WEB, A).service
    assert first is not None
    both = plan_claim(first, WEB, B).service
    assert both is not None
    after_a = plan_release(both, A)
    assert after_a.action == "put"
    assert after_a.service is not None
    assert owners_of(after_a.service) == (B,)
    assert plan_release(after_a.service, B).action == "delete"
    assert plan_release(after_a.service, A).action == "none"  # A holds no claim any more


def test_the_annotation_text_is_the_same_for_the_same_set_of_claims() -> None:
    assert with_owners({}, [A, B]) == with_owners({}, [B, A, A])


_OPS = st.lists(
    st.tuples(st.sampled_from(["claim", "release"]), st.sampled_from(["a", "b", "c"])), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_claims_and_releases_in_any_order_keep_exactly_the_live_claims(ops: list[tuple[str, str]]) -> None:
    """Whatever several operators do, the service's claims are exactly those claimed and not
    released since, nobody's claim is lost, and the service exists iff a claim is left."""
    refs = {k: OwnerRef(f"cluster-{k}", "TailscaleServices", "apps", "web") for k in "abc"}
    live: TailscaleService | None = None
    expected: set[str] = set()
    for op, who in ops:
        me = refs[who]
        if op == "claim":
            p = plan_claim(live, WEB, me)
            assert p.action in ("put", "none")
            live = p.service
            expected.add(who)
        elif live is not None:
            p = plan_release(live, me)
            if p.action == "delete":
                live = None
            elif p.action == "put":
                live = p.service
            expected.discard(who)
        if expected:
            assert live is not None
            assert set(owners_of(live) or ()) == {refs[k] for k in expected}
            assert live.ports == WEB.ports
            assert live.tags == WEB.tags
        else:
            assert live is None
