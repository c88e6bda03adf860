"""The test API server is real: a CRD can be installed, its objects created and watched."""

from __future__ import annotations

import anyio
import pytest

from tests.support.controlplane import ControlPlane
from tsgw.kube._client import Client
from tsgw.kube._errors import NotFound
from tsgw.kube._resources import CUSTOMRESOURCEDEFINITIONS, Resource

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

WIDGETS = Resource("smoke.tsgw.test/v1", "Widget", "widgets")

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.tsgw.test"},
    "spec": {
        "group": "smoke.tsgw.test",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
                "subresources": {"status": {}},
            }
        ],
    },
}


async def wait_established(client: Client, name: str) -> None:
    with anyio.fail_after(30):
        while True:
            crd = await client.get(CUSTOMRESOURCEDEFINITIONS, name)
            conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
            if conds.get("Established") == "True":
                return
            await anyio.sleep(0.1)


async def test_a_custom_object_created_through_the_real_api_server_arrives_on_a_watch(
    control_plane: ControlPlane,
) -> None:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as client:
        await client.apply(CUSTOMRESOURCEDEFINITIONS, CRD)
        await wait_established(client, "widgets.smoke.tsgw.test")
        with anyio.fail_after(30):
            while True:  # discovery lags Established by a moment
                try:
                    listed = await client.list(WIDGETS, "default")
                    break
                except NotFound:
                    await anyio.sleep(0.1)
        async with client.watch(WIDGETS, "default", resource_version=listed.resource_version) as events:
            await client.create(
                WIDGETS,
                {
                    "apiVersion": "smoke.tsgw.test/v1",
                    "kind": "Widget",
                    "metadata": {"name": "w1", "namespace": "default"},
                    "spec": {"size": 3},
                },
            )
            with anyio.fail_after(10):
                ev = await events.__anext__()
        assert ev.type == "ADDED"
        assert ev.object["metadata"]["name"] == "w1"
        assert ev.object["spec"] == {"size": 3}
        assert (await client.discover("smoke.tsgw.test/v1", "Widget")) == WIDGETS
