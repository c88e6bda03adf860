"""Status bodies follow Kubernetes conventions: observedGeneration on each condition, and a
lastTransitionTime that moves only when a condition's status or reason changes."""

from __future__ import annotations

from tsgw.model import (
    AncestorVerdict,
    Condition,
    GatewayDetails,
    ListenerVerdict,
    ObjectRef,
    ObjectStatus,
    PolicyDetails,
    ServicesDetails,
)
from tsgw.translate import status_body

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-02T00:00:00Z"


def _status(ok: bool, generation: int = 1, reason: str = "") -> ObjectStatus:
    return ObjectStatus(
        ObjectRef("TailscaleServices", "apps", "web", "uid", generation),
        (
            Condition("Accepted", True, "Accepted", ""),
            Condition("ResolvedRefs", ok, reason or ("ResolvedRefs" if ok else "BackendNotFound"), ""),
        ),
        ServicesDetails("svc:web", "web.tail1234.ts.net", ("100.100.0.1",)),
    )


def test_the_same_verdict_twice_writes_identical_status() -> None:
    first = status_body(_status(True), None, T0)
    again = status_body(_status(True), first, T1)
    assert again == first
    assert all(c["lastTransitionTime"] == T0 and c["observedGeneration"] == 1 for c in again["conditions"])
    assert first["serviceName"] == "svc:web"


def test_only_a_changed_condition_moves_its_transition_time() -> None:
    first = status_body(_status(True), None, T0)
    second = status_body(_status(False, generation=2), first, T1)
    by_type = {c["type"]: c for c in second["conditions"]}
    assert by_type["ResolvedRefs"]["lastTransitionTime"] == T1
    assert by_type["ResolvedRefs"]["status"] == "False"
    assert by_type["Accepted"]["lastTransitionTime"] == T0
    assert {c["observedGeneration"] for c in second["conditions"]} == {2}


def test_conditions_translation_does_not_own_are_left_to_their_writers() -> None:
    # The body is applied under the status controller's field manager: a condition another
    # controller writes is not in it (the API server keeps it, as that manager's), so a stale
    # cached copy can never be re-applied over a newer one. Fields translation leaves unset stay.
    claimed = {
        "type": "TailscaleServiceClaimed",
        "status": "True",
        "reason": "Claimed",
        "message": "",
        "lastTransitionTime": T0,
        "observedGeneration": 1,
    }
    body = status_body(_status(True), {"conditions": [claimed], "hostingReplicas": 2}, T1)
    assert [c["type"] for c in body["conditions"]] == ["Accepted", "ResolvedRefs"]
    assert body["hostingReplicas"] == 2


def test_policy_ancestors_get_conditions_by_the_same_rules() -> None:
    accepted = Condition("Accepted", True, "Accepted", "")
    st = ObjectStatus(
        ObjectRef("TailscaleRoutePolicy", "apps", "p", "uid", 4),
        (accepted,),
        PolicyDetails(
            (AncestorVerdict("gateway.tailscale.com", "TailscaleServices", "web", "apps", None, (accepted,)),)
        ),
    )
    first = status_body(st, None, T0)
    assert first["ancestors"][0]["ancestorRef"] == {
        "group": "gateway.tailscale.com",
        "kind": "TailscaleServices",
        "name": "web",
        "namespace": "apps",
    }
    assert first["ancestors"][0]["controllerName"] == "gateway.tailscale.com/tsgw"
    assert first["ancestors"][0]["conditions"][0]["observedGeneration"] == 4
    assert status_body(st, first, T1) == first


def test_listener_conditions_merge_per_listener_and_a_failed_translation_keeps_the_rest() -> None:
    ref = ObjectRef("TailscaleGateway", "apps", "gw", "uid", 1)
    accepted = Condition("Accepted", True, "Accepted", "published on svc:gw")
    st = ObjectStatus(
        ref, (accepted,), GatewayDetails("gw.ts.net", (), (ListenerVerdict("http", 80, (accepted,)),))
    )
    first = status_body(st, None, T0)
    assert first["addresses"] == []
    programmed = {**first["listeners"][0]["conditions"][0], "type": "Programmed"}
    first["listeners"][0]["conditions"].append(programmed)
    again = status_body(st, first, T1)
    assert again["listeners"] == first["listeners"]
    failed = ObjectStatus(ref, (Condition("Accepted", False, "TranslationFailed", "bug"),))
    body = status_body(failed, again, T1)
    assert body["listeners"] == again["listeners"]
    assert body["dnsName"] == "gw.ts.net"
    assert [c["reason"] for c in body["conditions"]] == ["TranslationFailed"]
