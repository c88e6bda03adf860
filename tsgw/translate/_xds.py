"""Model → Envoy xDS resources (protobuf messages of `xds-protos`, the upb backend: the codec the
xDS server encodes once per version).

Per proxy group: CDS clusters (EDS-fed), their ClusterLoadAssignments, LDS listeners and RDS
route configurations. Egress endpoints are tailnet addresses dialled through tailscaled's local
HTTP CONNECT proxy (Envoy's http_11_proxy transport socket, with the proxy address in each
endpoint's metadata), so Envoy's weights, priorities, outlier detection and retries apply to
tailnet targets one by one. HTTP ingress listeners carry the caller-identity filters of
`tsgw.translate._caller`; TCP ingress clusters may open with a PROXY v2 header of their own.
TLS listeners get one SNI-matched filter chain per certificate and the group's certificates are
SDS secrets (`tsgw.translate._tls`).

Not active health checks: Envoy's health checker ignores the http_11_proxy routing and dials
the target directly (unreachable from an unprivileged pod), and it cannot reach internal
listeners either (it runs on the main thread, internal listeners live on workers); both were
tried against Envoy 1.40 (tests/integration/translate). Failure detection is passive.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.core.v3 import proxy_protocol_pb2 as core_proxy_protocol_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.extensions.transport_sockets.http_11_proxy.v3 import upstream_http_11_connect_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, wrappers_pb2
from google.protobuf.message import Message

from tsgw.model import AccessPolicy, Cluster, Failover, Listener, Protocol, ProxyGroup, Route
from tsgw.translate._caller import caller_filters
from tsgw.translate._tls import apply_filter_chains, sds_secrets

__all__ = ["PROXY_ADDRESS_KEY", "XdsResources", "access_rules", "xds_resources"]

PROXY_ADDRESS_KEY = "envoy.http11_proxy_transport_socket.proxy_address"
"""Endpoint metadata key through which the http_11_proxy transport socket finds its proxy."""

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HCM_AUTO = hcm_pb2.HttpConnectionManager.AUTO
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


@dataclass(frozen=True, slots=True)
class XdsResources:
    """One proxy group's Envoy resources, each list sorted by name."""

    clusters: tuple[Message, ...]
    endpoints: tuple[Message, ...]
    listeners: tuple[Message, ...]
    routes: tuple[Message, ...]
    secrets: tuple[Message, ...] = ()
    """SDS: the certificates TLS listeners present (private keys inside: never dump them)."""

    def by_type(self) -> dict[str, tuple[Message, ...]]:
        """Resources keyed by type URL, the shape tsgw.xds.Snapshot takes."""
        out: dict[str, tuple[Message, ...]] = {}
        for msgs, cls in (
            (self.clusters, cluster_pb2.Cluster),
            (self.endpoints, endpoint_pb2.ClusterLoadAssignment),
            (self.listeners, listener_pb2.Listener),
            (self.routes, route_pb2.RouteConfiguration),
        ):
            out["type.googleapis.com/" + cls.DESCRIPTOR.full_name] = msgs
        if self.secrets:
            out["type.googleapis.com/" + secret_pb2.Secret.DESCRIPTOR.full_name] = self.secrets
        return out

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        """Proto3 JSON of every resource (for golden files and dumps; not the hot path); SDS
        secrets by name only, their content redacted."""
        secrets = (
            {"secrets": [{"name": m.name, "redacted": True} for m in self.secrets]} if self.secrets else {}
        )
        return secrets | {
            kind: [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in msgs]
            for kind, msgs in (
                ("clusters", self.clusters),
                ("endpoints", self.endpoints),
                ("listeners", self.listeners),
                ("routes", self.routes),
            )
        }

    def __iter__(self) -> Iterator[Message]:
        yield from self.secrets
        yield from self.clusters
        yield from self.endpoints
        yield from self.listeners
        yield from self.routes


# Envoy's messages are built by filling fields in place (``add()``, attribute chains): upb's
# keyword constructors copy every nested message they are given, which made building the
# resources of 2,000 groups about 2.5 times slower.


