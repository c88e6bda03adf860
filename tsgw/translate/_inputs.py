"""What translation reads besides the API objects: tailnet facts and options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Device", "Inputs", "Options", "TailnetFacts", "User"]


@dataclass(frozen=True, slots=True)
class Device:
    """A tailnet device as the Tailscale (or Headscale) API reports it."""

    name: str
    """MagicDNS name, e.g. db-eu-1.tail1234.ts.net."""
    addresses: tuple[str, ...]
    tags: tuple[str, ...] = ()
    user: str = ""
    online: bool = True


@dataclass(frozen=True, slots=True)
class User:
    """A tailnet user: what the caller-identity headers and ``groups`` access rules need."""

    display_name: str = ""
    """Display name (Tailscale's ``displayName``; Headscale's ``displayName`` or name)."""
    groups: tuple[str, ...] = ()
    """The tailnet policy file's groups (``group:x``) that list this user."""


@dataclass(frozen=True, slots=True)
class TailnetFacts:
    """What the controllers learned from a tailnet's API; translation never calls the API."""

    magic_dns_suffix: str = ""
    devices: tuple[Device, ...] = ()
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Tailscale Service name (svc:x) → its VIP addresses."""
    claims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Tailscale Service name → the tsgw objects claiming it (``Kind/namespace/name``, from its
    owner annotation, any cluster); services tsgw did not make have no entry."""
    users: Mapping[str, User] = field(default_factory=dict)
    """Login name (a device's ``user``) → display name and policy groups; users the controllers
    could not read (or that own no device) have no entry."""

    def to_json(self) -> dict[str, Any]:
        """A compact JSON document (short keys: the operator stores thousands of devices in a
        ConfigMap, whose limit is 1 MiB)."""
        return {
            "v": 1,
            "suffix": self.magic_dns_suffix,
            "devices": [
                [d.name, list(d.addresses), list(d.tags), d.user, 1 if d.online else 0] for d in self.devices
            ],
            "services": {k: list(v) for k, v in sorted(self.services.items())},
            **({"claims": {k: list(v) for k, v in sorted(self.claims.items())}} if self.claims else {}),
            **(
                {"users": {k: [u.display_name, list(u.groups)] for k, u in sorted(self.users.items())}}
                if self.users
                else {}
            ),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TailnetFacts:
        """The inverse of :meth:`to_json`; ValueError on a document it cannot read."""
        if doc.get("v") != 1:
            raise ValueError(f"tailnet facts of an unknown version {doc.get('v')!r}")
        devices = tuple(
            Device(str(n), tuple(map(str, a)), tuple(map(str, t)), str(u), bool(o))
            for n, a, t, u, o in doc.get("devices") or ()
        )
        services = {str(k): tuple(map(str, v)) for k, v in (doc.get("services") or {}).items()}
        claims = {str(k): tuple(map(str, v)) for k, v in (doc.get("claims") or {}).items()}
        users = {str(k): User(str(n), tuple(map(str, g))) for k, (n, g) in (doc.get("users") or {}).items()}
        return cls(str(doc.get("suffix") or ""), devices, services, claims, users)


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything one translation reads. Raw objects are JSON-decoded dicts as the informers keep
    them; their order does not matter (translation sorts)."""

    objects: Sequence[Mapping[str, Any]] = ()
    """gateway.tailscale.com/v1alpha1 objects of every kind."""
    services: Sequence[Mapping[str, Any]] = ()
    """core/v1 Services."""
    endpoint_slices: Sequence[Mapping[str, Any]] = ()
    """discovery.k8s.io/v1 EndpointSlices."""
    gateways: Sequence[Mapping[str, Any]] = ()
    """gateway.networking.k8s.io/v1 Gateways."""
    tailnets: Mapping[str, TailnetFacts] = field(default_factory=dict)
    """TailscaleTailnet name → its facts."""
    auth_keys: Mapping[str, str] = field(default_factory=dict)
    """``namespace/pod`` of a proxy replica → the auth key minted for it (the controller mints
    once per replica)."""
    secrets: Sequence[Mapping[str, Any]] = ()
    """core/v1 Secrets of type ``kubernetes.io/tls`` (the certificates TLS ports name)."""


@dataclass(frozen=True, slots=True)
class Options:
    """How the owned objects and Envoy configuration are shaped."""

    operator_namespace: str = "tsgw-system"
    """Namespace of the operator. Default: tsgw-system."""
    xds_host: str = "tsgw.tsgw-system.svc"
    """Where the proxies' Envoys find tsgw's xDS server. Default: tsgw.tsgw-system.svc."""
    xds_port: int = 18000
    """Its port. Default: 18000."""
    tailscale_image: str = "ghcr.io/tailscale/tailscale:v1.102.3"
    """Image running containerboot and tailscaled. Default: ghcr.io/tailscale/tailscale:v1.102.3."""
    envoy_image: str = "docker.io/envoyproxy/envoy:v1.40.0"
    """Envoy image. Default: docker.io/envoyproxy/envoy:v1.40.0."""
    first_listener_port: int = 10000
    """Envoy's listeners bind from this port up, in port order. Default: 10000."""
    connect_proxy_port: int = 1055
    """tailscaled's outbound HTTP CONNECT proxy on loopback (egress). Default: 1055."""
    health_port: int = 9002
    """containerboot's /healthz. Default: 9002."""
    envoy_admin_port: int = 19000
    """Envoy's admin interface, on loopback. Default: 19000."""
    envoy_stats_port: int = 19001
    """Envoy's ``/stats/prometheus`` and nothing else of its admin interface, on every
    interface of the pod (the container port ``envoy-metrics``), for Prometheus. Default: 19001."""
    xds_auth_key: bytes = field(default=b"", repr=False)
    """The key the xDS server derives each group's token from (``tsgw.xds.group_token``): each
    group's Envoy bootstrap, then a Secret instead of a ConfigMap, carries its group's token.
    Empty: bootstraps carry none (a server that does not authenticate). Default: empty."""
    proxy_env: tuple[tuple[str, str], ...] = ()
    """Extra environment of the proxies' tailscale container, e.g. ``TS_DEBUG_USE_DERP_HTTP=1``
    where the DERP relay speaks plain HTTP (a hermetic test bed). Default: none."""
