"""A proxy group whose tailnet cannot mint keys never starts (its StatefulSet waits for every new
replica's key): the owner's ``AuthKeysReady`` condition says so, naming the tailnet and why, and
is written only when it changes. Unit level: the decision and the merged status on plain
objects; tests/integration/operator/test_tailnet_and_keys.py checks it on a real kube-apiserver
with a tailnet whose key is wrong."""

from __future__ import annotations

from typing import Any

from tsgw.controllers import AUTHKEYS_READY, auth_keys_condition
from tsgw.controllers._status import condition_body, condition_manager, holds
from tsgw.model import Condition

_AUTH_FAILED = {"type": "Ready", "status": "False", "reason": "AuthFailed", "message": "401: invalid API key"}


def _tailnet(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "corp"}, "status": {"conditions": list(conditions)}}


def _owner(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "kind": "TailscaleEndpoints",
        "metadata": {"name": "db", "namespace": "apps", "uid": "u1", "generation": 3},
        "status": {"conditions": list(conditions), **status},
    }


def _written(c: Condition, since: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "type": c.type,
        "status": "True" if c.status else "False",
        "reason": c.reason,
        "message": c.message,
        "observedGeneration": 3,
        "lastTransitionTime": since,
    }


def test_a_tailnet_that_is_not_ready_is_named_with_its_own_reason() -> None:
    # No client at all (the credentials Secret is missing) or the API refused the key: the
    # tailnet's own verdict explains it best.
    for failure in ("", "401 Unauthorized"):
        c = auth_keys_condition("corp", _tailnet(_AUTH_FAILED), failure, _owner())
        assert c is not None
        assert (c.type, c.status, c.reason) == (AUTHKEYS_READY, False, "TailnetNotReady")
        assert "tailnet 'corp' is not Ready (AuthFailed: 401: invalid API key)" in c.message
        assert "starts only once its key is in its config" in c.message


def test_a_missing_tailnet_and_a_refused_key_have_their_own_reasons() -> None:
    gone = auth_keys_condition("corp", None, "", _owner())
    assert gone is not None
    assert (gone.status, gone.reason) == (False, "TailnetNotFound")
    assert "TailscaleTailnet 'corp' does not exist" in gone.message
    ready = {"type": "Ready", "status": "True", "reason": "Ready", "message": ""}
    refused = auth_keys_condition("corp", _tailnet(ready), "403: tags not permitted", _owner())
    assert refused is not None
    assert (refused.status, refused.reason) == (False, "MintFailed")
    assert "tailnet 'corp' refused an auth key: 403: tags not permitted" in refused.message


def test_no_verdict_while_the_tailnet_is_still_being_checked() -> None:
    assert auth_keys_condition("corp", _tailnet(), "", _owner()) is None


def test_true_is_written_only_to_clear_a_false() -> None:
    assert auth_keys_condition("corp", _tailnet(), None, _owner()) is None  # the common case: no write
    blocked = auth_keys_condition("corp", _tailnet(_AUTH_FAILED), "", _owner())
    assert blocked is not None
    cleared = auth_keys_condition("corp", _tailnet(), None, _owner(_written(blocked)))
    assert cleared is not None
    assert (cleared.status, cleared.reason) == (True, "Minted")
    assert auth_keys_condition("corp", _tailnet(), None, _owner(_written(cleared))) is None


def test_the_condition_is_written_only_when_it_changes_and_alone() -> None:
    blocked = auth_keys_condition("corp", _tailnet(_AUTH_FAILED), "", _owner())
    assert blocked is not None
    programmed = {"type": "Programmed", "status": "False", "reason": "NoProxies", "message": ""}
    owner = _owner(programmed, serviceName="db")
    body = condition_body("TailscaleEndpoints", owner, blocked)
    assert body is not None
    # Only this condition, under its own field manager: what others wrote is not re-applied
    # from this (possibly stale) copy; the API server keeps it as its writers left it.
    assert [c["type"] for c in body["conditions"]] == [AUTHKEYS_READY]
    assert "serviceName" not in body
    assert condition_manager(AUTHKEYS_READY) == "tsgw-condition-AuthKeysReady"
    # Once the object holds it, nothing is written again.
    held_too = {**owner, "status": {**owner["status"], "conditions": [programmed, *body["conditions"]]}}
    assert condition_body("TailscaleEndpoints", held_too, blocked) is None
    # A new message of the same reason is written, keeping when the condition last transitioned.
    held = _owner(_written(blocked, since="2025-12-31T00:00:00Z"))
    changed = Condition(AUTHKEYS_READY, False, blocked.reason, "another message")
    body = condition_body("TailscaleEndpoints", held, changed)
    assert body is not None
    assert body["conditions"][0]["lastTransitionTime"] == "2025-12-31T00:00:00Z"
    assert body["conditions"][0]["message"] == "another message"


def test_a_status_holds_a_body_by_condition_type_whatever_else_it_holds() -> None:
    ours = {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""}
    theirs = {"type": "TailscaleServiceClaimed", "status": "True", "reason": "Claimed", "message": ""}
    current = {"conditions": [ours, theirs], "serviceName": "svc:web"}
    assert holds(current, {"conditions": [ours], "serviceName": "svc:web"})
    assert not holds(current, {"conditions": [{**ours, "status": "False"}]})
    assert not holds(current, {"conditions": [{**ours, "type": "Programmed"}]})
    assert not holds(current, {"conditions": [ours], "serviceName": "svc:api"})
