"""Resource types: which URL serves a kind, and object keys.

The framework works on raw JSON dicts (``RawObject``), so a resource is described by data, not by
a generated class: :class:`Resource` carries the group/version, kind, plural and scope. The
common built-ins are constants; anything else comes from :meth:`Client.discover` or is spelt out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "CONFIGMAPS",
    "CUSTOMRESOURCEDEFINITIONS",
    "ENDPOINTSLICES",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "PODTEMPLATES",
    "SECRETS",
    "SERVICES",
    "ObjectKey",
    "RawObject",
    "Resource",
    "object_key",
]

RawObject = dict[str, Any]
"""An object as the API serves it: parsed JSON."""


class ObjectKey(NamedTuple):
    """``namespace/name``; the namespace is ``""`` for cluster-scoped objects."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def object_key(obj: RawObject) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(meta.get("namespace") or "", meta["name"])


@dataclass(frozen=True)
class Resource:
    """One API resource: ``api_version`` ("v1", "apps/v1"), ``kind``, ``plural``, scope."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path; ``namespace=None`` on a namespaced resource means all namespaces."""
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps")
SECRETS = Resource("v1", "Secret", "secrets")
SERVICES = Resource("v1", "Service", "services")
PODTEMPLATES = Resource("v1", "PodTemplate", "podtemplates")
NAMESPACES = Resource("v1", "Namespace", "namespaces", namespaced=False)
EVENTS = Resource("events.k8s.io/v1", "Event", "events")
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")
ENDPOINTSLICES = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
CUSTOMRESOURCEDEFINITIONS = Resource(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
)
