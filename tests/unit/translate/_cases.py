"""Golden-test inputs: a case is a multi-document YAML of API objects, Services, EndpointSlices,
Gateways and test-only `TailnetFacts` documents; its golden file is the JSON rendering of what
translate produced. TSGW_UPDATE_GOLDEN=1 rewrites the golden files."""

from __future__ import annotations

import dataclasses
import enum
import json
import pathlib
from collections.abc import Iterable
from typing import Any

import yaml

from tsgw.model import (
    Condition,
    EndpointsDetails,
    GatewayDetails,
    ObjectStatus,
    PolicyDetails,
    ServicesDetails,
    StatusDetails,
)
from tsgw.translate import Device, Inputs, Result, TailnetFacts, User

HERE = pathlib.Path(__file__).parent
CASES = HERE / "cases"
GOLDEN = HERE / "golden"
EXAMPLES = HERE.parents[2] / "examples"


def _facts(doc: dict[str, Any]) -> TailnetFacts:
    return TailnetFacts(
        magic_dns_suffix=doc.get("magicDNSSuffix", ""),
        devices=tuple(
            Device(
                name=d["name"],
                addresses=tuple(d["addresses"]),
                tags=tuple(d.get("tags", ())),
                user=d.get("user", ""),
                online=d.get("online", True),
            )
            for d in doc.get("devices", ())
        ),
        services={k: tuple(v) for k, v in (doc.get("services") or {}).items()},
        claims={k: tuple(v) for k, v in (doc.get("claims") or {}).items()},
        users={
            k: User(v.get("displayName", ""), tuple(v.get("groups", ())))
            for k, v in (doc.get("users") or {}).items()
        },
    )


def inputs_from(docs: Iterable[dict[str, Any]]) -> Inputs:
    objects, services, slices, gateways, secrets = [], [], [], [], []
    tailnets: dict[str, TailnetFacts] = {}
    for doc in docs:
        if not doc:
            continue
        kind = doc["kind"]
        if kind == "TailnetFacts":
            tailnets[doc["tailnet"]] = _facts(doc)
        elif kind == "Service":
            services.append(doc)
        elif kind == "EndpointSlice":
            slices.append(doc)
        elif kind == "Gateway":
            gateways.append(doc)
        elif kind == "Secret":
            secrets.append(doc)
        else:
            objects.append(doc)
    return Inputs(
        objects=objects,
        services=services,
        endpoint_slices=slices,
        gateways=gateways,
        tailnets=tailnets,
        secrets=secrets,
    )


def load_case(name: str) -> Inputs:
    docs = list(yaml.safe_load_all((CASES / "_tailnet.yaml").read_text()))
    if name == "examples":
        for p in sorted(EXAMPLES.glob("*.yaml")):
            docs.extend(d for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] != "TailscaleTailnet")
    else:
        docs.extend(yaml.safe_load_all((CASES / f"{name}.yaml").read_text()))
    return inputs_from(docs)


def case_names() -> list[str]:
    return [*sorted(p.stem for p in CASES.glob("*.yaml") if not p.stem.startswith("_")), "examples"]


_OMITTED_WHEN_NONE = frozenset({"callers"})
"""Optional model fields shown only where a case sets them (older golden files stay as they were)."""


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(v)
            for f in dataclasses.fields(value)
            if (v := getattr(value, f.name)) is not None or f.name not in _OMITTED_WHEN_NONE
        }
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _condition(c: Condition) -> dict[str, Any]:
    return {"type": c.type, "status": str(c.status), "reason": c.reason, "message": c.message}


def _as_facts(details: StatusDetails | None) -> list[tuple[str, Any]]:
    """Status details as (json name, value) pairs, nested conditions with "True"/"False": the
    shape the golden files have always shown (statuses carried such pairs before they were
    typed), so that the files pin translation's verdicts and not how the model holds them."""
    match details:
        case EndpointsDetails(service_name, targets):
            return [
                ("serviceName", service_name),
                ("targets", [{"name": t.name, "addresses": t.addresses} for t in targets]),
            ]
        case ServicesDetails(service_name, dns_name, addresses):
            return [("serviceName", service_name), ("dnsName", dns_name), ("addresses", addresses)]
        case GatewayDetails(dns_name, addresses, listeners):
            verdicts = [
                {"name": v.name, "port": v.port, "conditions": [_condition(c) for c in v.conditions]}
                for v in listeners
            ]
            return [("dnsName", dns_name), ("addresses", addresses), ("listeners", verdicts)]
        case PolicyDetails(ancestors):
            entries = [
                {
                    "ancestorRef": {
                        "group": a.group,
                        "kind": a.kind,
                        "name": a.name,
                        "namespace": a.namespace,
                        **({"sectionName": a.section_name} if a.section_name else {}),
                    },
                    "conditions": [_condition(c) for c in a.conditions],
                }
                for a in ancestors
            ]
            return [("ancestors", entries)]
    return []


def _status(st: ObjectStatus) -> dict[str, Any]:
    return {
        "ref": _plain(st.ref),
        "conditions": _plain(st.conditions),
        "facts": _plain(_as_facts(st.details)),
    }


def _without_empty_tls(group: dict[str, Any]) -> dict[str, Any]:
    """A group's model without the TLS fields where it has no TLS (older golden files stay),
    and its certificates by name only (never key material in a golden file)."""
    if not group.get("secrets"):
        group.pop("secrets", None)
    else:
        group["secrets"] = [s["name"] for s in group["secrets"]]
    for li in group.get("listeners", ()):
        if not li.get("tls"):
            li.pop("tls", None)
    return group


def render(result: Result) -> str:
    """Model, xDS JSON and owned objects of a result, as stable, reviewable JSON text."""
    out = {
        "statuses": [_status(st) for st in result.model.statuses],
        "groups": {
            f"{ns}/{name}": {
                "model": _without_empty_tls(_plain(result.model.group(ns, name))),
                "xds": result.xds[(ns, name)].to_json(),
                "objects": result.objects[(ns, name)],
            }
            for ns, name in sorted(result.xds)
        },
    }
    if result.route_access:  # only cases with policies on Gateway API routes have any
        out["routeAccess"] = list(result.route_access)
    return json.dumps(out, indent=1, sort_keys=True) + "\n"
