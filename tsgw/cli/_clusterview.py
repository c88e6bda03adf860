"""`tsgw status --cluster`: an install seen through the Kubernetes API, one section per tailnet.

:func:`cluster_status` is a pure function of :class:`tsgw.cli._cluster.ClusterFacts` into one
JSON document (``-o json|yaml`` prints it as is); :func:`render` writes it as tables. Per
tailnet: its ``Ready`` condition; the proxy groups of the objects that name it (owner, desired
and Ready replicas, ``Programmed``, the Tailscale Service hosted, the last error); each proxy
replica (pod Ready, its device from the state Secret, online per the tailnet facts, its Envoy's
state from the operator replicas' xDS reports: SYNCED, PENDING or NACKED with Envoy's reason);
the Tailscale Services the facts list with the objects claiming them. Then every object with a
condition False (its "last error": the most recent such condition), and the operator replicas
with the Lease holder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from tsgw.cli._cluster import ClusterFacts
from tsgw.translate import node_cluster
from tsgw.xds import Sync, short_name

__all__ = ["OWNING_KINDS", "cluster_status", "conditions", "envoys", "last_error", "render"]

OWNING_KINDS = ("TailscaleEndpoints", "TailscaleServices", "TailscaleGateway")
"""The kinds whose objects each own a proxy group."""
_OWNER_KIND = "gateway.tailscale.com/owner-kind"
_OWNER_NAME = "gateway.tailscale.com/owner-name"


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """An object's status conditions by type."""
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type")}


def last_error(obj: Mapping[str, Any]) -> str:
    """The most recent condition that is False (``Type Reason: message``), "" when none is."""
    bad = [c for c in conditions(obj).values() if c.get("status") == "False"]
    if not bad:
        return ""
    c = max(bad, key=lambda c: str(c.get("lastTransitionTime") or ""))
    return f"{c.get('type')} {c.get('reason')}: {c.get('message') or ''}".rstrip(": ")


def _ref(obj: Mapping[str, Any]) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{ns}/{md.get('name')}" if ns else f"{obj.get('kind')}/{md.get('name')}"


def _ready(obj: Mapping[str, Any], ctype: str = "Ready") -> dict[str, str]:
    c = conditions(obj).get(ctype) or {}
    return {
        "status": str(c.get("status") or "Unknown"),
        "reason": str(c.get("reason") or ""),
        "message": str(c.get("message") or ""),
    }


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def envoys(facts: ClusterFacts) -> dict[str, dict[str, Any]]:
    """Envoy node id (the proxy pod's name) → its state as the operator replicas report it:
    ``{"cluster", "state", "type", "version", "detail", "replica"}``; an Envoy reported by two
    replicas (while it moves) counts once, REJECTED first."""
    out: dict[str, dict[str, Any]] = {}
    rank = {Sync.REJECTED: 0, Sync.PENDING: 1, Sync.SYNCED: 2}
    for replica, groups in sorted(facts.xds_reports.items()):
        for cluster, (_fingerprint, nodes) in sorted(groups.items()):
            for n in nodes:
                key = f"{cluster}/{n.node_id}"
                old = out.get(key)
                if old is not None and rank[Sync(old["sync"])] <= rank[n.sync]:
                    continue
                out[key] = {
                    "cluster": cluster,
                    "sync": n.sync.value,
                    "state": "NACKED" if n.sync is Sync.REJECTED else n.sync.value,
                    "type": short_name(n.type_url) if n.type_url else "",
                    "version": n.rejection.version if n.rejection else "",
                    "detail": n.rejection.detail.strip() if n.rejection else "",
                    "replica": replica,
                }
    return out


