"""gateway.tailscale.com/v1alpha1: the five kinds, declared once.

Every field here does something in tsgw.translate or the controllers; a field that nothing reads
does not belong here (the prototype's CRDs carried dozens; see shared/reference/seed-project.md §1).
Docstrings become the schema's descriptions, so they are written for `kubectl explain`.
"""

# ruff: noqa: RUF009 - `field` is this package's field specifier; its defaults are immutable.
from __future__ import annotations

import enum
import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from tsgw.api._schema import Rule, field

__all__ = [
    "APIKeyKey",
    "Access",
    "AccessAction",
    "AccessRule",
    "AncestorRef",
    "Condition",
    "ControlPlane",
    "ControlPlaneType",
    "Credentials",
    "EgressPort",
    "EgressProtocol",
    "EndpointsStatus",
    "Failover",
    "GatewayStatus",
    "HTTPHeader",
    "HTTPRouting",
    "HTTPRule",
    "HeaderChanges",
    "Images",
    "IngressBackend",
    "IngressPort",
    "IngressTLS",
    "ListenerStatus",
    "LocalRef",
    "OAuthKeys",
    "PolicyAncestorStatus",
    "PolicyTargetRef",
    "Proxy",
    "ResolvedAccessRule",
    "Resources",
    "Retries",
    "RoutePolicyStatus",
    "RouteTargetRef",
    "SecretRef",
    "ServicesStatus",
    "TailnetStatus",
    "TailscaleEndpointsSpec",
    "TailscaleGatewaySpec",
    "TailscaleRouteAccessSpec",
    "TailscaleRoutePolicySpec",
    "TailscaleServicesSpec",
    "TailscaleTailnetSpec",
    "Target",
    "TargetHealth",
    "TargetStatus",
    "parse_duration",
]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
TAG = r"^tag:[a-zA-Z][-a-zA-Z0-9]*$"
GROUP = r"^group:[a-zA-Z0-9][-a-zA-Z0-9_.]*$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
SERVICE = r"^svc:[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HOST_OR_IP = r"^[0-9A-Za-z.:-]+$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
URL = r"^https?://[^\s/]+(/[^\s]*)?$"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string ("1m30s", "250ms"), the form CEL's duration() reads.
    Cached: a few distinct strings recur in thousands of objects."""
    return sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))


MAX_DURATION = "24h"
"""The longest duration any field takes. Envoy refuses a duration past about 292 years (out of
range for its millisecond arithmetic) with a NACK, which a cluster learns late; a day is longer
than any timeout or ejection tsgw configures needs to be."""
_MAX_DURATION_S = 24 * 3600.0


def _duration(doc: str, *, default: Any = None, positive: bool = False) -> Any:
    """A Go-style duration field, at most MAX_DURATION (and more than 0s where Envoy needs it)."""
    rules = [
        Rule(
            cel=f"duration(self) <= duration('{MAX_DURATION}')",
            message=f"must be at most {MAX_DURATION}",
            check=lambda s: parse_duration(s) <= _MAX_DURATION_S,
        )
    ]
    if positive:
        rules.insert(
            0,
            Rule(
                cel="duration(self) > duration('0s')",
                message="must be more than 0s",
                check=lambda s: parse_duration(s) > 0,
            ),
        )
    return field(doc, default=default, pattern=DURATION, max_length=32, rules=tuple(rules))


# --- shared -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRef:
    """A reference by name to an object of a known kind."""

    name: str = field("Name of the referenced object.", pattern=DNS_SUBDOMAIN, max_length=253)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """A status condition, as Kubernetes API conventions define it (metav1.Condition)."""

    type: str = field("Condition type, e.g. Ready.", max_length=316)
    status: str = field("True, False or Unknown.", enum=("True", "False", "Unknown"))
    reason: str = field("CamelCase reason for the last transition.", max_length=1024, min_length=1)
    message: str = field("Human-readable detail.", max_length=32768)
    observed_generation: int | None = field(
        "The .metadata.generation the condition was computed from.", default=None
    )
    last_transition_time: str = field("When the status last changed (RFC 3339).")


def _conditions() -> Any:
    return field("Conditions of the object, one per type.", default=(), list_map_keys=("type",), max_items=8)


@dataclass(frozen=True, slots=True, kw_only=True)
class Images:
    """Container image overrides for the proxy pods."""

    tailscale: str | None = field(
        "Image that runs tailscaled through containerboot. Default: the operator's pinned tailscale image.",
        default=None,
    )
    envoy: str | None = field("Envoy image. Default: the operator's pinned Envoy image.", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """Compute resources of each proxy container (Kubernetes quantities)."""

    requests: dict[str, int | str] = field("Requested resources, e.g. {cpu: 50m, memory: 64Mi}.", default={})
    limits: dict[str, int | str] = field("Resource limits.", default={})


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxy:
    """How the proxy StatefulSet that carries this object's traffic runs."""

    replicas: int = field(
        "Proxy replicas; each is a tailnet device. More than one gives failover.",
        default=2,
        minimum=1,
        maximum=16,
    )
    resources: Resources | None = field("Resources of the tailscaled and Envoy containers.", default=None)
    images: Images = field("Image overrides.", default=Images)
    tags: tuple[str, ...] = field(
        "Tags of this object's proxy devices, instead of the tailnet's (the tailnet's credential "
        "must own them). Give ingress and egress proxies different tags when the policy "
        "auto-approves hosts of Tailscale Services by tag: a device approved as a host of a "
        "service takes that service's traffic itself, so an egress proxy carrying the hosts' tag "
        "cannot reach the service. Default: the tailnet's tags.",
        default=(),
        max_items=8,
        item_pattern=TAG,
    )
    node_selector: dict[str, str] = field("Node labels the proxy pods must run on.", default={})
    tolerations: tuple[Any, ...] = field("Tolerations of the proxy pods (core/v1 Toleration).", default=())
    affinity: Any | None = field(
        "Affinity of the proxy pods (core/v1 Affinity).", default=None, preserve_unknown=True
    )


