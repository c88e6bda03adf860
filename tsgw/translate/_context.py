"""What the translation of every kind shares: the index of the inputs, and small helpers.

`index()` files the Services, EndpointSlices and Gateways of the inputs by namespace and name,
and the devices of a tailnet by MagicDNS name, short name and tag, so that resolving a
reference is a lookup. The helpers build conditions, statuses and object refs, an object's proxy
group and its pod, and order addresses (IPv4 first). Errors are values: `invalid_status` is the status of an
object that failed schema validation; one bad object never stops the others from translating.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tsgw import api
from tsgw.api import ControlPlaneType, ValidationError
from tsgw.model import (
    Cluster,
    Condition,
    Direction,
    Endpoint,
    Listener,
    ObjectRef,
    ObjectStatus,
    ProxyGroup,
    ProxyPod,
    ServicePort,
    TailscaleService,
)
from tsgw.translate._identity import group_name
from tsgw.translate._inputs import Device, Inputs, Options, TailnetFacts
from tsgw.translate._tls import LastGood, index_secrets

__all__ = [
    "ACCEPTED",
    "RESOLVED",
    "SERVICE_READY",
    "_Ctx",
    "_DeviceIndex",
    "_cond",
    "_dedupe",
    "_ip_version",
    "_ipv4_first",
    "_is_ip",
    "_magicdns",
    "_proxy_group",
    "_ref",
    "_service_ready",
    "_tailnet",
    "_tailnet_not_found",
    "_unresolved",
    "index",
    "invalid_status",
]

ACCEPTED = "Accepted"
RESOLVED = "ResolvedRefs"
SERVICE_READY = "TailscaleServiceReady"
"""Whether the group's Tailscale Service exists on the tailnet (its VIPs are in the facts)."""


def _service_ready(facts: TailnetFacts, name: str, claimant: str) -> Condition:
    """The :data:`SERVICE_READY` condition of an object (``Kind/namespace/name``) whose group
    hosts ``name``: the service must exist and carry this object's claim."""
    vips = facts.services.get(name, ())
    if vips and claimant in facts.claims.get(name, ()):
        return _cond(SERVICE_READY, True, "Created", f"{name} has addresses {', '.join(vips)}")
    if vips:
        return _cond(
            SERVICE_READY,
            False,
            "NotClaimed",
            f"{name} exists on the tailnet but not for this object (made outside tsgw, or defined "
            "differently by another owner): see the object's Events",
        )
    return _cond(
        SERVICE_READY,
        False,
        "NotCreated",
        f"{name} is not on the tailnet yet: the operator creates it (its Events say why when it cannot)",
    )


@dataclass
class _Ctx:
    inputs: Inputs
    options: Options
    tailnets: dict[str, api.TailscaleTailnetSpec] = field(default_factory=dict)
    services: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    slices: dict[tuple[str, str], list[Mapping[str, Any]]] = field(default_factory=dict)
    gateways: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    device_index: dict[int, tuple[TailnetFacts, _DeviceIndex]] = field(default_factory=dict)
    """id(facts) → (facts, index); may be shared between translations (identity-checked)."""
    secrets: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """TLS Secrets by ``namespace/name``."""
    last_good: LastGood = field(default_factory=LastGood)
    """The Translator's last good certificates (`_tls`)."""

    def devices(self, facts: TailnetFacts) -> _DeviceIndex:
        hit = self.device_index.get(id(facts))
        if hit is not None and hit[0] is facts:
            return hit[1]
        idx = _DeviceIndex(facts)
        self.device_index[id(facts)] = (facts, idx)
        return idx


class _DeviceIndex:
    """Devices by MagicDNS name, short name and tag: resolving a target is a lookup."""

    def __init__(self, facts: TailnetFacts) -> None:
        self.by_name: dict[str, Device] = {}
        self.by_short: dict[str, Device] = {}
        self.by_tag: dict[str, list[Device]] = {}
        for d in facts.devices:
            full = d.name.rstrip(".")
            self.by_name.setdefault(full, d)
            self.by_short.setdefault(full.split(".", 1)[0], d)
            if d.online:
                for t in d.tags:
                    self.by_tag.setdefault(t, []).append(d)


def _cond(type_: str, ok: bool, reason: str, message: str = "") -> Condition:
    return Condition(type_, ok, reason, message)


def _ref(obj: api.Object[Any]) -> ObjectRef:
    md = obj.metadata
    return ObjectRef(obj.kind, md.namespace, md.name, md.uid, md.generation)


def _raw_ref(raw: Mapping[str, Any]) -> ObjectRef | None:
    md = raw.get("metadata")
    if not isinstance(md, Mapping) or not isinstance(md.get("name"), str):
        return None
    return ObjectRef(
        str(raw.get("kind", "")),
        str(md.get("namespace") or ""),
        md["name"],
        str(md.get("uid") or ""),
        int(md.get("generation") or 0) if isinstance(md.get("generation"), int) else 0,
    )


