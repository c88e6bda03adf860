"""API objects + Services + EndpointSlices + Gateways + tailnet facts → model.

Errors are values: each object gets conditions; an invalid or unresolvable object never stops
the others from translating. Everything is visited in sorted order, so output is deterministic.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tsgw import api
from tsgw.api import ControlPlaneType, EgressProtocol, ValidationError
from tsgw.model import (
    AccessPolicy,
    AccessRule,
    Cluster,
    Condition,
    Direction,
    Endpoint,
    Failover,
    HeaderChanges,
    Listener,
    Model,
    ObjectRef,
    ObjectStatus,
    Protocol,
    ProxyGroup,
    ProxyPod,
    Retries,
    Route,
    ServicePort,
    TailscaleService,
)
from tsgw.translate._identity import group_name
from tsgw.translate._inputs import Device, Inputs, Options, TailnetFacts

__all__ = ["apply_policies", "build_model", "index", "invalid_status", "translate_object"]

ACCEPTED = "Accepted"
RESOLVED = "ResolvedRefs"

_EGRESS_PROTOCOL = {
    EgressProtocol.TCP: Protocol.TCP,
    EgressProtocol.HTTP: Protocol.HTTP,
    EgressProtocol.GRPC: Protocol.GRPC,
    EgressProtocol.TLS: Protocol.TLS,
}


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
    return ctx


def invalid_status(raw: Mapping[str, Any], error: ValidationError) -> ObjectStatus | None:
    """The status of an object that failed schema validation (None if it has no name at all)."""
    ref = _raw_ref(raw)
    if ref is None:
        return None
    return ObjectStatus(ref, (_cond(ACCEPTED, False, "Invalid", str(error)),))


def translate_object(ctx: _Ctx, obj: api.Object[Any]) -> tuple[ProxyGroup | None, ObjectStatus]:
    """One TailscaleEndpoints, TailscaleServices or TailscaleGateway → its proxy group and status."""
    if obj.kind == "TailscaleEndpoints":
        return _endpoints(ctx, obj)
    if obj.kind == "TailscaleServices":
        return _services(ctx, obj)
    if obj.kind == "TailscaleGateway":
        return _gateway(ctx, obj)
    raise ValueError(f"translate_object does not handle {obj.kind}")


def build_model(inputs: Inputs, options: Options | None = None) -> Model:
    """Translate everything in `inputs` into one model. Never raises for bad input objects."""
    ctx = index(inputs, options or Options())
    statuses: list[ObjectStatus] = []
    loaded: list[api.Object[Any]] = []
    for raw in inputs.objects:
        try:
            loaded.append(api.load(raw))
        except ValidationError as e:
            st = invalid_status(raw, e)
            if st is not None:
                statuses.append(st)
    loaded.sort(key=lambda o: o.key)
    for obj in loaded:
        if obj.kind == "TailscaleTailnet":
            ctx.tailnets[obj.metadata.name] = obj.spec

    groups: list[ProxyGroup] = []
    policies: list[api.Object[Any]] = []
    for obj in loaded:
        if obj.kind == "TailscaleRoutePolicy":
            policies.append(obj)
            continue
        if obj.kind == "TailscaleTailnet":
            continue
        group, status = translate_object(ctx, obj)
        statuses.append(status)
        if group is not None:
            groups.append(group)
    groups, policy_statuses = apply_policies(ctx, groups, policies)
    statuses.extend(policy_statuses)
    groups.sort(key=lambda g: (g.namespace, g.name))
    statuses.sort(key=lambda s: (s.ref.kind, s.ref.namespace, s.ref.name))
    return Model(groups=tuple(groups), statuses=tuple(statuses))


# --- shared pieces ----------------------------------------------------------------------------


def _tailnet(ctx: _Ctx, ref: api.LocalRef) -> tuple[api.TailscaleTailnetSpec | None, TailnetFacts]:
    return ctx.tailnets.get(ref.name), ctx.inputs.tailnets.get(ref.name, TailnetFacts())


def _pod(ctx: _Ctx, proxy: api.Proxy, tailnet: api.TailscaleTailnetSpec) -> ProxyPod:
    cp = tailnet.control_plane
    login = cp.login_url or (cp.api_url or "" if cp.type is ControlPlaneType.HEADSCALE else "")
    res = proxy.resources
    return ProxyPod(
        replicas=proxy.replicas,
        tags=tailnet.tags,
        login_url=login,
        tailscale_image=proxy.images.tailscale or ctx.options.tailscale_image,
        envoy_image=proxy.images.envoy or ctx.options.envoy_image,
        requests=tuple(sorted((k, str(v)) for k, v in res.requests.items())) if res else (),
        limits=tuple(sorted((k, str(v)) for k, v in res.limits.items())) if res else (),
        node_selector=tuple(sorted(proxy.node_selector.items())),
        tolerations=proxy.tolerations,
        affinity=proxy.affinity,
    )


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


# --- TailscaleEndpoints (egress) ------------------------------------------------------------------


def _resolve_target(target: api.Target, facts: TailnetFacts, devices: _DeviceIndex) -> tuple[str, ...]:
    """Tailnet addresses of a target (IPv4 only: tailscaled's CONNECT proxy dials either, one
    family keeps endpoints from being counted twice)."""
    if target.address is not None:
        if _is_ip(target.address):
            return (target.address,)
        name = target.address.rstrip(".")
        d = devices.by_name.get(name) if "." in name else devices.by_short.get(name)
        return _v4(d.addresses) if d is not None else ()
    if target.service is not None:
        return _v4(facts.services.get(target.service, ()))
    first, *rest = target.device_tags
    want = set(rest)
    found: list[str] = []
    for d in devices.by_tag.get(first, ()):
        if want <= set(d.tags):
            found.extend(_v4(d.addresses))
    return tuple(sorted(set(found)))


def _v4(addresses: Iterable[str]) -> tuple[str, ...]:
    ordered = _ipv4_first(addresses)
    v4 = tuple(a for a in ordered if _ip_version(a) == 4)
    return v4[:1] if v4 else ordered[:1]


def _failover(spec: api.Failover) -> Failover:
    return Failover(
        consecutive_failures=spec.consecutive_failures,
        ejection_s=api.parse_duration(spec.ejection_time),
        interval_s=api.parse_duration(spec.interval),
        retries=spec.retries,
    )


_FAILOVER_RETRY_ON = ("connect-failure", "reset", "gateway-error")


def _endpoints(
    ctx: _Ctx, obj: api.Object[api.TailscaleEndpointsSpec]
) -> tuple[ProxyGroup | None, ObjectStatus]:
    ref = _ref(obj)
    spec = obj.spec
    tailnet, facts = _tailnet(ctx, spec.tailnet_ref)
    if tailnet is None:
        return None, ObjectStatus(
            ref,
            (
                _cond(ACCEPTED, True, "Accepted"),
                _cond(
                    RESOLVED,
                    False,
                    "TailnetNotFound",
                    f"TailscaleTailnet {spec.tailnet_ref.name!r} not found",
                ),
            ),
        )
    # Group target ports by Service port; the first target that names a port fixes its protocol.
    by_port: dict[int, tuple[Protocol, str]] = {}
    problems: list[str] = []
    for target in spec.targets:
        for p in target.ports:
            proto = _EGRESS_PROTOCOL[p.protocol]
            have = by_port.get(p.port)
            if have is None:
                by_port[p.port] = (proto, p.name or f"{proto.value}-{p.port}")
            elif have[0] is not proto:
                problems.append(
                    f"target {target.name!r} port {p.port} is {p.protocol.value} but an earlier target "
                    f"makes it {have[0].value.upper()}; the port keeps {have[0].value.upper()}"
                )
    unresolved: list[str] = []
    resolved: dict[str, tuple[str, ...]] = {}
    for target in spec.targets:
        addrs = _resolve_target(target, facts, ctx.devices(facts))
        resolved[target.name] = addrs
        if not addrs:
            unresolved.append(target.name)
    gname = group_name(obj.kind, obj.metadata.name)
    listeners: list[Listener] = []
    clusters: list[Cluster] = []
    service_ports: list[ServicePort] = []
    for i, port in enumerate(sorted(by_port)):
        proto, pname = by_port[port]
        cname = f"egress/{obj.metadata.namespace}/{obj.metadata.name}/{port}"
        endpoints: list[Endpoint] = []
        for target in spec.targets:
            for p in target.ports:
                if p.port != port or _EGRESS_PROTOCOL[p.protocol] is not proto:
                    continue
                for a in resolved[target.name]:
                    endpoints.append(
                        Endpoint(a, p.target_port or p.port, target.weight, target.priority, True)
                    )
        endpoints.sort(key=lambda e: (e.priority, e.address, e.port))
        clusters.append(Cluster(cname, proto, tuple(_dedupe(endpoints)), _failover(spec.failover)))
        local = ctx.options.first_listener_port + i
        routes: tuple[Route, ...] = ()
        if proto in (Protocol.HTTP, Protocol.GRPC):
            retries = Retries(spec.failover.retries, _FAILOVER_RETRY_ON) if spec.failover.retries else None
            routes = (Route(name="default", path_prefix="/", cluster=cname, retries=retries),)
        listeners.append(
            Listener(
                name=f"egress-{port}",
                port=local,
                protocol=proto,
                bind="0.0.0.0",
                cluster="" if routes else cname,
                routes=routes,
            )
        )
        service_ports.append(ServicePort(pname, port, local))
    conditions = [
        _cond(
            ACCEPTED, not problems, "PortProtocolConflict" if problems else "Accepted", "; ".join(problems)
        ),
        _cond(
            RESOLVED,
            not unresolved,
            "TargetsUnresolved" if unresolved else "ResolvedRefs",
            f"no tailnet address for targets {unresolved}" if unresolved else "",
        ),
    ]
    group = ProxyGroup(
        name=gname,
        namespace=obj.metadata.namespace,
        direction=Direction.EGRESS,
        owner=ref,
        tailnet=spec.tailnet_ref.name,
        pod=_pod(ctx, spec.proxy, tailnet),
        listeners=tuple(listeners),
        clusters=tuple(clusters),
        service_ports=tuple(service_ports),
    )
    # Health is what the proxies' Envoys report; the controller adds it, translation does not know.
    targets = tuple({"name": t.name, "addresses": list(resolved[t.name])} for t in spec.targets)
    facts_out: tuple[tuple[str, Any], ...] = (("serviceName", obj.metadata.name), ("targets", targets))
    return group, ObjectStatus(ref, tuple(conditions), facts_out)


def _dedupe(endpoints: list[Endpoint]) -> list[Endpoint]:
    seen: set[tuple[str, int, int]] = set()
    out = []
    for e in endpoints:
        key = (e.address, e.port, e.priority)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


# --- Kubernetes endpoints ------------------------------------------------------------------------


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


# --- TailscaleServices (ingress) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Backend:
    service: str
    weight: int
    priority: int


def _select_backends(
    ctx: _Ctx, namespace: str, backends: Iterable[api.IngressBackend]
) -> tuple[list[_Backend], list[str]]:
    chosen: dict[str, _Backend] = {}
    missing: list[str] = []
    for b in backends:
        if b.service is not None:
            if (namespace, b.service) not in ctx.services:
                missing.append(b.service)
                continue
            names = [b.service]
        else:
            sel = b.selector or {}
            names = sorted(
                n
                for (ns, n), svc in ctx.services.items()
                if ns == namespace
                and all(((svc.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in sel.items())
            )
            if not names:
                missing.append(f"selector {dict(sorted(sel.items()))}")
        for n in names:
            chosen.setdefault(n, _Backend(n, b.weight, b.priority))
    return sorted(chosen.values(), key=lambda b: b.service), missing


def _backend_endpoints(
    ctx: _Ctx, namespace: str, backends: Iterable[_Backend], target: int | str, problems: list[str]
) -> tuple[Endpoint, ...]:
    out: list[Endpoint] = []
    for b in backends:
        svc = ctx.services[(namespace, b.service)]
        sp = _service_port(svc, target)
        if sp is None:
            problems.append(f"Service {b.service!r} has no port {target!r}")
            continue
        for addr, port in _ready_endpoints(ctx, namespace, b.service, str(sp.get("name") or "")):
            out.append(Endpoint(addr, port, b.weight, b.priority))
    out.sort(key=lambda e: (e.priority, e.address, e.port))
    return tuple(_dedupe(out))


def _services(
    ctx: _Ctx, obj: api.Object[api.TailscaleServicesSpec]
) -> tuple[ProxyGroup | None, ObjectStatus]:
    ref = _ref(obj)
    spec = obj.spec
    ns = obj.metadata.namespace
    tailnet, facts = _tailnet(ctx, spec.tailnet_ref)
    if tailnet is None:
        return None, ObjectStatus(
            ref,
            (
                _cond(ACCEPTED, True, "Accepted"),
                _cond(
                    RESOLVED,
                    False,
                    "TailnetNotFound",
                    f"TailscaleTailnet {spec.tailnet_ref.name!r} not found",
                ),
            ),
        )
    backends, missing = _select_backends(ctx, ns, spec.backends)
    problems: list[str] = [f"backend {m} not found" for m in missing]
    by_name = {b.service: b for b in backends}
    label = spec.service_name or obj.metadata.name
    svc_name = f"svc:{label}"
    listeners: list[Listener] = []
    clusters: dict[str, Cluster] = {}
    ts_ports: list[tuple[int, int]] = []
    for i, port in enumerate(sorted(spec.ports, key=lambda p: p.port)):
        local = ctx.options.first_listener_port + i
        target = port.target_port if port.target_port is not None else port.port
        base = f"ingress/{ns}/{obj.metadata.name}/{port.port}"
        section = port.name or f"{port.protocol.lower()}-{port.port}"
        ts_ports.append((port.port, local))
        if port.protocol == "HTTP":
            rules = spec.http.rules if spec.http is not None else (api.HTTPRule(),)
            routes: list[Route] = []
            for n, rule in enumerate(rules):
                wanted = [by_name[s] for s in rule.services if s in by_name]
                unknown = [s for s in rule.services if s not in by_name]
                if unknown:
                    problems.append(f"http rule {n} names Services that are not backends: {unknown}")
                if rule.services and not wanted:
                    continue
                subset = wanted or backends
                cname = f"{base}/" + ("+".join(b.service for b in wanted) if wanted else "all")
                if cname not in clusters:
                    eps = _backend_endpoints(ctx, ns, subset, target, problems)
                    clusters[cname] = Cluster(cname, Protocol.HTTP, eps)
                routes.append(
                    Route(
                        name=f"rule-{n}",
                        path_prefix=rule.path_prefix,
                        cluster=cname,
                        headers=tuple((h.name, h.value) for h in rule.headers),
                        timeout_s=api.parse_duration(rule.timeout) if rule.timeout else None,
                    )
                )
            listeners.append(
                Listener(
                    f"ingress-{port.port}",
                    local,
                    Protocol.HTTP,
                    "127.0.0.1",
                    routes=tuple(routes),
                    proxy_protocol=True,
                    sections=(section,),
                )
            )
        else:
            cname = f"{base}/all"
            clusters[cname] = Cluster(
                cname, Protocol.TCP, _backend_endpoints(ctx, ns, backends, target, problems)
            )
            listeners.append(
                Listener(
                    f"ingress-{port.port}",
                    local,
                    Protocol.TCP,
                    "127.0.0.1",
                    cluster=cname,
                    proxy_protocol=True,
                    sections=(section,),
                )
            )
    problems = list(dict.fromkeys(problems))
    group = ProxyGroup(
        name=group_name(obj.kind, obj.metadata.name),
        namespace=ns,
        direction=Direction.INGRESS,
        owner=ref,
        tailnet=spec.tailnet_ref.name,
        pod=_pod(ctx, spec.proxy, tailnet),
        listeners=tuple(listeners),
        clusters=tuple(clusters[k] for k in sorted(clusters)),
        tailscale_service=TailscaleService(svc_name, tuple(ts_ports), spec.tags),
    )
    conditions = (
        _cond(ACCEPTED, True, "Accepted"),
        _cond(RESOLVED, not problems, "BackendNotFound" if problems else "ResolvedRefs", "; ".join(problems)),
    )
    facts_out: tuple[tuple[str, Any], ...] = (
        ("serviceName", svc_name),
        ("dnsName", _magicdns(facts, label)),
        ("addresses", list(_ipv4_first(facts.services.get(svc_name, ())))),
    )
    return group, ObjectStatus(ref, conditions, facts_out)


# --- TailscaleGateway -----------------------------------------------------------------------------

_OWNING_NAME = "gateway.envoyproxy.io/owning-gateway-name"
_OWNING_NS = "gateway.envoyproxy.io/owning-gateway-namespace"


def _gateway(ctx: _Ctx, obj: api.Object[api.TailscaleGatewaySpec]) -> tuple[ProxyGroup | None, ObjectStatus]:
    ref = _ref(obj)
    spec = obj.spec
    ns = obj.metadata.namespace
    tailnet, facts = _tailnet(ctx, spec.tailnet_ref)
    gw = ctx.gateways.get((ns, spec.gateway_ref.name))
    if tailnet is None or gw is None:
        what = (
            ("TailnetNotFound", f"TailscaleTailnet {spec.tailnet_ref.name!r} not found")
            if tailnet is None
            else ("GatewayNotFound", f"Gateway {spec.gateway_ref.name!r} not found in {ns!r}")
        )
        return None, ObjectStatus(ref, (_cond(ACCEPTED, True, "Accepted"), _cond(RESOLVED, False, *what)))
    gw_listeners = {
        str(li.get("name")): int(li.get("port", 0))
        for li in (gw.get("spec") or {}).get("listeners") or ()
        if isinstance(li.get("port"), int)
    }
    wanted = list(spec.listeners) or sorted(gw_listeners)
    problems = [
        f"listener {n!r} is not on Gateway {spec.gateway_ref.name!r}" for n in wanted if n not in gw_listeners
    ]
    # Envoy Gateway's Service for this Gateway (in its own namespace), found by its labels.
    eg_svc = None
    for (_sns, _sname), svc in sorted(ctx.services.items()):
        labels = (svc.get("metadata") or {}).get("labels") or {}
        if labels.get(_OWNING_NAME) == spec.gateway_ref.name and labels.get(_OWNING_NS) == ns:
            eg_svc = svc
            break
    if eg_svc is None:
        problems.append("Envoy Gateway has not created the Gateway's Service yet")
    ports = sorted({gw_listeners[n] for n in wanted if n in gw_listeners})
    label = spec.service_name or spec.gateway_ref.name
    listeners: list[Listener] = []
    clusters: list[Cluster] = []
    ts_ports: list[tuple[int, int]] = []
    for i, port in enumerate(ports):
        local = ctx.options.first_listener_port + i
        cname = f"gateway/{ns}/{obj.metadata.name}/{port}"
        eps: tuple[Endpoint, ...] = ()
        if eg_svc is not None:
            emd = eg_svc.get("metadata") or {}
            sp = _service_port(eg_svc, port)
            if sp is not None:
                found = _ready_endpoints(
                    ctx, str(emd.get("namespace")), str(emd.get("name")), str(sp.get("name") or "")
                )
                eps = tuple(Endpoint(a, p) for a, p in found)
        clusters.append(Cluster(cname, Protocol.TCP, eps))
        names = tuple(sorted(n for n in wanted if gw_listeners.get(n) == port))
        listeners.append(
            Listener(
                f"gateway-{port}",
                local,
                Protocol.TCP,
                "127.0.0.1",
                cluster=cname,
                proxy_protocol=True,
                sections=names,
            )
        )
        ts_ports.append((port, local))
    group = ProxyGroup(
        name=group_name(obj.kind, obj.metadata.name),
        namespace=ns,
        direction=Direction.INGRESS,
        owner=ref,
        tailnet=spec.tailnet_ref.name,
        pod=_pod(ctx, spec.proxy, tailnet),
        listeners=tuple(listeners),
        clusters=tuple(clusters),
        tailscale_service=TailscaleService(f"svc:{label}", tuple(ts_ports), spec.tags),
    )
    # Per listener, conditions as Gateway API's ListenerStatus has them (merged by status_body).
    listener_status = [
        {
            "name": n,
            "port": gw_listeners.get(n, 0),
            "conditions": [
                {
                    "type": ACCEPTED,
                    "status": "True",
                    "reason": "Accepted",
                    "message": f"published on svc:{label}",
                }
                if n in gw_listeners
                else {
                    "type": ACCEPTED,
                    "status": "False",
                    "reason": "ListenerNotFound",
                    "message": f"no listener {n!r} on Gateway {spec.gateway_ref.name!r}",
                }
            ],
        }
        for n in wanted
    ]
    conditions = (
        _cond(ACCEPTED, True, "Accepted"),
        _cond(RESOLVED, not problems, "RefNotResolved" if problems else "ResolvedRefs", "; ".join(problems)),
    )
    facts_out: tuple[tuple[str, Any], ...] = (
        ("dnsName", _magicdns(facts, label)),
        ("addresses", list(_ipv4_first(facts.services.get(f"svc:{label}", ())))),
        ("listeners", listener_status),
    )
    return group, ObjectStatus(ref, conditions, facts_out)


# --- TailscaleRoutePolicy -------------------------------------------------------------------------


def _access(policy: api.Access, facts: TailnetFacts) -> AccessPolicy:
    rules = []
    for r in policy.rules:
        cidrs: set[str] = {str(ipaddress.ip_network(c, strict=False)) for c in r.cidrs}
        for d in facts.devices:
            if set(r.tags) & set(d.tags) or (d.user and d.user in r.users):
                for a in d.addresses:
                    if _is_ip(a):
                        cidrs.add(str(ipaddress.ip_network(a)))
        rules.append(AccessRule(r.action is api.AccessAction.ALLOW, tuple(sorted(cidrs))))
    return AccessPolicy(tuple(rules), policy.default_action is api.AccessAction.ALLOW)


def apply_policies(
    ctx: _Ctx, groups: list[ProxyGroup], policies: list[api.Object[Any]]
) -> tuple[list[ProxyGroup], list[ObjectStatus]]:
    by_owner = {(g.owner.kind, g.owner.namespace, g.owner.name): i for i, g in enumerate(groups)}
    # Older policy first (creation time, then name), as Gateway API resolves conflicts.
    policies = sorted(
        policies, key=lambda p: (p.metadata.creation_timestamp, p.metadata.namespace, p.metadata.name)
    )
    claimed: dict[tuple[str, str, str, str], str] = {}
    statuses: list[ObjectStatus] = []
    for pol in policies:
        spec: api.TailscaleRoutePolicySpec = pol.spec
        ns = pol.metadata.namespace
        ancestors: list[dict[str, Any]] = []
        conds: list[Condition] = []
        for t in spec.target_refs:
            key = (t.kind, ns, t.name, t.section_name or "")
            idx = by_owner.get((t.kind, ns, t.name))
            whole = (t.kind, ns, t.name, "")
            holder = claimed.get(key) or (claimed.get(whole) if t.section_name else None)
            if t.section_name is None and holder is None:
                holder = next((v for k, v in claimed.items() if k[:3] == key[:3]), None)
            if idx is None:
                cond = _cond(
                    "Accepted", False, "TargetNotFound", f"{t.kind} {t.name!r} not found or not translated"
                )
            elif holder is not None:
                cond = _cond(
                    "Accepted", False, "Conflicted", f"TailscaleRoutePolicy {holder!r} already targets it"
                )
            else:
                cond = _policy_fit(spec, groups[idx], t)
                if cond.status:
                    claimed[key] = pol.metadata.name
                    g = groups[idx]
                    facts = ctx.inputs.tailnets.get(g.tailnet, TailnetFacts())
                    groups[idx] = _with_policy(g, spec, t.section_name, facts)
            ancestors.append(
                {
                    "ancestorRef": {
                        "group": t.group,
                        "kind": t.kind,
                        "name": t.name,
                        "namespace": ns,
                        **({"sectionName": t.section_name} if t.section_name else {}),
                    },
                    "conditions": [
                        {
                            "type": cond.type,
                            "status": str(cond.status),
                            "reason": cond.reason,
                            "message": cond.message,
                        }
                    ],
                }
            )
            conds.append(cond)
        statuses.append(ObjectStatus(_ref(pol), _merge(conds), (("ancestors", tuple(ancestors)),)))
    return groups, statuses


def _policy_fit(spec: api.TailscaleRoutePolicySpec, g: ProxyGroup, t: Any) -> Condition:
    """Whether a policy can take effect on one target: its section must exist, and a policy of
    HTTP-only settings on a target with no HTTP listener would do nothing (the schema cannot
    know the target's protocols, so translation says so)."""
    selected = [li for li in g.listeners if t.section_name is None or t.section_name in li.sections]
    if not selected:
        return _cond(
            "Accepted", False, "TargetNotFound", f"{t.kind} {t.name!r} has no section {t.section_name!r}"
        )
    http_only = [
        name
        for name, value in (
            ("timeout", spec.timeout),
            ("retries", spec.retries),
            ("requestHeaders", spec.request_headers),
        )
        if value
    ]
    if not http_only or any(li.routes for li in selected):
        return _cond("Accepted", True, "Accepted")
    fields = ", ".join(http_only)
    if spec.access is None:
        return _cond(
            "Accepted",
            False,
            "Invalid",
            f"{fields}: for HTTP and gRPC listeners only, and the target has only TCP",
        )
    return _cond(
        "Accepted", True, "Accepted", f"access applies; {fields} ignored: for HTTP and gRPC listeners only"
    )


def _merge(conds: list[Condition]) -> tuple[Condition, ...]:
    """One Accepted condition for the whole policy: true only if every target accepted it."""
    bad = [c for c in conds if not c.status]
    if not bad:
        return (_cond("Accepted", True, "Accepted"),)
    return (_cond("Accepted", False, bad[0].reason, "; ".join(c.message for c in bad)),)


def _with_policy(
    g: ProxyGroup, spec: api.TailscaleRoutePolicySpec, section: str | None, facts: TailnetFacts
) -> ProxyGroup:
    access = _access(spec.access, facts) if spec.access is not None else None
    headers = HeaderChanges()
    if spec.request_headers is not None:
        rh = spec.request_headers
        headers = HeaderChanges(
            set=tuple((h.name, h.value) for h in rh.set),
            add=tuple((h.name, h.value) for h in rh.add),
            remove=rh.remove,
        )
    retries = None
    if spec.retries is not None:
        r = spec.retries
        retries = Retries(
            r.attempts, r.retry_on, api.parse_duration(r.per_try_timeout) if r.per_try_timeout else None
        )
    timeout = api.parse_duration(spec.timeout) if spec.timeout else None
    out = []
    for li in g.listeners:
        if section is not None and section not in li.sections:
            out.append(li)
            continue
        routes = tuple(
            dataclasses.replace(
                r,
                timeout_s=r.timeout_s if r.timeout_s is not None else timeout,
                retries=retries or r.retries,
                request_headers=headers,
            )
            for r in li.routes
        )
        out.append(dataclasses.replace(li, routes=routes, access=access or li.access))
    return dataclasses.replace(g, listeners=tuple(out))