def _service_of(obj: Mapping[str, Any]) -> str:
    """The Tailscale Service an owner hosts ("" for egress)."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "TailscaleServices":
        named = (obj.get("status") or {}).get("serviceName")
        return str(named or "svc:" + str(spec.get("serviceName") or obj["metadata"]["name"]))
    if kind == "TailscaleGateway":
        return "svc:" + str(spec.get("serviceName") or (spec.get("gatewayRef") or {}).get("name") or "")
    return ""


def _tailnet_of(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("spec") or {}).get("tailnetRef") or {}).get("name") or "")


def _online(facts_doc: Mapping[str, Any] | None, fqdn: str, ips: Sequence[str] = ()) -> bool | None:
    """Whether the tailnet's facts list the device online; None when they do not list it. A
    device is the facts' entry with one of its tailnet addresses, else with its name (Tailscale
    lists the FQDN, Headscale the given name: the FQDN's first label)."""
    if not facts_doc or not (fqdn or ips):
        return None
    short = fqdn.split(".", 1)[0]
    by_name = None
    for d in facts_doc.get("devices") or []:
        if not isinstance(d, list) or not d:
            continue
        online = bool(d[4]) if len(d) > 4 else True
        if ips and len(d) > 1 and set(ips) & {str(a) for a in d[1] or []}:
            return online
        if fqdn and str(d[0]).rstrip(".") in (fqdn, short):
            by_name = online
    return by_name


