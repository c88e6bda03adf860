"""The intermediate model between the API objects and what tsgw produces (xDS resources, owned
Kubernetes objects, Tailscale Services).

Pure data: frozen dataclasses of tuples, built in a deterministic order with stable names, so the
same input always gives equal models and byte-identical output. Nothing here knows Envoy's or
Kubernetes' wire shapes; tsgw.translate does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from tsgw.model._tls import TlsCertificate, TlsSecret

__all__ = [
    "AccessPolicy",
    "AccessRule",
    "AncestorVerdict",
    "CallerIdentity",
    "Cluster",
    "Condition",
    "Direction",
    "Endpoint",
    "EndpointsDetails",
    "Failover",
    "GatewayDetails",
    "HeaderChanges",
    "Listener",
    "ListenerVerdict",
    "Model",
    "ObjectRef",
    "ObjectStatus",
    "PolicyDetails",
    "Protocol",
    "ProxyGroup",
    "ProxyPod",
    "Retries",
    "Route",
    "ServicePort",
    "ServicesDetails",
    "StatusDetails",
    "TailscaleService",
    "TargetDetail",
    "TlsCertificate",
    "TlsSecret",
]


class Direction(enum.StrEnum):
    """Which way a proxy group carries traffic."""

    EGRESS = "egress"
    """Cluster → tailnet: a ClusterIP Service in front, tailnet targets behind."""
    INGRESS = "ingress"
    """Tailnet → cluster: a Tailscale Service in front, Kubernetes endpoints behind."""


class Protocol(enum.StrEnum):
    """What Envoy speaks on a listener and to a cluster."""

    TCP = "tcp"
    HTTP = "http"
    GRPC = "grpc"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The API object a piece of the model comes from (for owner references and conditions)."""

    kind: str
    namespace: str
    name: str
    uid: str = ""
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition for an object's status. No timestamp: the controller sets lastTransitionTime
    only when status or reason changes."""

    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class TargetDetail:
    """An egress target as translation resolved it (its health is the proxies' to report)."""

    name: str
    addresses: tuple[str, ...]
    """Its tailnet addresses, one per device or Tailscale Service, IPv4 first; empty: unresolved."""


@dataclass(frozen=True, slots=True)
class EndpointsDetails:
    """A TailscaleEndpoints' status besides its conditions."""

    service_name: str
    """The ClusterIP Service the cluster calls."""
    targets: tuple[TargetDetail, ...]
    """Every target, in the object's order."""


@dataclass(frozen=True, slots=True)
class ServicesDetails:
    """A TailscaleServices' status besides its conditions."""

    service_name: str
    """The Tailscale Service, svc:<label>."""
    dns_name: str
    """Its MagicDNS name; empty when the tailnet's MagicDNS suffix is not known."""
    addresses: tuple[str, ...]
    """Its VIP addresses, IPv4 first; empty until the tailnet reports them."""


@dataclass(frozen=True, slots=True)
class ListenerVerdict:
    """What translation concluded about one listener a TailscaleGateway publishes."""

    name: str
    """The Gateway listener's name."""
    port: int
    """Its port; 0 when the Gateway has no such listener."""
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class GatewayDetails:
    """A TailscaleGateway's status besides its conditions."""

    dns_name: str
    """MagicDNS name of its Tailscale Service; empty when the MagicDNS suffix is not known."""
    addresses: tuple[str, ...]
    """The Tailscale Service's VIP addresses, IPv4 first."""
    listeners: tuple[ListenerVerdict, ...]
    """One per listener it publishes (or names but the Gateway lacks), in the order named."""


@dataclass(frozen=True, slots=True)
class AncestorVerdict:
    """What translation concluded about a TailscaleRoutePolicy on one target (Gateway API's
    PolicyAncestorStatus, without the controller name)."""

    group: str
    kind: str
    name: str
    namespace: str
    section_name: str | None
    """The listener or port the policy names; None: the whole object."""
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class PolicyDetails:
    """A TailscaleRoutePolicy's status: its verdict per target (Gateway API writes no
    object-level conditions for policies)."""

    ancestors: tuple[AncestorVerdict, ...]
    """One per target reference, in the policy's order."""


StatusDetails: TypeAlias = EndpointsDetails | ServicesDetails | GatewayDetails | PolicyDetails
"""The status fields besides conditions, one shape per kind."""


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    """What translation concluded about one object: conditions plus what else its status shows."""

    ref: ObjectRef
    conditions: tuple[Condition, ...]
    details: StatusDetails | None = None
    """The kind's other status fields; None when translation got no further than conditions (an
    invalid object, a missing tailnet, a failure)."""


@dataclass(frozen=True, slots=True)
class Failover:
    """Passive health (Envoy outlier detection) and failover retries of a cluster."""

    consecutive_failures: int
    ejection_s: float
    interval_s: float
    retries: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream address with its load-balancing weight and failover priority."""

    address: str
    port: int
    weight: int = 1
    priority: int = 0
    via_tailnet: bool = False
    """True: dialled through tailscaled's local CONNECT proxy (egress)."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """An Envoy cluster: its endpoints come by EDS under the same name."""

    name: str
    protocol: Protocol
    endpoints: tuple[Endpoint, ...]
    failover: Failover | None = None
    proxy_protocol: bool = False
    """True: each upstream connection opens with a PROXY protocol v2 header carrying the
    downstream's addresses (what a listener read from its own PROXY header: the tailnet caller)."""


@dataclass(frozen=True, slots=True)
class HeaderChanges:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retries:
    attempts: int
    on: tuple[str, ...]
    per_try_timeout_s: float | None = None
    other_hosts: bool = True
    """Retry on a host (and priority tier) not yet tried."""


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTP route: prefix and exact header matches to one cluster."""

    name: str
    path_prefix: str
    cluster: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float | None = None
    retries: Retries | None = None
    request_headers: HeaderChanges = field(default_factory=HeaderChanges)


@dataclass(frozen=True, slots=True)
class AccessRule:
    allow: bool
    cidrs: tuple[str, ...]
    """Source networks; tags and users are resolved to device addresses by translation."""


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who may connect, by tailnet source address; the first matching rule decides."""

    rules: tuple[AccessRule, ...]
    default_allow: bool


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """The tailnet callers an HTTP listener names to its backends: request headers by source
    address (the PROXY header's). One object per tailnet's facts, shared by every listener of
    that tailnet (equality then stops at identity)."""

    callers: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    """(address, ((header, value), ...)) in address order; an address not listed gets none."""


@dataclass(frozen=True, slots=True)
class Listener:
    """An Envoy listener in a proxy pod."""

    name: str
    port: int
    """Port Envoy binds in the pod (never < 1024: Envoy runs unprivileged)."""
    protocol: Protocol
    bind: str
    """0.0.0.0 for egress (the ClusterIP Service targets it), 127.0.0.1 for ingress (tailscaled
    forwards to it)."""
    cluster: str = ""
    """TCP and TLS listeners: the one cluster."""
    routes: tuple[Route, ...] = ()
    """HTTP and GRPC listeners: routes in match order."""
    proxy_protocol: bool = False
    """Ingress: tailscaled prepends a PROXY v2 header carrying the tailnet source address."""
    access: AccessPolicy | None = None
    callers: CallerIdentity | None = None
    """HTTP ingress: every incoming ``Tailscale-*`` header is removed, then the caller's own
    are set from this table. None: headers pass untouched."""
    sections: tuple[str, ...] = ()
    """Names a TailscaleRoutePolicy's sectionName can use for this listener (port or Gateway
    listener names)."""
    tls: tuple[TlsCertificate, ...] = ()
    """Terminate TLS: one filter chain per certificate, chosen by SNI; empty: no TLS."""


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port of the egress ClusterIP Service."""

    name: str
    port: int
    target_port: int


@dataclass(frozen=True, slots=True)
class TailscaleService:
    """The Tailscale Service an ingress group hosts."""

    name: str
    """svc:<label>"""
    ports: tuple[tuple[int, int], ...]
    """(Tailscale Service port, local Envoy listener port)."""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProxyPod:
    """How the proxy pods run (from the object's `proxy` settings and the tailnet)."""

    replicas: int
    tags: tuple[str, ...]
    login_url: str = ""
    tailscale_image: str = ""
    envoy_image: str = ""
    requests: tuple[tuple[str, str], ...] = ()
    limits: tuple[tuple[str, str], ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Any, ...] = ()
    affinity: Any = None
    serve_on_device: bool = False
    """The control plane has no Tailscale Services (Headscale): ingress ports are served on each
    proxy's own tailnet addresses and MagicDNS name instead of a ``svc:`` VIP."""


@dataclass(frozen=True, slots=True)
class ProxyGroup:
    """One StatefulSet of proxies (tailscaled + Envoy) and everything it serves.

    The xDS node cluster of its Envoys is `name`; each replica's node id is its pod name.
    """

    name: str
    namespace: str
    direction: Direction
    owner: ObjectRef
    tailnet: str
    pod: ProxyPod
    listeners: tuple[Listener, ...]
    clusters: tuple[Cluster, ...]
    service_ports: tuple[ServicePort, ...] = ()
    """Egress: the ClusterIP Service's ports."""
    tailscale_service: TailscaleService | None = None
    """Ingress: the Tailscale Service the replicas host."""
    secrets: tuple[TlsSecret, ...] = ()
    """The certificates its listeners present (SDS resources), by name."""

    def replica_names(self) -> tuple[str, ...]:
        """Pod names (StatefulSet ordinals), which are also the state Secrets' names."""
        return tuple(f"{self.name}-{i}" for i in range(self.pod.replicas))


@dataclass(frozen=True, slots=True)
class Model:
    """Everything translation produced: proxy groups by (namespace, name), and one status per
    input object (errors are values: a bad object has conditions, the others still translate)."""

    groups: tuple[ProxyGroup, ...] = ()
    statuses: tuple[ObjectStatus, ...] = ()

    def group(self, namespace: str, name: str) -> ProxyGroup | None:
        for g in self.groups:
            if g.namespace == namespace and g.name == name:
                return g
        return None

    def status(self, kind: str, namespace: str, name: str) -> ObjectStatus | None:
        for s in self.statuses:
            if (s.ref.kind, s.ref.namespace, s.ref.name) == (kind, namespace, name):
                return s
        return None
