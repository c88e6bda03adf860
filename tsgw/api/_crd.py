"""The kinds, their CRD manifests, and typed views of their objects.

The informer keeps raw dicts; `load()` builds a typed, defaulted, validated view on demand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tsgw.api._errors import ValidationError
from tsgw.api._schema import openapi, parse
from tsgw.api._types import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    EndpointsStatus,
    GatewayStatus,
    RoutePolicyStatus,
    ServicesStatus,
    TailnetStatus,
    TailscaleEndpointsSpec,
    TailscaleGatewaySpec,
    TailscaleRouteAccessSpec,
    TailscaleRoutePolicySpec,
    TailscaleServicesSpec,
    TailscaleTailnetSpec,
)

__all__ = [
    "API_VERSION",
    "DERIVED_KINDS",
    "GROUP",
    "KINDS",
    "VERSION",
    "Kind",
    "Object",
    "ObjectMeta",
    "crd",
    "crd_files",
    "crds",
    "load",
]

GROUP = "gateway.tailscale.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


def _cond(type_: str) -> str:
    return f'.status.conditions[?(@.type=="{type_}")].status'


def _col(name: str, path: str, type_: str = "string", priority: int = 0, doc: str = "") -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if doc:
        c["description"] = doc
    if priority:
        c["priority"] = priority
    return c


_AGE = _col("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of the API: names, scope, schema types and printer columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    spec: type
    status: type
    columns: tuple[dict[str, Any], ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()


KINDS: tuple[Kind, ...] = (
    Kind(
        "TailscaleTailnet",
        "tailscaletailnets",
        ("tstailnet",),
        False,
        TailscaleTailnetSpec,
        TailnetStatus,
        (
            _col("Control", ".spec.controlPlane.type"),
            _col("Ready", _cond("Ready")),
            _col("Authenticated", _cond("Authenticated")),
            _col("MagicDNS", ".status.magicDNSSuffix"),
            _AGE,
        ),
    ),
    Kind(
        "TailscaleEndpoints",
        "tailscaleendpoints",
        ("tsep",),
        True,
        TailscaleEndpointsSpec,
        EndpointsStatus,
        (
            _col("Tailnet", ".spec.tailnetRef.name"),
            _col("Service", ".status.serviceName", doc="The ClusterIP Service to call"),
            _col("Ready", _cond("Ready")),
            _AGE,
        ),
    ),
    Kind(
        "TailscaleServices",
        "tailscaleservices",
        ("tssvc",),
        True,
        TailscaleServicesSpec,
        ServicesStatus,
        (
            _col("Tailscale Service", ".status.serviceName"),
            _col("DNS Name", ".status.dnsName"),
            _col("Hosts", ".status.hostingReplicas", "integer"),
            _col("Ready", _cond("Ready")),
            _col("Addresses", ".status.addresses", priority=1),
            _AGE,
        ),
    ),
    Kind(
        "TailscaleGateway",
        "tailscalegateways",
        ("tsgw",),
        True,
        TailscaleGatewaySpec,
        GatewayStatus,
        (
            _col("Gateway", ".spec.gatewayRef.name"),
            _col("DNS Name", ".status.dnsName"),
            _col("Ready", _cond("Ready")),
            _AGE,
        ),
    ),
    Kind(
        "TailscaleRoutePolicy",
        "tailscaleroutepolicies",
        ("tsrp",),
        True,
        TailscaleRoutePolicySpec,
        RoutePolicyStatus,
        (
            _col("Target Kind", ".spec.targetRefs[0].kind"),
            _col("Target", ".spec.targetRefs[0].name"),
            _col("Accepted", '.status.ancestors[0].conditions[?(@.type=="Accepted")].status'),
            _AGE,
        ),
    ),
)

DERIVED_KINDS: tuple[Kind, ...] = (
    Kind(
        "TailscaleRouteAccess",
        "tailscalerouteaccesses",
        ("tsra",),
        True,
        TailscaleRouteAccessSpec,
        RoutePolicyStatus,
        (
            _col("Policy", ".spec.policy"),
            _col("Target Kind", ".spec.targetRefs[0].kind"),
            _col("Target", ".spec.targetRefs[0].name"),
            _col(
                "Accepted",
                '.status.ancestors[0].conditions[?(@.type=="Accepted")].status',
                doc="Envoy Gateway's verdict",
            ),
            _AGE,
        ),
    ),
)
"""Kinds tsgw writes for other controllers to read, and never translates: TailscaleRouteAccess
(Envoy Gateway's ``policyResources``; its status is Envoy Gateway's, a Gateway API
PolicyStatus). Not in :data:`KINDS`: tsgw's informers and providers do not read them."""