def _group(facts: ClusterFacts, owner: Mapping[str, Any], nodes: Mapping[str, Any]) -> dict[str, Any]:
    md = owner["metadata"]
    ns = str(md.get("namespace") or "")
    sts = next(
        (
            s
            for s in facts.statefulsets
            if s["metadata"].get("namespace") == ns
            and (s["metadata"].get("labels") or {}).get(_OWNER_KIND) == owner.get("kind")
            and (s["metadata"].get("labels") or {}).get(_OWNER_NAME) == md["name"]
        ),
        None,
    )
    name = str(sts["metadata"]["name"]) if sts is not None else ""
    cluster = node_cluster(ns, name) if name else ""
    facts_doc = facts.tailnet_facts.get(_tailnet_of(owner))
    proxies = []
    if sts is not None:
        pods = {
            p["metadata"]["name"]: p
            for p in facts.pods
            if p["metadata"].get("namespace") == ns
            and (p["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == name
        }
        desired = int((sts.get("spec") or {}).get("replicas") or 0)
        for pod_name in sorted(set(pods) | {f"{name}-{i}" for i in range(desired)}):
            pod = pods.get(pod_name)
            dev = facts.devices.get((ns, pod_name))
            envoy = nodes.get(f"{cluster}/{pod_name}")
            proxies.append(
                {
                    "pod": pod_name,
                    "phase": str((pod.get("status") or {}).get("phase") or "") if pod else "Missing",
                    "ready": _pod_ready(pod) if pod else False,
                    "device": dev.fqdn if dev else "",
                    "deviceID": dev.id if dev else "",
                    "addresses": list(dev.ips) if dev else [],
                    "online": _online(facts_doc, dev.fqdn, dev.ips) if dev else None,
                    "envoy": envoy["state"] if envoy else "DISCONNECTED",
                    "nack": (
                        f"{envoy['type']} version {envoy['version']}: {envoy['detail']}"
                        if envoy and envoy["state"] == "NACKED"
                        else ""
                    ),
                    "xdsReplica": envoy["replica"] if envoy else "",
                }
            )
    status = (sts or {}).get("status") or {}
    return {
        "owner": _ref(owner),
        "namespace": ns,
        "group": name,
        "nodeCluster": cluster,
        "replicas": int(((sts or {}).get("spec") or {}).get("replicas") or 0),
        "readyReplicas": int(status.get("readyReplicas") or 0),
        "programmed": _ready(owner, "Programmed"),
        "service": _service_of(owner),
        "hostingReplicas": (owner.get("status") or {}).get("hostingReplicas"),
        "proxies": proxies,
        "lastError": last_error(owner),
    }


def cluster_status(facts: ClusterFacts) -> dict[str, Any]:
    """The whole view as one JSON document (see the module's docstring)."""
    nodes = envoys(facts)
    tailnet_objs = {o["metadata"]["name"]: o for o in facts.objects if o.get("kind") == "TailscaleTailnet"}
    owners = [o for o in facts.objects if o.get("kind") in OWNING_KINDS]
    names = sorted(set(tailnet_objs) | {_tailnet_of(o) for o in owners} | set(facts.tailnet_facts))
    tailnets = []
    for tn in names:
        obj = tailnet_objs.get(tn)
        doc = facts.tailnet_facts.get(tn) or {}
        claims = doc.get("claims") or {}
        tailnets.append(
            {
                "name": tn,
                "exists": obj is not None,
                "ready": _ready(obj)
                if obj is not None
                else {"status": "False", "reason": "NotFound", "message": ""},
                "magicDNSSuffix": str(((obj or {}).get("status") or {}).get("magicDNSSuffix") or ""),
                "devices": len(doc.get("devices") or []),
                "groups": [_group(facts, o, nodes) for o in sorted(owners, key=_ref) if _tailnet_of(o) == tn],
                "services": [
                    {"name": svc, "addresses": list(addrs), "claimedBy": list(claims.get(svc) or [])}
                    for svc, addrs in sorted((doc.get("services") or {}).items())
                ],
            }
        )
    lease_spec = (facts.lease or {}).get("spec") or {}
    return {
        "namespace": facts.namespace,
        "operator": {
            "leader": str(lease_spec.get("holderIdentity") or ""),
            "replicas": [
                {"pod": p["metadata"]["name"], "ready": _pod_ready(p)}
                for p in sorted(facts.operator_pods, key=lambda p: str(p["metadata"]["name"]))
            ],
        },
        "tailnets": tailnets,
        "errors": [
            {"object": _ref(o), "error": err}
            for o in sorted(facts.objects, key=_ref)
            if (err := last_error(o))
        ],
        "unread": list(facts.unread),
    }


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return (
        "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
        )
        + "\n"
    )


def _yes(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def render(doc: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    """:func:`cluster_status`'s document as tables."""
    op = doc["operator"]
    replicas = ", ".join(f"{r['pod']} ({'Ready' if r['ready'] else 'not Ready'})" for r in op["replicas"])
    out.write(
        f"operator in {doc['namespace']}: leader {op['leader'] or '(none)'}; "
        f"replicas: {replicas or '(none)'}\n"
    )
    for tn in doc["tailnets"]:
        r = tn["ready"]
        out.write(
            f"\ntailnet {tn['name']}: Ready={r['status']}"
            + (f" {r['reason']}" if r["reason"] else "")
            + (f", {tn['magicDNSSuffix']}" if tn["magicDNSSuffix"] else "")
            + f", {tn['devices']} devices known"
            + (f": {_clip(r['message'])}" if r["status"] != "True" and r["message"] else "")
            + "\n"
        )
        groups: Iterable[Mapping[str, Any]] = tn["groups"]
        rows = [
            [
                f"{g['namespace']}/{g['group'] or '-'}",
                g["owner"].split("/", 1)[0] + "/" + g["owner"].rsplit("/", 1)[-1],
                f"{g['readyReplicas']}/{g['replicas']}",
                g["programmed"]["status"]
                + (f" {g['programmed']['reason']}" if g["programmed"]["reason"] else ""),
                g["service"] or "-",
                _clip(g["lastError"], 60) or "-",
            ]
            for g in groups
        ]
        if rows:
            out.write(_table(rows, ["GROUP", "OWNER", "READY", "PROGRAMMED", "SERVICE", "LAST ERROR"]))
        proxies = [
            [
                f"{g['namespace']}/{p['pod']}",
                _yes(p["ready"]) if p["phase"] != "Missing" else "missing",
                p["device"] or "-",
                ",".join(p["addresses"]) or "-",
                _yes(p["online"]),
                p["envoy"],
                _clip(p["nack"], 60) or "",
            ]
            for g in tn["groups"]
            for p in g["proxies"]
        ]
        if proxies:
            out.write(
                "\n" + _table(proxies, ["PROXY", "READY", "DEVICE", "ADDRESSES", "ONLINE", "ENVOY", ""])
            )
        services = [
            [s["name"], ",".join(s["addresses"]) or "-", ", ".join(s["claimedBy"]) or "(not tsgw's)"]
            for s in tn["services"]
        ]
        if services:
            out.write("\n" + _table(services, ["TAILSCALE SERVICE", "ADDRESSES", "CLAIMED BY"]))
    if doc["errors"]:
        out.write("\nlast error per object:\n")
        for e in doc["errors"]:
            out.write(f"  {e['object']}: {_clip(e['error'], 200)}\n")
    for u in doc["unread"]:
        out.write(f"not read: {u}\n")