def _any(msg: Message) -> any_pb2.Any:
    return any_pb2.Any(
        type_url=_type_url(msg.DESCRIPTOR.full_name), value=msg.SerializeToString(deterministic=True)
    )


@functools.cache
def _type_url(full_name: str) -> str:
    return "type.googleapis.com/" + full_name


def _duration(seconds: float) -> duration_pb2.Duration:
    # The constructor, not FromNanoseconds: that helper is pure Python and ~40x slower.
    secs, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    return duration_pb2.Duration(seconds=secs, nanos=nanos)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _socket(address: str, port: int) -> address_pb2.Address:
    a = address_pb2.Address()
    _set_socket(a, address, port)
    return a


def _set_socket(a: address_pb2.Address, address: str, port: int) -> None:
    sa = a.socket_address
    sa.address = address
    sa.port_value = port


def _outlier_detection(f: Failover) -> outlier_detection_pb2.OutlierDetection:
    n = wrappers_pb2.UInt32Value(value=f.consecutive_failures)
    return outlier_detection_pb2.OutlierDetection(
        consecutive_5xx=n,
        consecutive_gateway_failure=n,
        enforcing_consecutive_gateway_failure=wrappers_pb2.UInt32Value(value=100),
        interval=_duration(f.interval_s),
        base_ejection_time=_duration(f.ejection_s),
        # A tier may be ejected whole: that is what moves traffic to the next priority.
        max_ejection_percent=wrappers_pb2.UInt32Value(value=100),
    )


def _constants() -> dict[str, Any]:
    """Sub-messages every group repeats, built once (translation runs for thousands of groups);
    always copied into a resource, never mutated."""
    inner = base_pb2.TransportSocket(
        name="envoy.transport_sockets.raw_buffer", typed_config=_any(raw_buffer_pb2.RawBuffer())
    )
    http1 = http_protocol_options_pb2.HttpProtocolOptions()
    http1.explicit_http_config.http_protocol_options.SetInParent()
    http2 = http_protocol_options_pb2.HttpProtocolOptions()
    http2.explicit_http_config.http2_protocol_options.SetInParent()
    return {
        "http11_proxy": base_pb2.TransportSocket(
            name="envoy.transport_sockets.http_11_proxy",
            typed_config=_any(
                upstream_http_11_connect_pb2.Http11ProxyUpstreamTransport(transport_socket=inner)
            ),
        ),
        # A TailscaleGateway's clusters: the tailnet caller's address, which the listener read
        # from tailscaled's PROXY header, handed on to Envoy Gateway's Envoy the same way.
        "upstream_proxy_protocol": base_pb2.TransportSocket(
            name="envoy.transport_sockets.upstream_proxy_protocol",
            typed_config=_any(
                upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
                    config=core_proxy_protocol_pb2.ProxyProtocolConfig(
                        version=core_proxy_protocol_pb2.ProxyProtocolConfig.V2
                    ),
                    transport_socket=inner,
                )
            ),
        ),
        "http1": _any(http1),
        "http2": _any(http2),
        "eds": cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        "connect_timeout": _duration(5),
        "proxy_protocol": _any(proxy_protocol_pb2.ProxyProtocol()),
        "tls_inspector": _any(tls_inspector_pb2.TlsInspector()),
        "router": _any(router_pb2.Router()),
        "ads": _ads(),
    }


_C = _constants()


def _cluster(c: Cluster, via_tailnet: bool) -> cluster_pb2.Cluster:
    msg = cluster_pb2.Cluster(
        name=c.name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=_C["connect_timeout"],
        eds_cluster_config=_C["eds"],
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )
    if c.failover is not None:
        msg.outlier_detection.CopyFrom(_outlier_detection(c.failover))
    if via_tailnet:
        msg.transport_socket.CopyFrom(_C["http11_proxy"])
    elif c.proxy_protocol:
        msg.transport_socket.CopyFrom(_C["upstream_proxy_protocol"])
    if c.protocol is Protocol.GRPC:
        msg.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(_C["http2"])
    elif c.protocol is Protocol.HTTP:
        msg.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(_C["http1"])
    return msg


