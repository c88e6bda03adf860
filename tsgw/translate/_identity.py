"""Proxy group identity: which StatefulSet an object's proxies form, and which xDS node cluster
their Envoys announce. One function each, used by every part that names a group (the snapshot
publisher, the owned StatefulSet's Envoy arguments, `tsgw bootstrap`, `tsgw status`,
`tsgw snapshot`).

- **Group name** (:func:`group_name`): `<object name>-<kind suffix>` (`tsep`, `tssvc`, `tsgw`),
  unique within a namespace for objects of different kinds, shortened with a hash when long so
  that pod names and the StatefulSet's `controller-revision-hash` label stay within 63
  characters. It names the StatefulSet and the objects beside it, all namespaced.
- **Node cluster** (:func:`node_cluster`): `<group name>.<namespace>`, read like a Kubernetes
  DNS name (`web-tssvc.demo`). A namespace is a DNS label (no dots), so the last dot separates
  the two parts and two namespaces can never share a node cluster. At most 45 + 1 + 63 = 109
  characters, all DNS-safe. The xDS server keys snapshots by it (`--service-cluster`).

An object whose name cannot form a group (not a DNS label: the StatefulSet's pods would get an
invalid hostname) or whose group name collides with another object's in the same namespace gets
a condition from translation (:func:`name_problem`), never a silently merged group.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "KIND_SUFFIX",
    "egress_service_name",
    "group_name",
    "name_problem",
    "node_cluster",
    "split_node_cluster",
]

KIND_SUFFIX = {"TailscaleEndpoints": "tsep", "TailscaleServices": "tssvc", "TailscaleGateway": "tsgw"}
"""The suffix each proxy-owning kind adds to its object's name."""

_MAX_GROUP = 45
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def group_name(kind: str, name: str) -> str:
    """The proxy group (StatefulSet) of an object: `<name>-<kind suffix>`, shortened with a hash
    when longer than 45 characters, so pod names and the controller-revision-hash label stay
    within 63 characters. A shortened name ends in eight hex digits, never in a kind suffix, so
    it cannot equal an unshortened one."""
    base = f"{name}-{KIND_SUFFIX[kind]}"
    if len(base) <= _MAX_GROUP:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{base[:36].rstrip('-')}-{digest}"


def egress_service_name(name: str) -> str:
    """The ClusterIP Service of a TailscaleEndpoints `name` (same namespace): its own name, so a
    pod (or Envoy Gateway's Envoy) dials `<name>.<namespace>.svc` to reach the tailnet."""
    return name


def node_cluster(namespace: str, group: str) -> str:
    """The xDS node cluster of a proxy group's Envoys: `<group>.<namespace>`."""
    return f"{group}.{namespace}"


def split_node_cluster(cluster: str) -> tuple[str, str]:
    """(namespace, group) of a node cluster made by :func:`node_cluster`; ("", cluster) for any
    other string (an Envoy started by hand with a name of its own)."""
    group, dot, namespace = cluster.rpartition(".")
    if not dot or not group or not _DNS_LABEL.fullmatch(namespace):
        return "", cluster
    return namespace, group


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a proxy group, or None. It becomes the StatefulSet's name and the
    prefix of its pods' hostnames, which must be DNS labels (RFC 1123: lower-case alphanumerics
    and '-', at most 63 characters, no dots)."""
    if len(name) > 253:
        return f"name is {len(name)} characters long"
    if not _DNS_LABEL.fullmatch(name):
        return (
            f"name {name!r} is not a DNS label (lower-case letters, digits and '-'; no dots): "
            "it names the proxies' StatefulSet and their hostnames"
        )
    return None
