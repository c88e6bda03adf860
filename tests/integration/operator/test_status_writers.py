"""Writers of one object, against a real kube-apiserver: the status controller (translation's
conditions and fields, field manager ``tsgw``) and a controller's own condition
(:func:`tsgw.controllers._status.write_condition`, its own field manager), each writing from a
stale copy of the object, as informer caches are. Neither undoes the other's newer write.

On the bed the earlier design (one manager applying the whole merged status from its cache) flipped a
TailscaleServices' status for as long as the caches lagged: ``Programmed`` True → Pending → True
and its VIPs dropped and restored, seven writes in 300 ms where three were needed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.integration.operator.test_operator_on_apiserver import KINDS, _namespace, client
from tsgw.api import API_VERSION
from tsgw.controllers._services import SERVICE_FINALIZER, set_finalizers
from tsgw.controllers._status import FIELD_MANAGER, condition_manager, write_condition
from tsgw.kube import Client, Invalid, RawObject
from tsgw.model import Condition, ObjectRef, ObjectStatus, ServicesDetails
from tsgw.translate import status_body

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

__all__ = ["client"]

SERVICES = KINDS["TailscaleServices"]
CLAIMED = "TailscaleServiceClaimed"
T0 = "2026-01-01T00:00:00Z"


def _services(ns: str) -> RawObject:
    return {
        "apiVersion": API_VERSION,
        "kind": "TailscaleServices",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "tailnetRef": {"name": "tailscale"},
            "ports": [{"port": 80, "protocol": "HTTP"}],
            "backends": [{"service": "web"}],
        },
    }


def _translated(obj: RawObject, programmed: bool, vips: tuple[str, ...]) -> ObjectStatus:
    md = obj["metadata"]
    return ObjectStatus(
        ObjectRef("TailscaleServices", md["namespace"], md["name"], md["uid"], md["generation"]),
        (
            Condition("Accepted", True, "Accepted", ""),
            Condition("Programmed", programmed, "Programmed" if programmed else "Pending", ""),
        ),
        ServicesDetails("svc:web", "web.tailnet.test", vips),
    )


async def _apply_translated(client: Client, seen: RawObject, st: ObjectStatus) -> None:
    """What the status controller applies, computed from ``seen`` (its cached copy)."""
    md = seen["metadata"]
    body = status_body(st, seen.get("status"), T0)
    await client.apply_status(
        SERVICES,
        {"metadata": {"name": md["name"], "namespace": md["namespace"]}, "status": body},
        field_manager=FIELD_MANAGER,
    )


def _by_type(obj: RawObject) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


async def test_stale_writers_of_one_status_keep_each_others_newer_writes(client: Client) -> None:
    ns = await _namespace(client, "status-writers")
    created = await client.create(SERVICES, _services(ns))
    stale = copy.deepcopy(created)  # every writer below works from this copy: no status at all

    # The status controller: Accepted, Programmed Pending, no VIPs yet.
    await _apply_translated(client, stale, _translated(created, False, ()))
    # The Tailscale Services controller claims the service, from its stale copy.
    assert await write_condition(client, SERVICES, stale, Condition(CLAIMED, True, "Claimed", "by bed"))
    # The status controller again, still from the stale copy (no Claimed in it): Programmed and
    # the VIPs from the facts.
    await _apply_translated(client, stale, _translated(created, True, ("100.80.0.1",)))
    # The claim changes, from the same stale copy (no VIPs, Programmed never seen True).
    assert await write_condition(client, SERVICES, stale, Condition(CLAIMED, False, "Conflict", "x"))

    live = await client.get(SERVICES, "web", ns)
    conditions = _by_type(live)
    assert conditions["Programmed"]["status"] == "True", conditions
    assert (conditions[CLAIMED]["status"], conditions[CLAIMED]["reason"]) == ("False", "Conflict")
    assert live["status"]["addresses"] == ["100.80.0.1"]
    assert live["status"]["serviceName"] == "svc:web"
    managers = {
        m["manager"]: m
        for m in live["metadata"].get("managedFields") or ()
        if m.get("subresource") == "status"
    }
    assert set(managers) == {FIELD_MANAGER, condition_manager(CLAIMED)}

    # Nothing to write once the object holds the condition, whatever else its status holds.
    assert not await write_condition(client, SERVICES, live, Condition(CLAIMED, False, "Conflict", "x"))
    # The status controller dropping a condition of its own (a failed translation) removes it
    # and leaves the claim alone.
    md = live["metadata"]
    failed = ObjectStatus(
        ObjectRef("TailscaleServices", ns, "web", md["uid"], md["generation"]),
        (Condition("Accepted", False, "TranslationFailed", "bug"),),
    )
    await _apply_translated(client, live, failed)
    after = _by_type(await client.get(SERVICES, "web", ns))
    assert set(after) == {"Accepted", CLAIMED}, after
    assert after["Accepted"]["reason"] == "TranslationFailed"


async def test_the_first_finalizer_is_added_after_a_status_write_and_refused_after_anothers(
    client: Client,
) -> None:
    # The precondition is the finalizer list (absent: null), not the resourceVersion, so the
    # status controller's first write, which always races the first finalizer, does not fail it.
    ns = await _namespace(client, "finalizer-writers")
    stale = await client.create(SERVICES, _services(ns))
    await _apply_translated(client, stale, _translated(stale, False, ()))
    await set_finalizers(client, SERVICES, stale, [SERVICE_FINALIZER])
    live = await client.get(SERVICES, "web", ns)
    assert live["metadata"]["finalizers"] == [SERVICE_FINALIZER]
    # Another writer's finalizer already there: adding to the stale copy (no list) is refused.
    other = await client.create(SERVICES, {**_services(ns), "metadata": {"name": "api", "namespace": ns}})
    await client.patch(
        SERVICES, "api", {"metadata": {"finalizers": ["example.com/keep"]}}, namespace=ns, patch_type="merge"
    )
    with pytest.raises(Invalid):
        await set_finalizers(client, SERVICES, other, [SERVICE_FINALIZER])
    assert (await client.get(SERVICES, "api", ns))["metadata"]["finalizers"] == ["example.com/keep"]
    await client.patch(SERVICES, "api", {"metadata": {"finalizers": None}}, namespace=ns, patch_type="merge")
    await set_finalizers(client, SERVICES, live, [])  # removal: the list seen is the list held
    assert "finalizers" not in (await client.get(SERVICES, "web", ns))["metadata"]
