"""What `tsgw status --cluster` and `tsgw doctor` read of an install, through the Kubernetes API.

:func:`gather` makes the reads, once each, and returns :class:`ClusterFacts`: plain data the
status view (:mod:`tsgw.cli._clusterview`) and the doctor's checks (:mod:`tsgw.cli._doctor`)
are pure functions of, so both are tested on crafted facts as well as on a real API server.

What is read, and who writes it:

- tsgw's CRDs (``apiextensions.k8s.io``) and every object of tsgw's kinds (the user; their
  ``status`` by the operator's leader: Accepted, Programmed, AuthKeysReady,
  TailscaleServiceReady, a tailnet's Ready).
- The proxies: StatefulSets and pods labelled ``app.kubernetes.io/name=tsgw-proxy`` (the
  operator), and each replica's state Secret, of which only the keys containerboot writes about
  the device (``device_id``, ``device_fqdn``, ``device_ips``) are kept; tailscaled's keys in it
  are dropped as soon as the Secret is parsed.
- In the operator's namespace: the operator pods (``app.kubernetes.io/name=tsgw``), the Lease
  ``tsgw-operator``, each tailnet's facts ConfigMap (devices and Tailscale Services as the
  leader last read them from the tailnet's API) and each replica's xDS report ConfigMap (the
  Envoys connected to it and whether each holds its group's current snapshot).
- The API server's clock (its ``Date`` header) against this machine's.

A read the caller's RBAC refuses, or that fails, is recorded in :attr:`ClusterFacts.unread`
and the rest goes on: the doctor reports it as a finding rather than stopping.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tsgw import api
from tsgw.controllers import FACTS_KEY, TAILNET_LABEL
from tsgw.kube import CONFIGMAPS, CUSTOMRESOURCEDEFINITIONS, LEASES, SECRETS, Client, KubeError, Resource
from tsgw.operator._kubernetes import XDS_REPORT_KEY, XDS_REPORT_LABEL
from tsgw.pipeline import read_report

if TYPE_CHECKING:
    from tsgw.xds import NodeSync

__all__ = [
    "LEASE_NAME",
    "PODS",
    "PROXY_SELECTOR",
    "STATEFULSETS",
    "ClusterFacts",
    "Device",
    "gather",
]

PODS = Resource("v1", "Pod", "pods")
STATEFULSETS = Resource("apps/v1", "StatefulSet", "statefulsets")
PROXY_SELECTOR = "app.kubernetes.io/name=tsgw-proxy"
"""The label every proxy StatefulSet, pod and state Secret carries."""
OPERATOR_SELECTOR = "app.kubernetes.io/name=tsgw"
LEASE_NAME = "tsgw-operator"
_DEVICE_KEYS = ("device_id", "device_fqdn", "device_ips")


@dataclass(frozen=True, slots=True)
class Device:
    """What containerboot wrote about a replica's device into its state Secret."""

    id: str = ""
    fqdn: str = ""
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterFacts:
    """One reading of an install; every field is as read (raw objects are API JSON)."""

    namespace: str = "tsgw-system"
    """The operator's namespace."""
    crds: Mapping[str, Any] = field(default_factory=dict)
    """tsgw's CRDs present on the server, by name (``<plural>.gateway.tailscale.com``)."""
    objects: tuple[Any, ...] = ()
    """Every object of tsgw's kinds (tailnets, endpoints, services, gateways, ...)."""
    statefulsets: tuple[Any, ...] = ()
    pods: tuple[Any, ...] = ()
    """Proxy pods."""
    devices: Mapping[tuple[str, str], Device] = field(default_factory=dict)
    """(namespace, replica pod name) → its device, from the replica's state Secret."""
    tailnet_facts: Mapping[str, Any] = field(default_factory=dict)
    """Tailnet name → its facts document (:meth:`tsgw.translate.TailnetFacts.to_json`)."""
    xds_reports: Mapping[str, Mapping[str, tuple[str, tuple[NodeSync, ...]]]] = field(default_factory=dict)
    """Operator replica → node cluster → (snapshot fingerprint, its connected Envoys)."""
    operator_pods: tuple[Any, ...] = ()
    lease: Any = None
    server_time: float | None = None
    """The API server's clock (POSIX seconds), None when it could not be read."""
    local_time: float = 0.0
    """This machine's clock at the same moment."""
    unread: tuple[str, ...] = ()
    """Reads that failed: ``"<what>: <error>"``."""