def index(
    inputs: Inputs, options: Options, device_index: dict[int, tuple[TailnetFacts, _DeviceIndex]] | None = None
) -> _Ctx:
    """Index the Services, EndpointSlices and Gateways of `inputs` by namespace and name."""
    ctx = _Ctx(inputs, options)
    if device_index is not None:
        ctx.device_index = device_index
    for s in inputs.services:
        md = s.get("metadata") or {}
        ctx.services[(str(md.get("namespace", "")), str(md.get("name", "")))] = s
    for es in inputs.endpoint_slices:
        md = es.get("metadata") or {}
        owner = (md.get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            ctx.slices.setdefault((str(md.get("namespace", "")), str(owner)), []).append(es)
    for sl in ctx.slices.values():
        sl.sort(key=lambda e: str((e.get("metadata") or {}).get("name", "")))
    for g in inputs.gateways:
        md = g.get("metadata") or {}
        ctx.gateways[(str(md.get("namespace", "")), str(md.get("name", "")))] = g
    ctx.secrets = index_secrets(inputs.secrets)
    return ctx


def invalid_status(raw: Mapping[str, Any], error: ValidationError) -> ObjectStatus | None:
    """The status of an object that failed schema validation (None if it has no name at all)."""
    ref = _raw_ref(raw)
    if ref is None:
        return None
    return ObjectStatus(ref, (_cond(ACCEPTED, False, "Invalid", str(error)),))


def _tailnet(ctx: _Ctx, ref: api.LocalRef) -> tuple[api.TailscaleTailnetSpec | None, TailnetFacts]:
    return ctx.tailnets.get(ref.name), ctx.inputs.tailnets.get(ref.name, TailnetFacts())


def _pod(ctx: _Ctx, proxy: api.Proxy, tailnet: api.TailscaleTailnetSpec) -> ProxyPod:
    cp = tailnet.control_plane
    login = cp.login_url or (cp.api_url or "" if cp.type is ControlPlaneType.HEADSCALE else "")
    res = proxy.resources
    return ProxyPod(
        replicas=proxy.replicas,
        tags=proxy.tags or tailnet.tags,
        login_url=login,
        tailscale_image=proxy.images.tailscale or ctx.options.tailscale_image,
        envoy_image=proxy.images.envoy or ctx.options.envoy_image,
        requests=tuple(sorted((k, str(v)) for k, v in res.requests.items())) if res else (),
        limits=tuple(sorted((k, str(v)) for k, v in res.limits.items())) if res else (),
        node_selector=tuple(sorted(proxy.node_selector.items())),
        tolerations=proxy.tolerations,
        affinity=proxy.affinity,
        serve_on_device=cp.type is ControlPlaneType.HEADSCALE,
    )


def _proxy_group(
    ctx: _Ctx,
    obj: api.Object[Any],
    tailnet: api.TailscaleTailnetSpec,
    direction: Direction,
    listeners: Iterable[Listener],
    clusters: Iterable[Cluster],
    *,
    service_ports: tuple[ServicePort, ...] = (),
    tailscale_service: TailscaleService | None = None,
) -> ProxyGroup:
    """The proxy group `obj` owns: named after it, in its namespace, its proxies on its tailnet."""
    spec = obj.spec
    return ProxyGroup(
        name=group_name(obj.kind, obj.metadata.name),
        namespace=obj.metadata.namespace,
        direction=direction,
        owner=_ref(obj),
        tailnet=spec.tailnet_ref.name,
        pod=_pod(ctx, spec.proxy, tailnet),
        listeners=tuple(listeners),
        clusters=tuple(clusters),
        service_ports=service_ports,
        tailscale_service=tailscale_service,
    )


def _unresolved(ref: ObjectRef, reason: str, message: str) -> ObjectStatus:
    """The status of an object accepted but not translated: something it refers to is missing."""
    return ObjectStatus(ref, (_cond(ACCEPTED, True, "Accepted"), _cond(RESOLVED, False, reason, message)))


def _tailnet_not_found(ref: ObjectRef, tailnet: api.LocalRef) -> ObjectStatus:
    return _unresolved(ref, "TailnetNotFound", f"TailscaleTailnet {tailnet.name!r} not found")


@functools.lru_cache(maxsize=1 << 16)
def _ip_version(text: str) -> int:
    """4 or 6 for an IP address, 0 for anything else. Cached: a translation asks about the same
    few thousand tailnet addresses many times, and ipaddress parses in pure Python."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


def _ipv4_first(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(addresses), key=lambda a: (_ip_version(a) or 9, a)))


def _is_ip(text: str) -> bool:
    return _ip_version(text) != 0


def _magicdns(facts: TailnetFacts, label: str) -> str:
    return f"{label}.{facts.magic_dns_suffix}" if facts.magic_dns_suffix else ""


def _dedupe(endpoints: list[Endpoint]) -> list[Endpoint]:
    seen: set[tuple[str, int, int]] = set()
    out = []
    for e in endpoints:
        key = (e.address, e.port, e.priority)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