def _load_assignment(c: Cluster, proxy: any_pb2.Any | None) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=c.name)
    priorities = sorted({e.priority for e in c.endpoints})
    tiers = {prio: cla.endpoints.add(priority=prio) for prio in priorities}
    for e in c.endpoints:
        lb = tiers[e.priority].lb_endpoints.add()
        _set_socket(lb.endpoint.address, e.address, e.port)
        lb.load_balancing_weight.value = e.weight
        if e.via_tailnet and proxy is not None:
            lb.metadata.typed_filter_metadata[PROXY_ADDRESS_KEY].CopyFrom(proxy)
    return cla


def access_rules(access: AccessPolicy) -> rbac_config_pb2.RBAC:
    """An access policy as Envoy RBAC rules on the source address (``remote_ip``: the PROXY
    protocol header's source where the listener reads one, else the connection's peer).

    First match decides: a request is denied when the first rule it matches is a Deny, or when
    it matches none and the default is Deny. One DENY-action RBAC expresses that: Deny rule i
    matches "rule i and no earlier rule"; the default matches "no rule at all". Used by tsgw's
    own listeners (network RBAC) and by Envoy Gateway's routes (HTTP RBAC, through the
    extension)."""
    policies: dict[str, rbac_config_pb2.Policy] = {}
    rules = rbac_config_pb2.RBAC(action=rbac_config_pb2.RBAC.DENY)
    earlier: list[rbac_config_pb2.Principal] = []
    for i, rule in enumerate(access.rules):
        principals = [rbac_config_pb2.Principal(remote_ip=_cidr(c)) for c in rule.cidrs] or [
            rbac_config_pb2.Principal(not_id=rbac_config_pb2.Principal(any=True))
        ]
        matches = rbac_config_pb2.Principal(or_ids=rbac_config_pb2.Principal.Set(ids=principals))
        if not rule.allow:
            cond = matches
            if earlier:
                cond = rbac_config_pb2.Principal(
                    and_ids=rbac_config_pb2.Principal.Set(
                        ids=[
                            matches,
                            rbac_config_pb2.Principal(
                                not_id=rbac_config_pb2.Principal(
                                    or_ids=rbac_config_pb2.Principal.Set(ids=earlier)
                                )
                            ),
                        ]
                    )
                )
            policies[f"rule-{i}"] = rbac_config_pb2.Policy(
                permissions=[rbac_config_pb2.Permission(any=True)], principals=[cond]
            )
        earlier.append(matches)
    if not access.default_allow:
        policies["default"] = rbac_config_pb2.Policy(
            permissions=[rbac_config_pb2.Permission(any=True)],
            principals=[
                rbac_config_pb2.Principal(
                    not_id=rbac_config_pb2.Principal(or_ids=rbac_config_pb2.Principal.Set(ids=earlier))
                )
                if earlier
                else rbac_config_pb2.Principal(any=True)
            ],
        )
    for name in sorted(policies):
        rules.policies[name].CopyFrom(policies[name])
    return rules


def _rbac(access: AccessPolicy, stat_prefix: str) -> listener_components_pb2.Filter:
    """A network RBAC filter on the tailnet source address (from the PROXY protocol header)."""
    return listener_components_pb2.Filter(
        name="envoy.filters.network.rbac",
        typed_config=_any(rbac_pb2.RBAC(stat_prefix=stat_prefix, rules=access_rules(access))),
    )


def _cidr(text: str) -> address_pb2.CidrRange:
    ip, _, length = text.partition("/")
    return address_pb2.CidrRange(
        address_prefix=ip, prefix_len=wrappers_pb2.UInt32Value(value=int(length or 32))
    )