def _b64(value: Any) -> str:
    try:
        return base64.b64decode(str(value)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def device_of(secret: Mapping[str, Any]) -> Device | None:
    """The device a state Secret records; None when containerboot has not written one."""
    data = secret.get("data") or {}
    values = {k: _b64(data[k]) for k in _DEVICE_KEYS if k in data}
    if not values.get("device_id") and not values.get("device_fqdn"):
        return None
    ips: tuple[str, ...] = ()
    if values.get("device_ips"):
        try:
            parsed = orjson.loads(values["device_ips"])
            ips = tuple(str(ip) for ip in parsed) if isinstance(parsed, list) else ()
        except orjson.JSONDecodeError:
            ips = ()
    return Device(values.get("device_id", ""), values.get("device_fqdn", "").rstrip("."), ips)


async def gather(client: Client, namespace: str) -> ClusterFacts:
    """Read an install (see the module's docstring); never raises for a refused read."""
    unread: list[str] = []

    async def items(what: str, resource: Resource, ns: str | None = None, selector: str = "") -> list[Any]:
        try:
            return list((await client.list(resource, ns, label_selector=selector or None)).items)
        except KubeError as e:
            unread.append(f"{what}: {e}")
            return []

    crds = {
        c["metadata"]["name"]: c
        for c in await items("CustomResourceDefinitions", CUSTOMRESOURCEDEFINITIONS)
        if str(c["metadata"]["name"]).endswith("." + api.GROUP)
    }
    objects: list[Any] = []
    for kind in api.KINDS:
        if f"{kind.plural}.{api.GROUP}" not in crds:
            continue  # the doctor reports the missing CRD; listing it would only fail again
        objects += await items(kind.kind, Resource(api.API_VERSION, kind.kind, kind.plural, kind.namespaced))
    devices: dict[tuple[str, str], Device] = {}
    for secret in await items("proxy state Secrets", SECRETS, None, PROXY_SELECTOR):
        md = secret["metadata"]
        dev = device_of(secret)
        secret.clear()  # tailscaled's keys are in there: keep nothing but the device
        if dev is not None:
            devices[(md.get("namespace", ""), md["name"])] = dev
    facts: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    for cm in await items("operator ConfigMaps", CONFIGMAPS, namespace, "app.kubernetes.io/managed-by=tsgw"):
        labels = cm["metadata"].get("labels") or {}
        data = cm.get("data") or {}
        try:
            if TAILNET_LABEL in labels and FACTS_KEY in data:
                facts[labels[TAILNET_LABEL]] = orjson.loads(data[FACTS_KEY])
            elif XDS_REPORT_LABEL in labels and XDS_REPORT_KEY in data:
                reports[labels[XDS_REPORT_LABEL]] = read_report(orjson.loads(data[XDS_REPORT_KEY]))
        except (ValueError, TypeError) as e:
            unread.append(f"ConfigMap {namespace}/{cm['metadata']['name']}: {e}")
    lease = None
    try:
        lease = await client.get_or_none(LEASES, LEASE_NAME, namespace)
    except KubeError as e:
        unread.append(f"Lease {namespace}/{LEASE_NAME}: {e}")
    server_time: float | None = None
    local_time = time.time()
    try:
        server_time, local_time = await client.server_clock()
    except KubeError as e:
        unread.append(f"the API server's clock: {e}")
    return ClusterFacts(
        namespace=namespace,
        crds=crds,
        objects=tuple(objects),
        statefulsets=tuple(await items("proxy StatefulSets", STATEFULSETS, None, PROXY_SELECTOR)),
        pods=tuple(await items("proxy pods", PODS, None, PROXY_SELECTOR)),
        devices=devices,
        tailnet_facts=facts,
        xds_reports=reports,
        operator_pods=tuple(await items("operator pods", PODS, namespace, OPERATOR_SELECTOR)),
        lease=lease,
        server_time=server_time,
        local_time=local_time,
        unread=tuple(unread),
    )
