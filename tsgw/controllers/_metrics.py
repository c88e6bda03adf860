"""The controllers' own Prometheus series, on the process's one registry
(``prometheus_client.REGISTRY``) beside ``tsgw_tailscale_*`` and ``tsgw_xds_*``.

``tsgw_tailnet_device_key_expiry_timestamp_seconds{tailnet, device}``: when a tagged device's node
key expires (Unix seconds), from each facts poll. A proxy whose key expires drops off the
tailnet until it logs in again (containerboot asks for a new auth key), so this is what the
"keys close to expiry" alert watches. Only tagged devices (every proxy tsgw runs is tagged) whose
key can expire have a series: Tailscale disables key expiry for tagged devices by default,
Headscale keeps the expiry the node registered with. A device that leaves the tailnet, or whose
expiry is disabled, loses its series at the next poll.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Gauge

from tsgw.tailscale import Device

__all__ = ["DEVICE_KEY_EXPIRY", "observe_device_expiry"]

DEVICE_KEY_EXPIRY = Gauge(
    "tsgw_tailnet_device_key_expiry_timestamp_seconds",
    "When a tagged device's node key expires (Unix seconds), by tailnet and device (its MagicDNS "
    "name); only devices whose key can expire.",
    ["tailnet", "device"],
)

_seen: dict[str, set[str]] = {}


def observe_device_expiry(tailnet: str, devices: Iterable[Device]) -> None:
    """Set the series of ``tailnet``'s tagged devices with an expiry; drop those that are gone."""
    now: set[str] = set()
    for d in devices:
        if not d.tags or d.expires is None:
            continue
        name = d.name.rstrip(".") or d.hostname or d.id
        DEVICE_KEY_EXPIRY.labels(tailnet, name).set(d.expires.timestamp())
        now.add(name)
    for gone in _seen.get(tailnet, set()) - now:
        DEVICE_KEY_EXPIRY.remove(tailnet, gone)
    _seen[tailnet] = now