_BY_KIND = {k.kind: k for k in KINDS}


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind, as a plain dict ready for YAML or SSA."""
    spec_schema = openapi(kind.spec)
    root: dict[str, Any] = {
        "type": "object",
        "description": spec_schema.pop("description", kind.kind),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": openapi(kind.status),
        },
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "tsgw"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["tailscale"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    """Every CRD, in KINDS then DERIVED_KINDS order."""
    return [crd(k) for k in (*KINDS, *DERIVED_KINDS)]


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """The metadata translation needs: identity, generation (for observedGeneration), labels."""

    name: str
    namespace: str
    uid: str
    generation: int
    creation_timestamp: str
    labels: Mapping[str, str]


S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Object(Generic[S]):
    """A typed view of one object: its kind, metadata and defaulted, validated spec."""

    kind: str
    metadata: ObjectMeta
    spec: S

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name): unique, and the sort key that makes output deterministic."""
        return (self.kind, self.metadata.namespace, self.metadata.name)


_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)
_LABEL = re.compile(DNS_LABEL)


def _invalid_name(value: Any, what: str, max_len: int) -> str:
    """The API server's message for a bad object name (``ValidateObjectMeta``), the value cut
    short: a name of a megabyte must not make a message of a megabyte."""
    text = str(value)
    shown = text if len(text) <= 64 else f"{text[:64]}… ({len(text)} chars)"
    return (
        f'Invalid value: "{shown}": a lowercase RFC 1123 {what} of at most {max_len} characters must '
        "consist of lower case alphanumeric characters, '-'"
        + (" or '.'" if what == "subdomain" else "")
        + ", and must start and end with an alphanumeric character"
    )


def load(raw: Mapping[str, Any]) -> Object[Any]:
    """Typed view of a raw object of one of KINDS. Raises ValidationError (path-qualified)."""
    if raw.get("apiVersion") != API_VERSION:
        raise ValidationError("apiVersion", f"must be {API_VERSION}")
    kind = _BY_KIND.get(str(raw.get("kind")))
    if kind is None:
        raise ValidationError("kind", f"must be one of {sorted(_BY_KIND)}")
    md = raw.get("metadata") or {}
    if not isinstance(md, Mapping) or not md.get("name"):
        raise ValidationError("metadata.name", "Required value")
    name = md["name"]
    if not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        raise ValidationError("metadata.name", _invalid_name(name, "subdomain", 253))
    ns = md.get("namespace")
    if kind.namespaced and ns and (not isinstance(ns, str) or len(ns) > 63 or not _LABEL.fullmatch(ns)):
        raise ValidationError("metadata.namespace", _invalid_name(ns, "label", 63))
    meta = ObjectMeta(
        name=name,
        namespace=str(md.get("namespace") or "") if kind.namespaced else "",
        uid=str(md.get("uid") or ""),
        generation=int(md.get("generation") or 0),
        creation_timestamp=str(md.get("creationTimestamp") or ""),
        labels=dict(md.get("labels") or {}),
    )
    if kind.namespaced and not meta.namespace:
        raise ValidationError("metadata.namespace", "Required value")
    if "spec" not in raw:
        raise ValidationError("spec", "Required value")
    return Object(kind=kind.kind, metadata=meta, spec=parse(kind.spec, raw["spec"]))


_HEADER = "# Generated by `tsgw crds --write deploy/kustomize/base/crds` from tsgw/api. Do not edit.\n"


def crd_files() -> dict[str, str]:
    """File name → YAML text of the committed CRD directory (one file per kind and a
    kustomization.yaml), byte-stable so a test can tell when the committed copy is stale.
    """
    import yaml  # pure serialization; imported here so the data types load without it

    files: dict[str, str] = {}
    for kind in (*KINDS, *DERIVED_KINDS):
        text = yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)
        files[f"{GROUP}_{kind.plural}.yaml"] = _HEADER + text
    resources = "".join(f"  - {name}\n" for name in files)
    files["kustomization.yaml"] = (
        _HEADER + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n" + resources
    )
    return files
