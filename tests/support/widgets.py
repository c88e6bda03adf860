"""A schemaless test kind (``Widget``) for tests and benchmarks of the controller framework."""

from __future__ import annotations

from typing import Any

import anyio

from tsgw.kube import CUSTOMRESOURCEDEFINITIONS, Client, NotFound, Resource


def widget_crd(group: str) -> tuple[Resource, dict[str, Any]]:
    """The ``widgets.<group>`` CRD (any fields, a status subresource) and its Resource."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
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
    return Resource(f"{group}/v1", "Widget", "widgets"), crd


async def install_widgets(client: Client, group: str) -> Resource:
    """Apply the Widget CRD and wait until its objects can be listed (discovery lags Established)."""
    resource, crd = widget_crd(group)
    await client.apply(CUSTOMRESOURCEDEFINITIONS, crd)
    with anyio.fail_after(30):
        while True:
            try:
                await client.list(resource, "default", limit=1)
                return resource
            except NotFound:
                await anyio.sleep(0.1)
