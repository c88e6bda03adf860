"""TailscaleEndpoints (egress) → a proxy group that lets the cluster reach tailnet targets.

Each Service port is one listener and one cluster, whose endpoints are the tailnet addresses of
the targets naming that port. A target resolves by address (an IP, or a MagicDNS name, full or
short), by Tailscale Service, or by device tags (the online devices carrying all of them); one
address per device or Service, IPv4 where it has one. The first target naming a port fixes its
protocol: a later target that gives it another is reported (Accepted=False,
PortProtocolConflict) and left out of it. HTTP and gRPC listeners route `/` to the cluster,
retrying on connect-failure, reset and gateway-error when `failover.retries` is set. A target
without an address is reported (ResolvedRefs=False, TargetsUnresolved); the group is built all
the same. No group without the tailnet.
"""

from __future__ import annotations

from collections.abc import Iterable

from tsgw import api
from tsgw.api import EgressProtocol
from tsgw.model import (
    Cluster,
    Direction,
    Endpoint,
    EndpointsDetails,
    Failover,
    Listener,
    ObjectStatus,
    Protocol,
    ProxyGroup,
    Retries,
    Route,
    ServicePort,
    TargetDetail,
)
from tsgw.translate._context import (
    ACCEPTED,
    RESOLVED,
    _cond,
    _Ctx,
    _dedupe,
    _DeviceIndex,
    _ip_version,
    _ipv4_first,
    _is_ip,
    _proxy_group,
    _ref,
    _tailnet,
    _tailnet_not_found,
)
from tsgw.translate._inputs import TailnetFacts

__all__ = ["_endpoints", "egress_service_ports"]

_EGRESS_PROTOCOL = {
    EgressProtocol.TCP: Protocol.TCP,
    EgressProtocol.HTTP: Protocol.HTTP,
    EgressProtocol.GRPC: Protocol.GRPC,
    EgressProtocol.TLS: Protocol.TLS,
}


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


def _service_ports(
    spec: api.TailscaleEndpointsSpec,
) -> tuple[dict[int, tuple[Protocol, str]], list[str]]:
    """The egress Service's ports: port → (protocol, port name), and the conflicts. Target ports
    are grouped by Service port; the first target that names a port fixes its protocol."""
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
    return by_port, problems


def egress_service_ports(spec: api.TailscaleEndpointsSpec) -> tuple[tuple[int, Protocol], ...]:
    """(port, protocol) of each port of the ClusterIP Service a TailscaleEndpoints gets, by port:
    what a client of its egress proxies (a pod, Envoy Gateway's Envoy) may dial."""
    by_port, _ = _service_ports(spec)
    return tuple((port, by_port[port][0]) for port in sorted(by_port))


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
        return None, _tailnet_not_found(ref, spec.tailnet_ref)
    by_port, problems = _service_ports(spec)
    unresolved: list[str] = []
    resolved: dict[str, tuple[str, ...]] = {}
    for target in spec.targets:
        addrs = _resolve_target(target, facts, ctx.devices(facts))
        resolved[target.name] = addrs
        if not addrs:
            unresolved.append(target.name)
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
    group = _proxy_group(
        ctx, obj, tailnet, Direction.EGRESS, listeners, clusters, service_ports=tuple(service_ports)
    )
    # Health is what the proxies' Envoys report; the controller adds it, translation does not know.
    targets = tuple(TargetDetail(t.name, resolved[t.name]) for t in spec.targets)
    return group, ObjectStatus(ref, tuple(conditions), EndpointsDetails(obj.metadata.name, targets))