# --- TailscaleTailnet ---------------------------------------------------------------------------


class ControlPlaneType(enum.StrEnum):
    """Which coordination server the tailnet uses."""

    TAILSCALE = "Tailscale"
    HEADSCALE = "Headscale"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlane:
    """The tailnet's coordination server and its API."""

    __rules__ = (
        Rule(
            cel="self.type == 'Tailscale' || has(self.apiURL)",
            message="a Headscale control plane needs apiURL: there is no default Headscale server",
            check=lambda s: s.type is ControlPlaneType.TAILSCALE or s.api_url is not None,
        ),
    )

    type: ControlPlaneType = field("Tailscale or Headscale.", default=ControlPlaneType.TAILSCALE)
    api_url: str | None = field(
        "Base URL of the API. Default for Tailscale: https://api.tailscale.com.",
        default=None,
        json="apiURL",
        pattern=URL,
    )
    login_url: str | None = field(
        "Login server the proxies' tailscaled joins. Default: Tailscale's own for Tailscale, "
        "apiURL for Headscale.",
        default=None,
        json="loginURL",
        pattern=URL,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef:
    """A Secret in a named namespace (the tailnet is cluster-scoped, so the namespace is explicit)."""

    namespace: str = field("Namespace of the Secret.", pattern=DNS_LABEL, max_length=63)
    name: str = field("Name of the Secret.", pattern=DNS_SUBDOMAIN, max_length=253)


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthKeys:
    """Keys of the Secret that hold an OAuth client (scopes: devices:core, auth_keys, services)."""

    client_id_key: str = field("Key of the client id.", default="client_id", json="clientIDKey")
    client_secret_key: str = field("Key of the client secret.", default="client_secret")


@dataclass(frozen=True, slots=True, kw_only=True)
class APIKeyKey:
    """Key of the Secret that holds an API key (Tailscale API access token or Headscale API key)."""

    key: str = field("Key of the API key.", default="api_key")


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """Where the operator's API credentials live: exactly one of oauth or apiKey."""

    __rules__ = (
        Rule(
            cel="has(self.oauth) != has(self.apiKey)",
            message="set exactly one of oauth or apiKey",
            check=lambda s: (s.oauth is None) != (s.api_key is None),
        ),
    )

    secret_ref: SecretRef = field("The Secret holding the credentials.")
    oauth: OAuthKeys | None = field("Use an OAuth client (Tailscale only).", default=None)
    api_key: APIKeyKey | None = field("Use an API key.", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TailscaleTailnetSpec:
    """A tailnet tsgw joins its proxies to, and the credentials it manages it with."""

    __rules__ = (
        Rule(
            cel="self.controlPlane.type == 'Tailscale' || has(self.credentials.apiKey)",
            message="Headscale authenticates with an API key only: set credentials.apiKey",
            check=lambda s: (
                s.control_plane.type is ControlPlaneType.TAILSCALE or s.credentials.api_key is not None
            ),
        ),
    )

    credentials: Credentials = field("API credentials.")
    control_plane: ControlPlane = field("Coordination server and API.", default=ControlPlane)
    tailnet: str = field(
        "Tailnet name in API paths; '-' is the credentials' own tailnet.", default="-", min_length=1
    )
    tags: tuple[str, ...] = field(
        "Tags of every proxy device; the credentials must own them.",
        default=("tag:k8s",),
        min_items=1,
        max_items=8,
        item_pattern=TAG,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TailnetStatus:
    """Observed state of a tailnet."""

    conditions: tuple[Condition, ...] = _conditions()
    magic_dns_suffix: str | None = field(
        "The tailnet's MagicDNS suffix, e.g. tail1234.ts.net.", default=None, json="magicDNSSuffix"
    )


# --- TailscaleEndpoints (egress) --------------------------------------------------------------------


class EgressProtocol(enum.StrEnum):
    """What Envoy speaks on a port; it decides the listener's filters and the health check."""

    TCP = "TCP"
    HTTP = "HTTP"
    GRPC = "GRPC"
    TLS = "TLS"


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressPort:
    """A port of the ClusterIP Service that reaches the target."""

    port: int = field("Port of the ClusterIP Service.", minimum=1, maximum=65535)
    protocol: EgressProtocol = field(
        "TCP (opaque), HTTP (HTTP/1.1 and h2c, per-request balancing, retries and failover), GRPC "
        "(HTTP/2 upstream, as HTTP), TLS (passthrough, SNI read for stats). UDP is not offered: "
        "the unprivileged proxy reaches the tailnet through tailscaled's CONNECT proxy, TCP only.",
        default=EgressProtocol.TCP,
    )
    target_port: int | None = field(
        "Port on the target. Default: port.", default=None, minimum=1, maximum=65535
    )
    name: str | None = field(
        "Name of the Service port. Default: <protocol>-<port>.", default=None, pattern=DNS_LABEL
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A destination on the tailnet: exactly one of address, service or deviceTags."""

    __rules__ = (
        Rule(
            cel="[has(self.address), has(self.service), has(self.deviceTags) && size(self.deviceTags) > 0]"
            ".exists_one(x, x)",
            message="set exactly one of address, service or deviceTags",
            check=lambda s: (
                [s.address is not None, s.service is not None, bool(s.device_tags)].count(True) == 1
            ),
        ),
    )

    name: str = field("Name of the target, unique in the object.", pattern=DNS_LABEL, max_length=63)
    ports: tuple[EgressPort, ...] = field(
        "Ports to forward.", min_items=1, max_items=16, list_map_keys=("port",)
    )
    address: str | None = field(
        "Tailnet IP address or MagicDNS name of a device.", default=None, pattern=HOST_OR_IP, max_length=253
    )
    service: str | None = field("A Tailscale Service, as svc:<name>.", default=None, pattern=SERVICE)
    device_tags: tuple[str, ...] = field(
        "Every online device carrying all these tags is an endpoint.",
        default=(),
        max_items=8,
        item_pattern=TAG,
    )
    weight: int = field(
        "Share of traffic among targets of the same priority.", default=1, minimum=1, maximum=128
    )
    priority: int = field(
        "Failover tier: 0 is used first; tier N+1 gets traffic when tier N's targets are ejected "
        "(see failover). TCP and TLS ports cannot tell a failed target through the tunnel, so "
        "on them only tier 0 is used.",
        default=0,
        minimum=0,
        maximum=7,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Failover:
    """Passive health: each proxy's Envoy ejects a target after consecutive failed connections
    or requests, and traffic moves to the other targets of the tier, then to the next priority.
    (Active health checks are not offered: from an unprivileged proxy they cannot cross
    tailscaled's CONNECT tunnel, so they would judge the wrong thing.)"""

    consecutive_failures: int = field(
        "HTTP and GRPC ports: failed requests in a row (connect failures, resets, 502-504) that "
        "eject a target.",
        default=3,
        minimum=1,
        maximum=100,
    )
    ejection_time: str = _duration(
        "How long an ejected target stays out; Envoy doubles it for repeat offenders. More than "
        "0s, at most 24h.",
        default="30s",
        positive=True,
    )
    interval: str = _duration(
        "How often ejections are evaluated and lifted. More than 0s, at most 24h.",
        default="5s",
        positive=True,
    )
    retries: int = field(
        "HTTP and GRPC ports: retries of a request that failed to connect, on another target and "
        "the next tier first, so callers do not see the failures that lead to an ejection.",
        default=1,
        minimum=0,
        maximum=5,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TailscaleEndpointsSpec:
    """Egress: a ClusterIP Service in this namespace whose traffic goes to tailnet targets."""

    tailnet_ref: LocalRef = field("The TailscaleTailnet whose devices are the targets.")
    targets: tuple[Target, ...] = field(
        "Targets; a port is served by every target that lists it.",
        min_items=1,
        max_items=32,
        list_map_keys=("name",),
    )
    failover: Failover = field("Passive health and failover between targets.", default=Failover)
    proxy: Proxy = field("Proxy settings.", default=Proxy)


class TargetHealth(enum.StrEnum):
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetStatus:
    """One target as the proxies' Envoys see it."""

    name: str = field("Target name.")
    addresses: tuple[str, ...] = field("Tailnet addresses the target resolved to.", default=())
    health: TargetHealth = field(
        "Healthy if any proxy replica's Envoy sees it healthy.", default=TargetHealth.UNKNOWN
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointsStatus:
    """Observed state of a TailscaleEndpoints."""

    conditions: tuple[Condition, ...] = _conditions()
    service_name: str | None = field("The ClusterIP Service to call.", default=None)
    targets: tuple[TargetStatus, ...] = field(
        "Per-target state.", default=(), list_map_keys=("name",), max_items=32
    )


# --- TailscaleServices (ingress) -----------------------------------------------------------------

_UDP_MESSAGE = (
    "Tailscale Services carry TCP only (Tailscale cannot host UDP on a Service VIP): "
    "reach a UDP workload through a device address instead"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressTLS:
    """A certificate Envoy terminates TLS with, chosen by the client's SNI."""

    secret_name: str = field(
        "A Secret of type kubernetes.io/tls in this namespace (cert-manager writes these): tls.crt "
        "(the chain, leaf first) and tls.key. Served to Envoy over SDS, never mounted in the proxy.",
        pattern=DNS_SUBDOMAIN,
        max_length=253,
    )
    hostnames: tuple[str, ...] = field(
        "SNI names this certificate answers (exact, or *.example.com); empty: any name no other "
        "certificate of the port lists (at most one such entry per port).",
        default=(),
        max_items=16,
        item_pattern=HOSTNAME,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressPort:
    """A port of the Tailscale Service."""

    __rules__ = (
        Rule(
            cel="self.protocol != 'UDP'",
            message=_UDP_MESSAGE,
            check=lambda s: s.protocol != "UDP",
            field_path=".protocol",
        ),
        Rule(
            cel="self.protocol in ['TCP', 'HTTP']",
            message="protocol must be TCP or HTTP",
            check=lambda s: s.protocol in ("TCP", "HTTP"),
            field_path=".protocol",
        ),
        Rule(
            cel="!has(self.proxyProtocol) || !self.proxyProtocol || self.protocol == 'TCP'",
            message="proxyProtocol is for TCP ports (HTTP ports pass the caller in Tailscale-* headers)",
            check=lambda s: not s.proxy_protocol or s.protocol == "TCP",
            field_path=".proxyProtocol",
        ),
    )

    port: int = field("Port on the Tailscale Service.", minimum=1, maximum=65535)
    tls: tuple[IngressTLS, ...] = field(
        "Terminate TLS on this port with these certificates (SNI selects one); empty: no TLS.",
        default=(),
        max_items=8,
    )

    protocol: str = field("TCP (opaque) or HTTP (routed by spec.http rules).", default="TCP")
    target_port: int | str | None = field(
        "Port of each backend Service, by number or name. Default: port.", default=None
    )
    name: str | None = field("Name of the port. Default: <protocol>-<port>.", default=None, pattern=DNS_LABEL)
    proxy_protocol: bool = field(
        "TCP ports: open each connection to a backend with a PROXY protocol v2 header carrying "
        "the tailnet caller's address (the backend must expect it). HTTP ports instead pass the "
        "caller's identity in Tailscale-* headers.",
        default=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressBackend:
    """Kubernetes Services in this namespace that serve the Tailscale Service."""

    __rules__ = (
        Rule(
            cel="has(self.service) != has(self.selector)",
            message="set exactly one of service or selector",
            check=lambda s: (s.service is None) != (s.selector is None),
        ),
    )

    service: str | None = field("A Service by name.", default=None, pattern=DNS_LABEL, max_length=63)
    selector: dict[str, str] | None = field("Every Service with these labels.", default=None)
    weight: int = field(
        "Share of traffic among backends of the same priority.", default=1, minimum=1, maximum=128
    )
    priority: int = field("Failover tier, 0 first.", default=0, minimum=0, maximum=7)


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPHeader:
    """A header name and value."""

    name: str = field("Header name.", pattern=HEADER_NAME, max_length=256)
    value: str = field(
        "Header value. No CR, LF or NUL: HTTP forbids them in a value (RFC 9110) and Envoy refuses them.",
        max_length=4096,
        rules=(
            Rule(
                cel="!self.contains('\\r') && !self.contains('\\n') && !self.contains('\\x00')",
                message="a header value may not contain CR, LF or NUL",
                check=lambda s: not any(c in s for c in "\r\n\x00"),
            ),
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRule:
    """Requests that match go to the named backend Services; the first matching rule wins."""

    path_prefix: str = field("Path prefix to match.", default="/", pattern=r"^/.*$", max_length=1024)
    headers: tuple[HTTPHeader, ...] = field(
        "Headers that must all be present with these exact values.", default=(), max_items=8
    )
    services: tuple[str, ...] = field(
        "Backend Services (by name) for matching requests; empty: all backends.",
        default=(),
        max_items=16,
        item_pattern=DNS_LABEL,
    )
    timeout: str | None = _duration("Request timeout, at most 24h. Default: Envoy's 15s.")


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRouting:
    """HTTP routing for the HTTP ports."""

    rules: tuple[HTTPRule, ...] = field("Rules in order.", min_items=1, max_items=64)


@dataclass(frozen=True, slots=True, kw_only=True)
class TailscaleServicesSpec:
    """Ingress: publish Kubernetes Services as the Tailscale Service svc:<serviceName>, hosted by
    tsgw proxies."""

    __rules__ = (
        Rule(
            cel="!has(self.http) || self.ports.exists(p, p.protocol == 'HTTP')",
            message="http rules need at least one port with protocol HTTP",
            check=lambda s: s.http is None or any(p.protocol == "HTTP" for p in s.ports),
        ),
    )

    tailnet_ref: LocalRef = field("The TailscaleTailnet the Tailscale Service lives in.")
    ports: tuple[IngressPort, ...] = field(
        "Ports of the Tailscale Service.", min_items=1, max_items=16, list_map_keys=("port",)
    )
    backends: tuple[IngressBackend, ...] = field("Where the traffic goes.", min_items=1, max_items=16)
    service_name: str | None = field(
        "Name of the Tailscale Service without 'svc:'. Default: the object's name.",
        default=None,
        pattern=DNS_LABEL,
        max_length=63,
    )
    tags: tuple[str, ...] = field(
        "Tags of the Tailscale Service (its ACL identity).", default=(), max_items=8, item_pattern=TAG
    )
    http: HTTPRouting | None = field("HTTP routing rules for HTTP ports.", default=None)
    proxy: Proxy = field("Proxy settings.", default=Proxy)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicesStatus:
    """Observed state of a TailscaleServices."""

    conditions: tuple[Condition, ...] = _conditions()
    service_name: str | None = field("The Tailscale Service, svc:<name>.", default=None)
    dns_name: str | None = field("Its MagicDNS name.", default=None, json="dnsName")
    addresses: tuple[str, ...] = field("Its VIP addresses.", default=(), max_items=2)
    hosting_replicas: int | None = field("Proxy replicas that host it now.", default=None)


# --- TailscaleGateway -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TailscaleGatewaySpec:
    """Publish an Envoy Gateway Gateway's listeners on the tailnet as a Tailscale Service."""

    gateway_ref: LocalRef = field("The Gateway (gateway.networking.k8s.io) in this namespace.")
    tailnet_ref: LocalRef = field("The TailscaleTailnet to publish on.")
    listeners: tuple[str, ...] = field(
        "Listener names to publish. Empty: every listener (all Gateway listeners are TCP).",
        default=(),
        max_items=16,
        item_pattern=DNS_LABEL,
    )
    service_name: str | None = field(
        "Tailscale Service name without 'svc:'. Default: the Gateway's name.",
        default=None,
        pattern=DNS_LABEL,
        max_length=63,
    )
    tags: tuple[str, ...] = field("Tags of the Tailscale Service.", default=(), max_items=8, item_pattern=TAG)
    proxy: Proxy = field("Proxy settings.", default=Proxy)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerStatus:
    """One Gateway listener."""

    name: str = field("Listener name.")
    port: int = field("Its port.")
    conditions: tuple[Condition, ...] = _conditions()


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """Observed state of a TailscaleGateway."""

    conditions: tuple[Condition, ...] = _conditions()
    dns_name: str | None = field("MagicDNS name of the Tailscale Service.", default=None, json="dnsName")
    addresses: tuple[str, ...] = field("Its VIP addresses.", default=(), max_items=2)
    listeners: tuple[ListenerStatus, ...] = field(
        "Per listener.", default=(), list_map_keys=("name",), max_items=64
    )


# --- TailscaleRoutePolicy ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyTargetRef:
    """An object the policy attaches to (Gateway API LocalPolicyTargetReferenceWithSectionName):
    one of tsgw's, or a Gateway API HTTPRoute or GRPCRoute served by Envoy Gateway (access rules
    only, applied by tsgw's Envoy Gateway extension)."""

    __rules__ = (
        Rule(
            cel="(self.kind in ['HTTPRoute', 'GRPCRoute']) == "
            "(has(self.group) && self.group == 'gateway.networking.k8s.io')",
            message="HTTPRoute and GRPCRoute are of group gateway.networking.k8s.io; "
            "TailscaleServices and TailscaleGateway of gateway.tailscale.com",
            check=lambda t: (
                (t.kind in ("HTTPRoute", "GRPCRoute")) == (t.group == "gateway.networking.k8s.io")
            ),
        ),
    )

    kind: str = field(
        "Kind of the target.", enum=("TailscaleServices", "TailscaleGateway", "HTTPRoute", "GRPCRoute")
    )
    name: str = field("Name of the target in this namespace.", pattern=DNS_SUBDOMAIN, max_length=253)
    group: str = field(
        "API group of the target.",
        default="gateway.tailscale.com",
        enum=("gateway.tailscale.com", "gateway.networking.k8s.io"),
    )
    section_name: str | None = field(
        "A port name (TailscaleServices), listener name (TailscaleGateway) or rule name "
        "(HTTPRoute, GRPCRoute); absent: all.",
        default=None,
        pattern=DNS_LABEL,
    )


class AccessAction(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRule:
    """Tailnet sources matched by any of tags, users, groups or CIDRs. Users and groups match
    devices owned by a user only: a tagged device has no user (as in Tailscale's policy)."""

    __rules__ = (
        Rule(
            cel="has(self.tags) && size(self.tags) > 0 || has(self.users) && size(self.users) > 0 "
            "|| has(self.groups) && size(self.groups) > 0 || has(self.cidrs) && size(self.cidrs) > 0",
            message="a rule needs at least one of tags, users, groups or cidrs",
            check=lambda s: len(s.tags) + len(s.users) + len(s.groups) + len(s.cidrs) > 0,
        ),
    )

    action: AccessAction = field("Allow or Deny.")
    tags: tuple[str, ...] = field(
        "Devices carrying any of these tags.", default=(), max_items=16, item_pattern=TAG
    )
    users: tuple[str, ...] = field(
        "Untagged devices owned by any of these users (login names).", default=(), max_items=16
    )
    groups: tuple[str, ...] = field(
        "Untagged devices owned by a member of any of these groups of the tailnet policy file "
        "(group:name). Until the policy file is read, a group has no members.",
        default=(),
        max_items=16,
        item_pattern=GROUP,
    )
    cidrs: tuple[str, ...] = field(
        "Tailnet source addresses.",
        default=(),
        max_items=16,
        item_max_length=43,
        item_rules=(
            Rule(
                cel="isCIDR(self)", message="must be a CIDR, e.g. 100.64.0.0/10", check=lambda s: _is_cidr(s)
            ),
        ),
    )


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """Who on the tailnet may connect, by identity; the first matching rule decides. A denied
    client's connection is closed before any byte is read (a network filter on the tailnet
    source address), so an HTTP client sees a reset, not a 403."""

    rules: tuple[AccessRule, ...] = field("Rules in order.", default=(), max_items=32)
    default_action: AccessAction = field("When no rule matches.", default=AccessAction.ALLOW)


_HOST_MESSAGE = (
    "the host header may not be set, added or removed: Envoy refuses to change it (the backend "
    "sees the name the client called)"
)
_NOT_HOST_HEADER = Rule(
    cel="self.name.lowerAscii() != 'host'",
    message=_HOST_MESSAGE,
    check=lambda h: h.name.lower() != "host",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderChanges:
    """Changes to request headers before they reach the backend (HTTP ports)."""

    set: tuple[HTTPHeader, ...] = field(
        "Headers to set, replacing any value (not host).",
        default=(),
        max_items=16,
        item_rules=(_NOT_HOST_HEADER,),
    )
    add: tuple[HTTPHeader, ...] = field(
        "Headers to append (not host).", default=(), max_items=16, item_rules=(_NOT_HOST_HEADER,)
    )
    remove: tuple[str, ...] = field(
        "Header names to remove (not host).",
        default=(),
        max_items=16,
        item_pattern=HEADER_NAME,
        item_max_length=256,
        item_rules=(
            Rule(
                cel="self.lowerAscii() != 'host'",
                message=_HOST_MESSAGE,
                check=lambda s: s.lower() != "host",
            ),
        ),
    )


_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "unavailable",
        "cancelled",
        "deadline-exceeded",
        "resource-exhausted",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retries:
    """Retries of failed requests (HTTP ports)."""

    attempts: int = field("Retries after the first attempt.", default=2, minimum=1, maximum=10)
    per_try_timeout: str | None = _duration("Timeout of each attempt, at most 24h.")
    retry_on: tuple[str, ...] = field(
        "Envoy retry conditions. (Not `on`: YAML 1.1 reads that key as the boolean true.)",
        default=("connect-failure", "reset", "5xx"),
        max_items=8,
        item_max_length=32,
        item_rules=(
            Rule(
                cel="self in ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', "
                "'refused-stream', 'unavailable', 'cancelled', 'deadline-exceeded', 'resource-exhausted']",
                message="not an Envoy retry condition",
                check=lambda s: s in _RETRY_ON,
            ),
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TailscaleRoutePolicySpec:
    """Tailnet-identity access rules, header changes, timeouts and retries for ingress traffic."""

    __rules__ = (
        Rule(
            cel="has(self.access) || has(self.requestHeaders) || has(self.timeout) || has(self.retries)",
            message="a policy needs at least one of access, requestHeaders, timeout or retries",
            check=lambda s: any(x is not None for x in (s.access, s.request_headers, s.timeout, s.retries)),
        ),
        Rule(
            cel="!self.targetRefs.exists(t, t.kind in ['HTTPRoute', 'GRPCRoute']) || has(self.tailnetRef)",
            message="a policy on an HTTPRoute or GRPCRoute names the tailnet its tags and users are on "
            "(tailnetRef)",
            check=lambda s: (
                s.tailnet_ref is not None
                or not any(t.kind in ("HTTPRoute", "GRPCRoute") for t in s.target_refs)
            ),
        ),
    )

    target_refs: tuple[PolicyTargetRef, ...] = field(
        "What the policy attaches to.", min_items=1, max_items=16
    )
    access: Access | None = field("Access rules (every port).", default=None)
    tailnet_ref: LocalRef | None = field(
        "The TailscaleTailnet whose devices the access rules' tags and users name, for HTTPRoute "
        "and GRPCRoute targets (required with them; tsgw's own targets use their own tailnet).",
        default=None,
    )
    request_headers: HeaderChanges | None = field("Request header changes (HTTP ports).", default=None)
    timeout: str | None = _duration("Request timeout (HTTP ports), at most 24h.")
    retries: Retries | None = field("Retries (HTTP ports).", default=None)


# --- TailscaleRouteAccess (derived by tsgw; read by Envoy Gateway) ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTargetRef:
    """A Gateway API route (or one of its rules) in the object's namespace."""

    kind: str = field("Kind of the route.", enum=("HTTPRoute", "GRPCRoute"))
    name: str = field("Name of the route in this namespace.", pattern=DNS_SUBDOMAIN, max_length=253)
    group: str = field("API group of the route.", enum=("gateway.networking.k8s.io",))
    section_name: str | None = field("A rule name; absent: every rule.", default=None, pattern=DNS_LABEL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedAccessRule:
    """An access rule with its tags and users resolved to addresses."""

    action: AccessAction = field("Allow or Deny.")
    cidrs: tuple[str, ...] = field(
        "Source addresses: the rule's CIDRs and the addresses of the devices its tags and users "
        "matched when tsgw last read the tailnet.",
        default=(),
        max_items=4096,
        item_max_length=43,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TailscaleRouteAccessSpec:
    """Written by tsgw, never by hand: the access rules of a TailscaleRoutePolicy that targets
    Gateway API routes, with tags and users resolved to tailnet addresses, for Envoy Gateway's
    extension manager (``policyResources``) to pass to tsgw's extension. tsgw rewrites it when
    the policy or the tailnet's devices change."""

    policy: str = field("The TailscaleRoutePolicy it is derived from.", pattern=DNS_SUBDOMAIN, max_length=253)
    target_refs: tuple[RouteTargetRef, ...] = field(
        "The routes the policy holds (a route another, older policy holds is not here).",
        min_items=1,
        max_items=16,
    )
    rules: tuple[ResolvedAccessRule, ...] = field(
        "Rules in order; the first match decides.", default=(), max_items=32
    )
    default_action: AccessAction = field("When no rule matches.", default=AccessAction.ALLOW)


@dataclass(frozen=True, slots=True, kw_only=True)
class AncestorRef:
    """The object a policy status entry is about."""

    group: str = field("API group.")
    kind: str = field("Kind.")
    name: str = field("Name.")
    namespace: str | None = field("Namespace.", default=None)
    section_name: str | None = field("Section.", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyAncestorStatus:
    """Status of the policy on one target (Gateway API PolicyAncestorStatus)."""

    ancestor_ref: AncestorRef = field("The target.")
    controller_name: str = field("The controller that wrote this entry.")
    conditions: tuple[Condition, ...] = _conditions()


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePolicyStatus:
    """Observed state of a TailscaleRoutePolicy."""

    ancestors: tuple[PolicyAncestorStatus, ...] = field("One entry per target.", default=(), max_items=16)
