"""Kubernetes Services and EndpointSlices → backend addresses.

A Service port is found by name or by number. Its ready endpoints are the addresses of the
EndpointSlices labelled `kubernetes.io/service-name` with the Service's name, on the slice port
of the same name, as kube-proxy reads them: IPv4 and IPv6 slices only (not FQDN), and an
endpoint whose `ready` condition is unset counts as ready (EndpointConditions: "nil value
indicates an unknown state. In most cases consumers should interpret this unknown state as
ready"). Output is sorted and free of duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tsgw.translate._context import _Ctx

__all__ = ["_ready_endpoints", "_service_port"]


def _service_port(svc: Mapping[str, Any], target: int | str) -> Mapping[str, Any] | None:
    for p in (svc.get("spec") or {}).get("ports") or ():
        if isinstance(target, str) and p.get("name") == target:
            return dict(p)
        if isinstance(target, int) and p.get("port") == target:
            return dict(p)
    return None


def _ready_endpoints(ctx: _Ctx, namespace: str, svc_name: str, port_name: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for es in ctx.slices.get((namespace, svc_name), ()):
        if es.get("addressType") not in ("IPv4", "IPv6", None):
            continue
        number = None
        for p in es.get("ports") or ():
            if (p.get("name") or "") == port_name and isinstance(p.get("port"), int):
                number = p["port"]
        if number is None:
            continue
        for ep in es.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for a in ep.get("addresses") or ():
                out.append((str(a), int(number)))
    return sorted(set(out))
