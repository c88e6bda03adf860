"""TailscaleServices (ingress) → a proxy group publishing Services as a Tailscale Service.

The group serves `svc:<serviceName or name>` on the tailnet. Backends are Services of the
object's namespace, by name or by label selector; a Service named by several backends keeps the
weight and priority of the first. Each port is one listener on 127.0.0.1 (tailscaled forwards to
it with the PROXY protocol): an HTTP port routes by its rules, each rule to a cluster of the
Services it names (all backends if it names none), and tells the backends who calls in
``Tailscale-*`` headers (`_caller`); a TCP port is one cluster of all backends, whose connections
open with a PROXY v2 header of the caller's addresses when the port asks (``proxyProtocol``).
Endpoints are the backends' ready endpoints. A missing backend, port or rule Service is
reported (ResolvedRefs=False, BackendNotFound); the group is built all the same. No group
without the tailnet.

A port with ``tls`` terminates TLS with certificates from Secrets (`_tls`: SNI chains, SDS, the
last good certificate, the ``CertificatesReady`` condition).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from tsgw import api
from tsgw.model import (
    Cluster,
    Condition,
    Direction,
    Endpoint,
    Listener,
    ObjectStatus,
    Protocol,
    ProxyGroup,
    Route,
    ServicesDetails,
    TailscaleService,
    TlsSecret,
)
from tsgw.translate._caller import caller_identity
from tsgw.translate._context import (
    ACCEPTED,
    RESOLVED,
    _cond,
    _Ctx,
    _dedupe,
    _ipv4_first,
    _magicdns,
    _proxy_group,
    _ref,
    _service_ready,
    _tailnet,
    _tailnet_not_found,
)
from tsgw.translate._kube_endpoints import _ready_endpoints, _service_port
from tsgw.translate._tls import certificate_condition, resolve_port

__all__ = ["_services"]


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
        return None, _tailnet_not_found(ref, spec.tailnet_ref)
    backends, missing = _select_backends(ctx, ns, spec.backends)
    problems: list[str] = [f"backend {m} not found" for m in missing]
    by_name = {b.service: b for b in backends}
    label = spec.service_name or obj.metadata.name
    svc_name = f"svc:{label}"
    listeners: list[Listener] = []
    clusters: dict[str, Cluster] = {}
    ts_ports: list[tuple[int, int]] = []
    now = datetime.datetime.now(datetime.UTC)  # certificate validity: judged at translation
    tls_problems: list[tuple[str, str]] = []
    tls_secrets: dict[str, TlsSecret] = {}
    for i, port in enumerate(sorted(spec.ports, key=lambda p: p.port)):
        local = ctx.options.first_listener_port + i
        tls = resolve_port(ctx.secrets, ctx.last_good, ns, port, now)
        tls_problems.extend(tls.problems)
        tls_secrets.update((s.name, s) for s in tls.secrets)
        if port.tls and not tls.certificates:
            continue  # no certificate ever passed the checks: the port is not served
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
                    callers=caller_identity(facts),
                    sections=(section,),
                    tls=tls.certificates,
                )
            )
        else:
            cname = f"{base}/all"
            clusters[cname] = Cluster(
                cname,
                Protocol.TCP,
                _backend_endpoints(ctx, ns, backends, target, problems),
                proxy_protocol=port.proxy_protocol,
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
                    tls=tls.certificates,
                )
            )
    problems = list(dict.fromkeys(problems))
    group = _proxy_group(
        ctx,
        obj,
        tailnet,
        Direction.INGRESS,
        listeners,
        [clusters[k] for k in sorted(clusters)],
        tailscale_service=TailscaleService(svc_name, tuple(ts_ports), spec.tags),
    )
    if tls_secrets:
        group = dataclasses.replace(group, secrets=tuple(tls_secrets[k] for k in sorted(tls_secrets)))
    accepted = _cond(ACCEPTED, True, "Accepted")
    details = ServicesDetails(
        svc_name, _magicdns(facts, label), tuple(_ipv4_first(facts.services.get(svc_name, ())))
    )
    if group.pod.serve_on_device:
        # Headscale has no Tailscale Services: each proxy serves the ports on its own name.
        pods = ", ".join(_magicdns(facts, p) or p for p in group.replica_names())
        accepted = _cond(
            ACCEPTED,
            True,
            "Accepted",
            f"this control plane has no Tailscale Services: {svc_name} is not created, each proxy "
            f"serves the ports on its own name ({pods})",
        )
        details = ServicesDetails("", "", ())
    conditions: tuple[Condition, ...] = (
        accepted,
        _cond(RESOLVED, not problems, "BackendNotFound" if problems else "ResolvedRefs", "; ".join(problems)),
    )
    if not group.pod.serve_on_device:
        conditions += (_service_ready(facts, svc_name, f"{ref.kind}/{ref.namespace}/{ref.name}"),)
    if any(p.tls for p in spec.ports):
        conditions += (certificate_condition(tls_problems),)
    return group, ObjectStatus(ref, conditions, details)
