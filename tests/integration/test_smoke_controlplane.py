"""The test API server is real: a CRD can be installed, its objects created and watched."""

from __future__ import annotations

import anyio
import pytest

from tests.support.controlplane import ControlPlane
from tests.support.widgets import install_widgets
from tsgw.kube import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_a_custom_object_created_through_the_real_api_server_arrives_on_a_watch(
    control_plane: ControlPlane,
) -> None:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as client:
        widgets = await install_widgets(client, "smoke.tsgw.test")
        listed = await client.list(widgets, "default")
        async with client.watch(widgets, "default", resource_version=listed.resource_version) as events:
            await client.create(
                widgets,
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
        assert (await client.discover("smoke.tsgw.test/v1", "Widget")) == widgets
