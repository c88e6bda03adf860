"""The hooks' logic, with no I/O: Envoy Gateway's request in, the answer out.

Upstream: Envoy Gateway v1.9.0, ``proto/extension/service.proto`` (vendored in
``proto/envoygateway``), the callers ``internal/xds/translator/extension.go`` and
``internal/extension/registry/xds_hook.go``, and custom backends in
``internal/gatewayapi/route.go`` (``processDestinationSetting``, ``processBackendExtensions``).

**Custom backends** (``PostClusterModify``). Envoy Gateway is configured with
``backendResources: [{group: gateway.tailscale.com, version: v1alpha1, kind:
TailscaleEndpoints}]``. For an HTTPRoute or GRPCRoute rule whose ``backendRefs`` name one, it
builds a cluster with no endpoints, named after the rule (``httproute/<ns>/<name>/rule/<i>``),
and sends it with every extension resource of the rule (as Kubernetes JSON). The answer is that
cluster turned into a ``STRICT_DNS`` cluster whose endpoints are the ClusterIP Services tsgw owns
for those TailscaleEndpoints (``<name>.<namespace>.svc.<cluster domain>``): traffic reaches the
tailnet through tsgw's egress proxies, which apply the targets' weights, priorities and
failover. Everything else Envoy Gateway set on the cluster (timeouts, circuit breakers, HTTP/2
for gRPC, TLS) is kept.

Why the answer comes from the object Envoy Gateway sends, not from tsgw's model: Envoy Gateway
watches the backend resources itself and calls the hook again whenever one changes, but never
when tsgw's model changes. An answer that depended on the model could stay stale for good; one
computed from the object is the same on every replica and always current. The Service's name
and ports are pure functions of the object (:func:`tsgw.translate.egress_service_name`,
:func:`tsgw.translate.egress_service_ports`), and the DNS cluster resolves the Service once tsgw
created it, without another translation by Envoy Gateway.

Envoy Gateway v1.9.0 calls the hook for HTTPRoutes only: ``processGRPCRouteRules`` discards
the custom backend object ``processBackendRef`` returns, so a GRPCRoute's cluster stays without
endpoints (``tests/integration/extension`` trips when a release changes that).

**Which port.** Envoy Gateway v1.9.0 does not pass a custom backendRef's ``port`` to the
extension (its destination setting keeps only name and weight). The port is the Service's port
whose protocol suits the route: HTTP for an HTTPRoute, GRPC for a GRPCRoute, then the other of
the two, then TCP; the lowest such port. TLS ports (passthrough) are never chosen. An object with
no usable port, or invalid by tsgw's schema, is a problem: the cluster is left as Envoy Gateway
built it (no endpoints: that route answers 503), and other routes are unaffected.

**Route access** (``PostRouteModify``, ``PostHTTPListenerModify``). Envoy Gateway is configured
with ``policyResources: [{group: gateway.tailscale.com, version: v1alpha1, kind:
TailscaleRouteAccess}]``: a TailscaleRouteAccess is what tsgw derives from a TailscaleRoutePolicy
that targets an HTTPRoute or GRPCRoute (:func:`tsgw.translate.route_access`), its tags and users
already resolved to tailnet addresses. Envoy Gateway passes the ones targeting a route (or one of
its rules) to ``PostRouteModify`` as ``extension_policies``; the answer is the route with a
per-route HTTP RBAC configuration (:data:`RBAC_FILTER`, the rules of
:func:`tsgw.translate.access_rules`, on the request's source address). ``PostHTTPListenerModify``
puts that HTTP filter, with no rules (which enforces nothing), before the router of every HTTP
connection manager of the listener, so a route without tsgw's configuration is unaffected and
one with it answers 403 to a denied source. Why the addresses are in the object's spec and not
resolved here: Envoy Gateway calls hooks again only when a watched object's generation changes
(``internal/provider/kubernetes/controller.go``: ``TypedGenerationChangedPredicate`` on
``policyResources``), drops the object's status before passing it (``delete(policy.Object,
"status")`` in ``processExtensionServerPolicies``) and replaces that status with its own; a change
of the tailnet's devices reaches Envoy Gateway only as a change of the spec tsgw writes.
Several of ours on one route: the oldest (creation time, namespace, name, Envoy Gateway's own
order) applies. An object of ours that cannot be read denies every request of that route (an
access rule that cannot be read fails closed) and is reported as a problem.

**Not ours.** A request whose resources include no TailscaleEndpoints gets ``None`` (Envoy
Gateway keeps its cluster untouched). ``PostTranslateModify`` echoes every list it received,
unchanged (Envoy Gateway replaces its lists with the answer's, so an empty answer would delete
them), and byte for byte: :func:`post_translate_modify` works on the wire format and never
decodes a resource (the request can hold every cluster, listener and route of a translation).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2

from tsgw import api, translate
from tsgw.api import GROUP
from tsgw.model import AccessPolicy, AccessRule, Protocol

__all__ = [
    "BACKEND_KIND",
    "RBAC_FILTER",
    "ROUTE_ACCESS_KIND",
    "ClusterAnswer",
    "ExtensionOptions",
    "ListenerAnswer",
    "RouteAnswer",
    "TailnetBackend",
    "post_cluster_modify",
    "post_http_listener_modify",
    "post_route_modify",
    "post_translate_modify",
    "route_access_policy",
    "tailnet_backend",
]

BACKEND_KIND = "TailscaleEndpoints"
"""The custom backend kind (group :data:`tsgw.api.GROUP`) this extension builds clusters for."""

ROUTE_ACCESS_KIND = translate.ROUTE_ACCESS_KIND
"""The policy kind (group :data:`tsgw.api.GROUP`) whose access rules this extension applies to
Envoy Gateway's routes."""

