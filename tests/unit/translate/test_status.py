"""Status bodies follow Kubernetes conventions: observedGeneration on each condition, and a
lastTransitionTime that moves only when a condition's status or reason changes."""

from __future__ import annotations

from tsgw.model import Condition, ObjectRef, ObjectStatus
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
        (("serviceName", "svc:web"), ("addresses", ["100.100.0.1"])),
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


def test_conditions_translation_does_not_own_are_kept() -> None:
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Hosted",
        "message": "",
        "lastTransitionTime": T0,
        "observedGeneration": 1,
    }
    body = status_body(_status(True), {"conditions": [ready], "hostingReplicas": 2}, T1)
    assert ready in body["conditions"]
    assert body["hostingReplicas"] == 2


def test_policy_ancestors_get_conditions_by_the_same_rules() -> None:
    ref = {"group": "gateway.tailscale.com", "kind": "TailscaleServices", "name": "web", "namespace": "apps"}
    st = ObjectStatus(
        ObjectRef("TailscaleRoutePolicy", "apps", "p", "uid", 4),
        (Condition("Accepted", True, "Accepted", ""),),
        (
            (
                "ancestors",
                (
                    {
                        "ancestorRef": ref,
                        "conditions": [
                            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""}
                        ],
                    },
                ),
            ),
        ),
    )
    first = status_body(st, None, T0)
    assert first["ancestors"][0]["controllerName"] == "gateway.tailscale.com/tsgw"
    assert first["ancestors"][0]["conditions"][0]["observedGeneration"] == 4
    assert status_body(st, first, T1) == first
