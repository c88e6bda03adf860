"""TailscaleGateway → a proxy group publishing a Gateway API Gateway's listeners on the tailnet.

Envoy Gateway serves the Gateway; this group forwards TCP, with the PROXY protocol, from a
Tailscale Service `svc:<serviceName or gatewayRef name>` to the Service Envoy Gateway creates
for it (found by its labels `gateway.envoyproxy.io/owning-gateway-name` and `-namespace`). One
listener per Gateway port of the chosen listeners (all of them if none are named). Each chosen
listener gets conditions as Gateway API's ListenerStatus has them; a missing listener, or Envoy
Gateway's Service not there yet, is reported (ResolvedRefs=False, RefNotResolved). No group
without the tailnet or the Gateway.
"""

from __future__ import annotations

from tsgw import api
from tsgw.model import (
    Cluster,
    Condition,
    Direction,
    Endpoint,
    GatewayDetails,
    Listener,
    ListenerVerdict,
    ObjectStatus,
    Protocol,
    ProxyGroup,
    TailscaleService,
)
from tsgw.translate._context import (
    ACCEPTED,
    RESOLVED,
    _cond,
    _Ctx,
    _ipv4_first,
    _magicdns,
    _proxy_group,
    _ref,
    _service_ready,
    _tailnet,
    _tailnet_not_found,
    _unresolved,
)
from tsgw.translate._kube_endpoints import _ready_endpoints, _service_port

__all__ = ["_gateway"]

_OWNING_NAME = "gateway.envoyproxy.io/owning-gateway-name"
_OWNING_NS = "gateway.envoyproxy.io/owning-gateway-namespace"


def _gateway(ctx: _Ctx, obj: api.Object[api.TailscaleGatewaySpec]) -> tuple[ProxyGroup | None, ObjectStatus]:
    ref = _ref(obj)
    spec = obj.spec
    ns = obj.metadata.namespace
    tailnet, facts = _tailnet(ctx, spec.tailnet_ref)
    gw = ctx.gateways.get((ns, spec.gateway_ref.name))
    if tailnet is None:
        return None, _tailnet_not_found(ref, spec.tailnet_ref)
    if gw is None:
        return None, _unresolved(
            ref, "GatewayNotFound", f"Gateway {spec.gateway_ref.name!r} not found in {ns!r}"
        )
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
        clusters.append(Cluster(cname, Protocol.TCP, eps, proxy_protocol=True))
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
    group = _proxy_group(
        ctx,
        obj,
        tailnet,
        Direction.INGRESS,
        listeners,
        clusters,
        tailscale_service=TailscaleService(f"svc:{label}", tuple(ts_ports), spec.tags),
    )
    # Per listener, conditions as Gateway API's ListenerStatus has them (merged by status_body).
    if group.pod.serve_on_device:
        # Headscale has no Tailscale Services: each proxy serves the ports on its own name.
        pods = ", ".join(_magicdns(facts, p) or p for p in group.replica_names())
        published = _cond(ACCEPTED, True, "Accepted", f"published on each proxy's own name ({pods})")
    else:
        published = _cond(ACCEPTED, True, "Accepted", f"published on svc:{label}")
    verdicts: list[ListenerVerdict] = []
    for n in wanted:
        if n in gw_listeners:
            verdicts.append(ListenerVerdict(n, gw_listeners[n], (published,)))
        else:
            missing = f"no listener {n!r} on Gateway {spec.gateway_ref.name!r}"
            verdicts.append(ListenerVerdict(n, 0, (_cond(ACCEPTED, False, "ListenerNotFound", missing),)))
    conditions: tuple[Condition, ...] = (
        _cond(ACCEPTED, True, "Accepted"),
        _cond(RESOLVED, not problems, "RefNotResolved" if problems else "ResolvedRefs", "; ".join(problems)),
    )
    if not group.pod.serve_on_device:
        conditions += (_service_ready(facts, f"svc:{label}", f"{ref.kind}/{ref.namespace}/{ref.name}"),)
    addresses = tuple(_ipv4_first(facts.services.get(f"svc:{label}", ())))
    return group, ObjectStatus(
        ref, conditions, GatewayDetails(_magicdns(facts, label), addresses, tuple(verdicts))
    )