def _listener(li: Listener) -> listener_pb2.Listener:
    msg = listener_pb2.Listener(name=li.name)
    _set_socket(msg.address, li.bind, li.port)
    if li.proxy_protocol:
        lf = msg.listener_filters.add(name="envoy.filters.listener.proxy_protocol")
        lf.typed_config.CopyFrom(_C["proxy_protocol"])
    if li.protocol is Protocol.TLS:
        lf = msg.listener_filters.add(name="envoy.filters.listener.tls_inspector")
        lf.typed_config.CopyFrom(_C["tls_inspector"])
    chain = msg.filter_chains.add()
    if li.access is not None:
        chain.filters.append(_rbac(li.access, li.name))
    if li.protocol in (Protocol.HTTP, Protocol.GRPC):
        hcm = hcm_pb2.HttpConnectionManager(stat_prefix=li.name, codec_type=_HCM_AUTO)
        hcm.rds.config_source.CopyFrom(_C["ads"])
        hcm.rds.route_config_name = li.name
        if li.callers is not None:
            hcm.http_filters.extend(caller_filters(li.callers))
        hcm.http_filters.add(name="envoy.filters.http.router").typed_config.CopyFrom(_C["router"])
        if li.proxy_protocol:
            hcm.use_remote_address.value = True
        f = chain.filters.add(name="envoy.filters.network.http_connection_manager")
        f.typed_config.CopyFrom(_any(hcm))
    else:
        tcp = tcp_proxy_pb2.TcpProxy(stat_prefix=li.name, cluster=li.cluster)
        chain.filters.add(name="envoy.filters.network.tcp_proxy").typed_config.CopyFrom(_any(tcp))
    apply_filter_chains(msg, li)
    return msg


def _fill_route(msg: route_components_pb2.Route, r: Route) -> None:
    msg.name = r.name
    match = msg.match
    match.prefix = r.path_prefix
    for name, value in r.headers:
        match.headers.add(name=name).string_match.exact = value
    action = msg.route
    action.cluster = r.cluster
    if r.timeout_s is not None:
        action.timeout.CopyFrom(_duration(r.timeout_s))
    if r.retries is not None:
        action.retry_policy.retry_on = ",".join(r.retries.on)
        action.retry_policy.num_retries.value = r.retries.attempts
        if r.retries.per_try_timeout_s is not None:
            action.retry_policy.per_try_timeout.CopyFrom(_duration(r.retries.per_try_timeout_s))
        if r.retries.other_hosts:
            action.retry_policy.retry_host_predicate.append(
                route_components_pb2.RetryPolicy.RetryHostPredicate(
                    name="envoy.retry_host_predicates.previous_hosts",
                    typed_config=_any(previous_hosts_pb2.PreviousHostsPredicate()),
                )
            )
            action.retry_policy.retry_priority.name = "envoy.retry_priorities.previous_priorities"
            action.retry_policy.retry_priority.typed_config.CopyFrom(
                _any(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1))
            )
    h = r.request_headers
    for name, value in h.set:
        hv = msg.request_headers_to_add.add(append_action=_OVERWRITE)
        hv.header.key = name
        hv.header.value = value
    for name, value in h.add:
        hv = msg.request_headers_to_add.add(append_action=_APPEND)
        hv.header.key = name
        hv.header.value = value
    msg.request_headers_to_remove.extend(h.remove)


def _route_config(li: Listener) -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration(name=li.name)
    vh = rc.virtual_hosts.add(name=li.name, domains=["*"])
    for r in li.routes:
        _fill_route(vh.routes.add(), r)
    return rc


def xds_resources(group: ProxyGroup, *, connect_proxy_port: int = 1055) -> XdsResources:
    """The Envoy resources of one proxy group (its Envoys' node cluster is `group.name`)."""
    via = group.direction.value == "egress"
    proxy = _any(_socket("127.0.0.1", connect_proxy_port)) if via else None
    clusters = sorted(group.clusters, key=lambda c: c.name)
    http = [li for li in group.listeners if li.protocol in (Protocol.HTTP, Protocol.GRPC)]
    return XdsResources(
        clusters=tuple(_cluster(c, via) for c in clusters),
        endpoints=tuple(_load_assignment(c, proxy) for c in clusters),
        listeners=tuple(_listener(li) for li in sorted(group.listeners, key=lambda x: x.name)),
        routes=tuple(_route_config(li) for li in sorted(http, key=lambda x: x.name)),
        secrets=sds_secrets(group),
    )
