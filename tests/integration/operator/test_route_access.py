"""The operator against a real kube-apiserver writes the TailscaleRouteAccess of a
TailscaleRoutePolicy on an HTTPRoute: denying everything until the tailnet's devices are known,
then with the tag resolved to their addresses; a change of the devices rewrites its spec (a new
generation, which is what Envoy Gateway watches); it is owned by the policy, pruned when the
policy no longer targets a route, and a steady state writes nothing."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import anyio
import orjson
import pytest

from tests.integration.operator.test_operator_on_apiserver import (
    _get,
    _namespace,
    client,
    eventually,
    settled,
)
from tsgw.api import API_VERSION
from tsgw.controllers import FACTS_KEY, ROUTE_ACCESSES, TAILNET_LABEL, facts_configmap_name
from tsgw.kube import Client, Invalid, RawObject, Resource
from tsgw.operator import Operator, OperatorOptions
from tsgw.providers import tsgw_resources
from tsgw.translate import Device, TailnetFacts

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

__all__ = ["client"]  # the fixture, shared with the operator test

POLICIES = {r.kind: r for r in tsgw_resources()}["TailscaleRoutePolicy"]
CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps")
ROUTES = "gateway.networking.k8s.io"


def policy(ns: str, tailnet: str) -> RawObject:
    return {
        "apiVersion": API_VERSION,
        "kind": "TailscaleRoutePolicy",
        "metadata": {"name": "web-access", "namespace": ns},
        "spec": {
            "tailnetRef": {"name": tailnet},
            "targetRefs": [{"group": ROUTES, "kind": "HTTPRoute", "name": "web"}],
            "access": {
                "defaultAction": "Deny",
                "rules": [
                    {"action": "Deny", "cidrs": ["100.64.9.9/32"]},
                    {"action": "Allow", "tags": ["tag:a"]},
                ],
            },
        },
    }


async def write_facts(client: Client, ns: str, tailnet: str, address: str) -> None:
    """The facts ConfigMap, as the tailnet controller writes it after polling the tailnet."""
    facts = TailnetFacts(devices=(Device("a.ts.net", (address,), tags=("tag:a",)),))
    await client.apply(
        CONFIGMAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": facts_configmap_name(tailnet),
                "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "tsgw", TAILNET_LABEL: tailnet},
            },
            "data": {FACTS_KEY: orjson.dumps(facts.to_json()).decode()},
        },
        field_manager="test",
    )


async def test_the_operator_writes_a_route_policys_access_for_envoy_gateway(client: Client) -> None:
    ops, apps = await _namespace(client, "tsgw-ops"), await _namespace(client, "apps")
    tailnet = f"tn-{uuid.uuid4().hex[:6]}"
    created = await client.create(POLICIES, policy(apps, tailnet))
    operator = Operator(
        client,
        OperatorOptions(
            namespace=ops,
            xds_address="127.0.0.1:0",
            admin_address="127.0.0.1:0",
            health_probe_address="127.0.0.1:0",
            metrics_address=None,
            leader_election=False,
        ),
    )
    async with anyio.create_task_group() as tg:
        await tg.start(operator.run)

        async def access(spec_has: Any = None) -> RawObject | None:
            obj = await _get(client, ROUTE_ACCESSES, "web-access", apps)
            if obj is None or (spec_has is not None and not spec_has(obj["spec"])):
                return None
            return obj

        # The tailnet has not been read: every request is denied, never allowed by default.
        first = await eventually(access, "the TailscaleRouteAccess is written")
        assert first["spec"]["rules"] == []
        assert first["spec"]["defaultAction"] == "Deny"
        assert first["spec"]["targetRefs"] == [{"group": ROUTES, "kind": "HTTPRoute", "name": "web"}]
        [owner] = first["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "TailscaleRoutePolicy",
            "web-access",
            created["metadata"]["uid"],
        )
        assert first["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tsgw"

        # The devices are known: the tag is resolved; each change is a new generation.
        await write_facts(client, ops, tailnet, "100.64.0.1")
        known = await eventually(
            lambda: access(lambda s: ["100.64.0.1/32"] in [r["cidrs"] for r in s["rules"]]), "tag:a resolved"
        )
        assert known["spec"]["rules"] == [
            {"action": "Deny", "cidrs": ["100.64.9.9/32"]},
            {"action": "Allow", "cidrs": ["100.64.0.1/32"]},
        ]
        await write_facts(client, ops, tailnet, "100.64.0.2")
        moved = await eventually(
            lambda: access(lambda s: ["100.64.0.2/32"] in [r["cidrs"] for r in s["rules"]]),
            "the device moved",
        )
        assert (
            moved["metadata"]["generation"]
            > known["metadata"]["generation"]
            > first["metadata"]["generation"]
        )

        # A steady state writes nothing.
        reconciler = operator.route_access.reconciler
        # (Once the count stops moving: the write that made the moved spec visible may be
        # counted after the GET saw it.)
        writes = await settled(
            lambda: reconciler.writes_by_namespace[apps],  # type: ignore[attr-defined]
            "the write count settles",
        )
        operator.provider.mark()  # type: ignore[union-attr]
        await anyio.sleep(1.0)  # (a window for spurious writes, not a wait for an event)
        assert reconciler.writes_by_namespace[apps] == writes  # type: ignore[attr-defined]

        # Drift is put back.
        await client.patch(
            ROUTE_ACCESSES,
            "web-access",
            {"spec": {"defaultAction": "Allow"}},
            namespace=apps,
            field_manager="someone",
        )
        await eventually(lambda: access(lambda s: s["defaultAction"] == "Deny"), "drift undone")

        # The policy no longer targets a route: its TailscaleRouteAccess goes.
        current = copy.deepcopy(dict(await client.get(POLICIES, "web-access", apps)))
        current["spec"]["targetRefs"] = [{"kind": "TailscaleServices", "name": "web"}]
        del current["spec"]["tailnetRef"]
        await client.replace(POLICIES, current)

        async def gone() -> bool:
            return await _get(client, ROUTE_ACCESSES, "web-access", apps) is None

        await eventually(gone, "the TailscaleRouteAccess is pruned")
        operator.manager.stop()
        tg.cancel_scope.cancel()


async def test_the_api_server_refuses_a_route_target_without_its_group_or_tailnet(client: Client) -> None:
    # The CRD's CEL rules, twins of tsgw.api's checks (tests/unit/translate/test_route_access.py).
    apps = await _namespace(client, "apps")
    no_tailnet = policy(apps, "corp")
    del no_tailnet["spec"]["tailnetRef"]
    with pytest.raises(Invalid, match="tailnetRef"):
        await client.create(POLICIES, no_tailnet)
    no_group = policy(apps, "corp")
    del no_group["spec"]["targetRefs"][0]["group"]
    with pytest.raises(Invalid, match=r"gateway\.networking\.k8s\.io"):
        await client.create(POLICIES, no_group)
    assert await client.create(POLICIES, policy(apps, "corp"))
