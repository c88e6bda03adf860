"""`tsgw doctor`: checks an install end to end and says what to fix, one line per finding.

Every check is a pure function of :class:`tsgw.cli._cluster.ClusterFacts` (read once by
:func:`tsgw.cli._cluster.gather`) returning :class:`Finding` s; a check that finds nothing wrong
returns one ``ok`` finding, so the output shows what was checked. The exit code is 1 when any
finding is ``fail``, else 0 (``warn`` is for what resolves by itself or may be intended).

=============  =================================================================================
check          what it looks at
=============  =================================================================================
access         every read succeeded (a refused read leaves its checks blind: grant it)
crds           tsgw's CRDs exist, serve ``v1alpha1``, and hold the schema this tsgw generates
operator       the operator pods are Ready and a replica holds the Lease ``tsgw-operator``
               (its ``renewTime + leaseDurationSeconds`` not past, by the API server's clock)
credentials    each TailscaleTailnet is ``Ready`` (its reason says why not: AuthFailed,
               CredentialsNotFound, Unreachable, RateLimited, ...)
objects        each object is ``Accepted``, and an owner's ``AuthKeysReady`` and
               ``TailscaleServiceReady`` are not False
proxies        each proxy replica's pod exists and is Ready, its state Secret records a device
               (it joined the tailnet), and the tailnet's facts list that device online
envoys         each proxy pod's Envoy is connected to an operator replica and holds its group's
               current snapshot (the replicas' xDS reports); an owner's ``Programmed`` when it is
               ``Invalid`` or says more than the reports do
clock          this machine's clock against the API server's ``Date`` (skew beyond
               :attr:`DoctorOptions.max_clock_skew` fails: tokens, Lease times and certificates
               all compare clocks)
=============  =================================================================================
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tsgw import api
from tsgw.cli._cluster import LEASE_NAME, ClusterFacts
from tsgw.cli._clusterview import OWNING_KINDS, cluster_status, conditions

__all__ = ["CHECKS", "DoctorOptions", "Finding", "Level", "diagnose", "exit_code", "format_finding"]


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor's answer."""

    check: str
    level: Level
    subject: str
    """What it is about (``TailscaleTailnet/ts``, ``demo/web-tssvc-0``, ``cluster``)."""
    message: str
    fix: str = ""
    """What to do; "" for ``ok``."""


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """Thresholds of the checks."""

    max_clock_skew: float = 5.0
    """Seconds of difference with the API server's clock beyond which ``clock`` fails (the
    ``Date`` header has one-second resolution). Default 5."""


def _ref(obj: Mapping[str, Any]) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{ns}/{md.get('name')}" if ns else f"{obj.get('kind')}/{md.get('name')}"