RBAC_FILTER = "tsgw.filters.http.rbac"
"""The name of the HTTP RBAC filter tsgw adds to Envoy Gateway's listeners; a route's
``typed_per_filter_config`` under this name holds its access rules. Not Envoy Gateway's own
``envoy.filters.http.rbac`` (its SecurityPolicy authorization), which it keeps as it is."""


@dataclass(frozen=True, slots=True)
class ExtensionOptions:
    """How the extension builds clusters."""

    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, in the Services' names Envoy Gateway's Envoy resolves.
    Default: "cluster.local" (kubelet's ``--cluster-domain`` default)."""
    dns_refresh_s: float = 5.0
    """How often Envoy Gateway's Envoy resolves a Service's name again. Default: 5.0 s (Envoy's
    own default for ``dns_refresh_rate``)."""


@dataclass(frozen=True, slots=True)
class TailnetBackend:
    """A TailscaleEndpoints as Envoy Gateway's Envoy reaches it: its egress Service."""

    namespace: str
    name: str
    host: str
    """``<service>.<namespace>.svc.<cluster domain>``"""
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class ClusterAnswer:
    """What ``PostClusterModify`` answers."""

    cluster: cluster_pb2.Cluster | None
    """The modified cluster; None leaves Envoy Gateway's unchanged."""
    backends: tuple[TailnetBackend, ...] = ()
    problems: tuple[str, ...] = ()
    """Why a resource of ours gave no endpoint (for the log: the hook never fails on them)."""


_PREFERENCE = {
    "httproute": (Protocol.HTTP, Protocol.GRPC, Protocol.TCP),
    "grpcroute": (Protocol.GRPC, Protocol.HTTP, Protocol.TCP),
}
_DEFAULT_PREFERENCE = (Protocol.HTTP, Protocol.GRPC, Protocol.TCP)


def _route_kind(cluster_name: str) -> str:
    """``httproute`` or ``grpcroute`` from Envoy Gateway's cluster name
    (``internal/gatewayapi/helpers.go``: ``<route type>/<ns>/<name>/rule/<i>``)."""
    return cluster_name.partition("/")[0]


def _is_ours(raw: object) -> TypeGuard[dict[str, Any]]:
    if not isinstance(raw, dict) or raw.get("kind") != BACKEND_KIND:
        return False
    api_version = raw.get("apiVersion")
    return isinstance(api_version, str) and api_version.partition("/")[0] == GROUP


def tailnet_backend(raw: dict[str, Any], route_kind: str, options: ExtensionOptions) -> TailnetBackend | str:
    """The egress Service of one TailscaleEndpoints object (Kubernetes JSON, decoded), or why
    there is none."""
    md = raw.get("metadata")
    where = f"{md.get('namespace')}/{md.get('name')}" if isinstance(md, dict) else "TailscaleEndpoints"
    try:
        obj = api.load(raw)
    except api.ValidationError as e:
        return f"TailscaleEndpoints {where} is invalid: {e}"
    ports = dict(translate.egress_service_ports(obj.spec))
    for proto in _PREFERENCE.get(route_kind, _DEFAULT_PREFERENCE):
        usable = [port for port, p in ports.items() if p is proto]
        if usable:
            ns, name = obj.metadata.namespace, obj.metadata.name
            svc = translate.egress_service_name(name)
            host = f"{svc}.{ns}.svc.{options.cluster_domain}"
            return TailnetBackend(ns, name, host, min(usable), proto)
    return f"TailscaleEndpoints {where} has no HTTP, GRPC or TCP port for a {route_kind or 'route'}"


def _decode(resource: bytes) -> object:
    try:
        return orjson.loads(resource)
    except orjson.JSONDecodeError:
        return None


def post_cluster_modify(
    cluster: cluster_pb2.Cluster, resources: Sequence[bytes], options: ExtensionOptions
) -> ClusterAnswer:
    """``PostClusterModify``: Envoy Gateway's cluster for a rule's custom backends, and the
    rule's extension resources (``PostClusterExtensionContext.backend_extension_resources``)."""
    ours = [raw for raw in map(_decode, resources) if _is_ours(raw)]
    if not ours:
        return ClusterAnswer(None)
    kind = _route_kind(cluster.name)
    backends: dict[tuple[str, int], TailnetBackend] = {}
    problems: list[str] = []
    for raw in ours:
        found = tailnet_backend(raw, kind, options)
        if isinstance(found, str):
            problems.append(found)
        else:
            backends.setdefault((found.host, found.port), found)
    if not backends:
        return ClusterAnswer(None, (), tuple(problems))
    chosen = tuple(backends[k] for k in sorted(backends))
    out = cluster_pb2.Cluster()
    out.CopyFrom(cluster)
    out.ClearField("eds_cluster_config")
    out.type = cluster_pb2.Cluster.STRICT_DNS
    out.dns_refresh_rate.FromNanoseconds(round(options.dns_refresh_s * 1e9))
    out.load_assignment.Clear()
    out.load_assignment.cluster_name = out.name
    locality = out.load_assignment.endpoints.add()
    # As Envoy Gateway's own assignments do (internal/xds/translator/cluster.go): its clusters
    # balance localities by weight. (Envoy 1.40 routes to one unweighted locality all the same.)
    locality.load_balancing_weight.value = 1
    for b in chosen:
        lb = locality.lb_endpoints.add()
        address = lb.endpoint.address.socket_address
        address.address = b.host
        address.port_value = b.port
    return ClusterAnswer(out, chosen, tuple(problems))


# PostTranslateModify: request fields 2..5 (clusters, secrets, listeners, routes) are the
# response's fields 1..4, with the same message types (service.proto).
_TRANSLATE_FIELDS = {2: 1, 3: 2, 4: 3, 5: 4}
_LEN = 2  # wire type of a length-delimited field


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _put_varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def post_translate_modify(request: bytes) -> bytes:
    """``PostTranslateModify``: a serialized ``PostTranslateModifyRequest`` → the serialized
    response that gives Envoy Gateway back every cluster, secret, listener and route it sent, in
    order and byte for byte (each resource's bytes are copied, never decoded). The context
    (field 1) and fields this version does not know are dropped. Raises ``ValueError`` on bytes
    that are not a protobuf message."""
    out = bytearray()
    i, n = 0, len(request)
    while i < n:
        tag, i = _varint(request, i)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN:
            size, i = _varint(request, i)
            end = i + size
            if end > n:
                raise ValueError("truncated field")
            target = _TRANSLATE_FIELDS.get(field)
            if target is not None:
                _put_varint(target << 3 | _LEN, out)
                _put_varint(size, out)
                out += request[i:end]
            i = end
        elif wire == 0:
            _, i = _varint(request, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i > n:
            raise ValueError("truncated field")
    return bytes(out)


# --- Route access: PostRouteModify, PostHTTPListenerModify -----------------------------------


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    """What ``PostRouteModify`` answers."""

    route: route_components_pb2.Route | None
    """The modified route; None leaves Envoy Gateway's unchanged."""
    policy: str | None = None
    """``<namespace>/<name>`` of the TailscaleRouteAccess applied, if any."""
    problems: tuple[str, ...] = ()
    """For the log: an object of ours that cannot be read (the route then denies every
    request), or one that lost to an older one on the same route."""


@dataclass(frozen=True, slots=True)
class ListenerAnswer:
    """What ``PostHTTPListenerModify`` answers."""

    listener: listener_pb2.Listener | None
    """The listener with :data:`RBAC_FILTER` in every HTTP connection manager; None when it
    already had it everywhere (or has no HTTP connection manager): unchanged."""


_DENY_ALL = AccessPolicy((), False)


def _is_route_access(raw: object) -> TypeGuard[dict[str, Any]]:
    if not isinstance(raw, dict) or raw.get("kind") != ROUTE_ACCESS_KIND:
        return False
    api_version = raw.get("apiVersion")
    return isinstance(api_version, str) and api_version.partition("/")[0] == GROUP


def _order(raw: dict[str, Any]) -> tuple[str, str, str]:
    md = raw.get("metadata")
    if not isinstance(md, dict):
        return ("", "", "")
    return tuple(str(md.get(k) or "") for k in ("creationTimestamp", "namespace", "name"))  # type: ignore[return-value]


def _where(raw: dict[str, Any]) -> str:
    _, ns, name = _order(raw)
    return f"{ns}/{name}"


def route_access_policy(raw: dict[str, Any]) -> AccessPolicy | str:
    """The access policy a TailscaleRouteAccess (Kubernetes JSON, decoded) carries, or why it
    cannot be read. Its spec: ``rules`` (each ``action`` Allow or Deny, and ``cidrs``) in
    order, and ``defaultAction``; what :func:`tsgw.translate.route_access` writes."""
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        return "no spec"
    actions = {"Allow": True, "Deny": False}
    default = spec.get("defaultAction", "Allow")
    if default not in actions:
        return f"spec.defaultAction: {default!r} is not Allow or Deny"
    rules = spec.get("rules", [])
    if not isinstance(rules, list):
        return "spec.rules: not a list"
    out: list[AccessRule] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or rule.get("action") not in actions:
            return f"spec.rules[{i}].action: not Allow or Deny"
        cidrs = rule.get("cidrs", [])
        if not isinstance(cidrs, list):
            return f"spec.rules[{i}].cidrs: not a list"
        nets: list[str] = []
        for j, c in enumerate(cidrs):
            try:
                nets.append(str(ipaddress.ip_network(c, strict=False)))
            except (TypeError, ValueError):
                return f"spec.rules[{i}].cidrs[{j}]: {c!r} is not a CIDR"
        out.append(AccessRule(actions[rule["action"]], tuple(nets)))
    return AccessPolicy(tuple(out), actions[default])


def _any(msg: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg, deterministic=True)
    return packed


def post_route_modify(route: route_components_pb2.Route, policies: Sequence[bytes]) -> RouteAnswer:
    """``PostRouteModify``: Envoy Gateway's route for an HTTPRoute or GRPCRoute rule, and the
    policies that target it (``PostRouteExtensionContext.extension_policies``)."""
    ours = sorted((raw for raw in map(_decode, policies) if _is_route_access(raw)), key=_order)
    if not ours:
        return RouteAnswer(None)
    chosen = ours[0]
    problems = [
        f"TailscaleRouteAccess {_where(other)} ignored: {_where(chosen)} is older and applies"
        for other in ours[1:]
    ]
    config, problem = _per_route(orjson.dumps(chosen.get("spec"), option=orjson.OPT_SORT_KEYS))
    if problem:
        problems.insert(
            0, f"TailscaleRouteAccess {_where(chosen)} cannot be read ({problem}): every request denied"
        )
    out = route_components_pb2.Route()
    out.CopyFrom(route)
    out.typed_per_filter_config[RBAC_FILTER].CopyFrom(config)
    return RouteAnswer(out, _where(chosen), tuple(problems))


@functools.lru_cache(maxsize=4096)
def _per_route(spec: bytes) -> tuple[any_pb2.Any, str]:
    """The per-route RBAC configuration of a TailscaleRouteAccess's spec (canonical JSON), and
    why it denies everything if it cannot be read. Memoized: Envoy Gateway sends the same objects
    on every translation, and parsing their addresses is most of the hook's cost. (The answer is
    read-only: callers copy it.)"""
    read = route_access_policy({"spec": orjson.loads(spec)})
    access, problem = (_DENY_ALL, read) if isinstance(read, str) else (read, "")
    per_route = rbac_pb2.RBACPerRoute(rbac=rbac_pb2.RBAC(rules=translate.access_rules(access)))
    return _any(per_route), problem


_HCM = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _with_filter(hcm: hcm_pb2.HttpConnectionManager) -> bool:
    """Adds :data:`RBAC_FILTER` (no rules: enforces nothing) before the router; False when it
    is already there."""
    if any(f.name == RBAC_FILTER for f in hcm.http_filters):
        return False
    at = next(
        (i for i, f in enumerate(hcm.http_filters) if f.typed_config.type_url == _ROUTER),
        len(hcm.http_filters),
    )
    rbac = hcm_pb2.HttpFilter(name=RBAC_FILTER)
    rbac.typed_config.CopyFrom(_any(rbac_pb2.RBAC()))
    filters = list(hcm.http_filters)
    filters.insert(at, rbac)
    del hcm.http_filters[:]
    hcm.http_filters.extend(filters)
    return True


def post_http_listener_modify(listener: listener_pb2.Listener) -> ListenerAnswer:
    """``PostHTTPListenerModify``: every HTTP connection manager of Envoy Gateway's listener gets
    :data:`RBAC_FILTER` before its router; nothing else changes."""
    out = listener_pb2.Listener()
    out.CopyFrom(listener)
    changed = False
    chains = list(out.filter_chains)
    if out.HasField("default_filter_chain"):
        chains.append(out.default_filter_chain)
    for chain in chains:
        for f in chain.filters:
            if f.typed_config.type_url != _HCM:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(hcm)
            if _with_filter(hcm):
                f.typed_config.Pack(hcm, deterministic=True)
                changed = True
    return ListenerAnswer(out if changed else None)