def _time(text: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def check_access(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    if not facts.unread:
        return [Finding("access", Level.OK, "cluster", "every read succeeded")]
    return [
        Finding(
            "access",
            Level.WARN,
            "cluster",
            f"could not read {u}",
            "give your user get/list on it (the other checks are blind to it)",
        )
        for u in facts.unread
    ]


def check_crds(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    out: list[Finding] = []
    for want in api.crds():
        name = want["metadata"]["name"]
        have = facts.crds.get(name)
        apply = "apply this version's CRDs: tsgw crds | kubectl apply --server-side -f -"
        if have is None:
            out.append(Finding("crds", Level.FAIL, name, "CRD not installed", apply))
            continue
        versions = {v.get("name"): v for v in (have.get("spec") or {}).get("versions") or []}
        wanted = want["spec"]["versions"][0]
        got = versions.get(wanted["name"])
        if got is None or not got.get("served"):
            out.append(Finding("crds", Level.FAIL, name, f"version {wanted['name']} not served", apply))
        elif got.get("schema") != wanted.get("schema"):
            out.append(
                Finding(
                    "crds",
                    Level.WARN,
                    name,
                    f"the {wanted['name']} schema differs from this tsgw's (an older or newer install)",
                    apply + " (or use the tsgw matching the install)",
                )
            )
    if not out:
        out.append(
            Finding("crds", Level.OK, "cluster", f"{len(facts.crds)} CRDs, as this tsgw generates them")
        )
    return out


def check_operator(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    ns = facts.namespace
    out: list[Finding] = []
    doc = cluster_status(facts)["operator"]
    if not doc["replicas"]:
        out.append(
            Finding(
                "operator",
                Level.FAIL,
                f"namespace {ns}",
                "no operator pod (label app.kubernetes.io/name=tsgw)",
                "install it (docs/install.md) or pass the namespace it runs in: tsgw doctor --namespace NS",
            )
        )
    for r in doc["replicas"]:
        if not r["ready"]:
            out.append(
                Finding(
                    "operator",
                    Level.FAIL,
                    f"{ns}/{r['pod']}",
                    "operator pod not Ready",
                    f"kubectl -n {ns} describe pod {r['pod']}; kubectl -n {ns} logs {r['pod']}",
                )
            )
    spec = (facts.lease or {}).get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    now = facts.server_time if facts.server_time is not None else facts.local_time
    renewed = _time(spec.get("renewTime"))
    duration = float(spec.get("leaseDurationSeconds") or 0)
    if not holder:
        out.append(
            Finding(
                "operator",
                Level.FAIL,
                f"Lease {ns}/{LEASE_NAME}",
                "no replica holds the Lease: nothing is reconciled",
                f"kubectl -n {ns} logs -l app.kubernetes.io/name=tsgw | grep -i lease",
            )
        )
    elif renewed is not None and duration and renewed + duration < now:
        out.append(
            Finding(
                "operator",
                Level.FAIL,
                f"Lease {ns}/{LEASE_NAME}",
                f"held by {holder} but not renewed for {now - renewed:.0f} s (lease {duration:.0f} s)",
                f"is {holder} running? kubectl -n {ns} get pods; its logs say why it cannot renew",
            )
        )
    if not out:
        out.append(
            Finding(
                "operator",
                Level.OK,
                f"namespace {ns}",
                f"{len(doc['replicas'])} replica(s) Ready, leader {holder}",
            )
        )
    return out


_CREDENTIAL_FIXES = {
    "CredentialsNotFound": "create the Secret spec.credentials.secretRef names, with the keys it lists "
    "(docs/install.md, step 1)",
    "AuthFailed": "the tailnet's API refused the credentials: write a valid OAuth client or API key "
    "into the Secret spec.credentials.secretRef names (docs/install.md, step 1)",
    "RateLimited": "give tsgw its own OAuth client, or raise --tailnet-poll-interval; it retries by itself",
    "Unreachable": "check spec.controlPlane.apiURL and that the operator pods can reach it",
}


def check_credentials(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    out: list[Finding] = []
    tailnets = [o for o in facts.objects if o.get("kind") == "TailscaleTailnet"]
    for tn in tailnets:
        ready = conditions(tn).get("Ready")
        if ready is None:
            out.append(
                Finding(
                    "credentials",
                    Level.WARN,
                    _ref(tn),
                    "no Ready condition yet",
                    "the leader has not read it: see the operator check",
                )
            )
        elif ready.get("status") != "True":
            reason = str(ready.get("reason") or "")
            secret = ((tn.get("spec") or {}).get("credentials") or {}).get("secretRef") or {}
            where = f" (Secret {secret.get('namespace')}/{secret.get('name')})" if secret else ""
            out.append(
                Finding(
                    "credentials",
                    Level.WARN if reason == "RateLimited" else Level.FAIL,
                    _ref(tn),
                    f"Ready=False {reason}: {ready.get('message') or ''}".rstrip(": "),
                    _CREDENTIAL_FIXES.get(reason, "see the message; the leader's logs have more") + where,
                )
            )
    owners = [o for o in facts.objects if o.get("kind") in OWNING_KINDS]
    known = {t["metadata"]["name"] for t in tailnets}
    for o in owners:
        ref = str(((o.get("spec") or {}).get("tailnetRef") or {}).get("name") or "")
        if ref and ref not in known:
            out.append(
                Finding(
                    "credentials",
                    Level.FAIL,
                    _ref(o),
                    f"names TailscaleTailnet {ref}, which does not exist",
                    "create it (docs/install.md) or fix spec.tailnetRef",
                )
            )
    if not out:
        out.append(Finding("credentials", Level.OK, "cluster", f"{len(tailnets)} tailnet(s) Ready"))
    return out


def check_objects(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    out: list[Finding] = []
    for o in facts.objects:
        conds = conditions(o)
        for ctype in ("Accepted", "ResolvedRefs", "AuthKeysReady", "TailscaleServiceReady"):
            c = conds.get(ctype)
            if c is None or c.get("status") != "False":
                continue
            fix = {
                "Accepted": "fix the object's spec as the message says",
                "ResolvedRefs": "create what it refers to, or fix the reference",
                "AuthKeysReady": "see the tailnet's Ready condition (credentials check) and the Events",
                "TailscaleServiceReady": "the Tailscale Service is held by someone else or conflicts: "
                "see the message; rename spec.serviceName or release it",
            }[ctype]
            out.append(
                Finding(
                    "objects",
                    Level.FAIL,
                    _ref(o),
                    f"{ctype}=False {c.get('reason')}: {c.get('message') or ''}".rstrip(": "),
                    fix,
                )
            )
    if not out:
        out.append(Finding("objects", Level.OK, "cluster", f"{len(facts.objects)} object(s) accepted"))
    return out


def _container_trouble(pod: Mapping[str, Any]) -> str:
    parts = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("ready"):
            continue
        state = cs.get("state") or {}
        why = next((str(v.get("reason") or k) for k, v in state.items() if isinstance(v, dict)), "")
        parts.append(f"{cs.get('name')} not ready ({why})" if why else f"{cs.get('name')} not ready")
    return "; ".join(parts)


def check_proxies(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    out: list[Finding] = []
    pods = {(p["metadata"].get("namespace"), p["metadata"]["name"]): p for p in facts.pods}
    by_ref = _conditions_by_ref(facts)
    total = 0
    for tn in cluster_status(facts)["tailnets"]:
        have_facts = tn["name"] in facts.tailnet_facts
        for g in tn["groups"]:
            accepted = (by_ref.get(g["owner"]) or {}).get("Accepted") or {}
            if not g["group"]:
                if accepted.get("status") == "True":
                    out.append(
                        Finding(
                            "proxies",
                            Level.WARN,
                            g["owner"],
                            "no proxy StatefulSet yet",
                            "the leader creates it: see the operator check and the object's Events",
                        )
                    )
                continue
            for p in g["proxies"]:
                total += 1
                subject = f"{g['namespace']}/{p['pod']}"
                pod = pods.get((g["namespace"], p["pod"]))
                if pod is None:
                    out.append(
                        Finding(
                            "proxies",
                            Level.FAIL,
                            subject,
                            "proxy pod missing",
                            f"kubectl -n {g['namespace']} describe statefulset {g['group']} (scheduling?)",
                        )
                    )
                    continue
                if not p["ready"]:
                    trouble = _container_trouble(pod) or f"phase {p['phase']}"
                    out.append(
                        Finding(
                            "proxies",
                            Level.FAIL,
                            subject,
                            f"proxy pod not Ready: {trouble}",
                            f"kubectl -n {g['namespace']} describe pod {p['pod']}; "
                            f"kubectl -n {g['namespace']} logs {p['pod']} -c tailscale (or -c envoy)",
                        )
                    )
                if not p["device"]:
                    out.append(
                        Finding(
                            "proxies",
                            Level.FAIL,
                            subject,
                            "has not joined the tailnet (no device in its state Secret)",
                            f"the owner's AuthKeysReady condition; "
                            f"kubectl -n {g['namespace']} logs {p['pod']} -c tailscale",
                        )
                    )
                elif p["online"] is False:
                    out.append(
                        Finding(
                            "proxies",
                            Level.FAIL,
                            subject,
                            f"device {p['device']} is offline on the tailnet",
                            f"is the pod running? kubectl -n {g['namespace']} logs {p['pod']} -c tailscale "
                            "(control plane or DERP unreachable)",
                        )
                    )
                elif p["online"] is None and have_facts:
                    out.append(
                        Finding(
                            "proxies",
                            Level.WARN,
                            subject,
                            f"device {p['device']} is not in the tailnet's device list",
                            "deleted on the tailnet? The leader re-issues a key once the pod restarts; "
                            "facts refresh every --tailnet-poll-interval",
                        )
                    )
    if not out:
        out.append(Finding("proxies", Level.OK, "cluster", f"{total} proxy replica(s) Ready and online"))
    return out


def _conditions_by_ref(facts: ClusterFacts) -> dict[str, dict[str, Mapping[str, Any]]]:
    """Each object's conditions by ``Kind/namespace/name``."""
    return {_ref(o): conditions(o) for o in facts.objects}


def check_envoys(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    out: list[Finding] = []
    pods = {(p["metadata"].get("namespace"), p["metadata"]["name"]): p for p in facts.pods}
    total = 0
    for tn in cluster_status(facts)["tailnets"]:
        for g in tn["groups"]:
            per_envoy = 0
            for p in g["proxies"]:
                pod = pods.get((g["namespace"], p["pod"]))
                if pod is None:
                    continue  # the proxies check names it
                total += 1
                subject = f"{g['namespace']}/{p['pod']}"
                if p["envoy"] == "DISCONNECTED" and facts.xds_reports:
                    per_envoy += 1
                    out.append(
                        Finding(
                            "envoys",
                            Level.FAIL,
                            subject,
                            "its Envoy is connected to no operator replica",
                            f"kubectl -n {g['namespace']} logs {p['pod']} -c envoy; the Service tsgw in "
                            f"{facts.namespace} needs Ready endpoints and proxies must reach its port 18000",
                        )
                    )
                elif p["envoy"] == "NACKED":
                    per_envoy += 1
                    out.append(
                        Finding(
                            "envoys",
                            Level.FAIL,
                            subject,
                            f"Envoy rejected {p['nack']}",
                            f"fix or revert {g['owner']}: it keeps serving its last good configuration",
                        )
                    )
            prog = g["programmed"]
            if prog["status"] == "True" or not g["group"]:
                continue
            if prog["reason"] == "Invalid" or (prog["reason"] in ("Rejected", "NoProxies") and not per_envoy):
                out.append(
                    Finding(
                        "envoys",
                        Level.FAIL,
                        g["owner"],
                        f"Programmed=False {prog['reason']}: {prog['message']}",
                        "Invalid is tsgw's bug: report it with `tsgw snapshot dump`"
                        if prog["reason"] == "Invalid"
                        else f"fix or revert {g['owner']}"
                        if prog["reason"] == "Rejected"
                        else "see the proxies check: are its pods running?",
                    )
                )
            elif prog["reason"] == "Pending":
                out.append(
                    Finding(
                        "envoys",
                        Level.WARN,
                        g["owner"],
                        f"Programmed=False Pending: {prog['message']}",
                        "wait; it passes by itself",
                    )
                )
    if not facts.xds_reports and total:
        out.append(
            Finding(
                "envoys",
                Level.WARN,
                f"namespace {facts.namespace}",
                "no operator replica's xDS report (ConfigMaps tsgw-xds-*)",
                "per-Envoy state unknown: is the operator running, and may you read its ConfigMaps?",
            )
        )
    if not out:
        out.append(
            Finding("envoys", Level.OK, "cluster", f"{total} Envoy(s) connected and holding their snapshot")
        )
    return out


def check_clock(facts: ClusterFacts, options: DoctorOptions) -> list[Finding]:
    if facts.server_time is None:
        return [
            Finding(
                "clock",
                Level.WARN,
                "cluster",
                "the API server's clock could not be read",
                "see the access check",
            )
        ]
    skew = facts.local_time - facts.server_time
    if abs(skew) > options.max_clock_skew:
        return [
            Finding(
                "clock",
                Level.FAIL,
                "this machine",
                f"clock {'ahead of' if skew > 0 else 'behind'} the API server's by {abs(skew):.0f} s",
                "synchronise clocks (NTP) on this machine and the cluster's nodes",
            )
        ]
    return [
        Finding(
            "clock",
            Level.OK,
            "this machine",
            f"within {options.max_clock_skew:.0f} s of the API server's clock",
        )
    ]


CHECKS: tuple[tuple[str, Callable[[ClusterFacts, DoctorOptions], list[Finding]]], ...] = (
    ("access", check_access),
    ("crds", check_crds),
    ("operator", check_operator),
    ("credentials", check_credentials),
    ("objects", check_objects),
    ("proxies", check_proxies),
    ("envoys", check_envoys),
    ("clock", check_clock),
)
"""Every check, in the order they print."""


def diagnose(facts: ClusterFacts, options: DoctorOptions | None = None) -> list[Finding]:
    """Every check's findings, in :data:`CHECKS` order."""
    opts = options or DoctorOptions()
    return [f for _, check in CHECKS for f in check(facts, opts)]


def exit_code(findings: list[Finding]) -> int:
    """1 when any finding fails, else 0."""
    return 1 if any(f.level is Level.FAIL for f in findings) else 0


def format_finding(f: Finding) -> str:
    """One line: ``LEVEL check subject: message [-> fix]``."""
    line = f"{f.level.value.upper():<4} {f.check:<11} {f.subject}: {f.message}"
    return f"{line} -> {f.fix}" if f.fix else line
