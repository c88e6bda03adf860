"""A crafted reading of a healthy install (one tailnet, one TailscaleServices with two proxy
replicas), and the ways to break it, for the status view's and the doctor's unit tests."""

from __future__ import annotations

import base64
import copy
import dataclasses
from typing import Any

from tsgw import api
from tsgw.cli._cluster import ClusterFacts, Device
from tsgw.xds import Nack, NodeSync, Sync

NOW = 1_800_000_000.0
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"


def _cond(
    type_: str, ok: bool, reason: str, message: str = "", when: str = "2026-12-05T06:00:00Z"
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
    }


def tailnet(ready: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": "TailscaleTailnet",
        "metadata": {"name": "ts"},
        "spec": {
            "credentials": {"secretRef": {"namespace": "tsgw-system", "name": "ts-creds"}, "apiKey": {}}
        },
        "status": {
            "conditions": [ready or _cond("Ready", True, "Ready", "2 devices")],
            "magicDNSSuffix": "tail1234.ts.net",
        },
    }


def web(programmed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": "TailscaleServices",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"tailnetRef": {"name": "ts"}, "ports": [{"port": 80}], "backends": [{"name": "web"}]},
        "status": {
            "conditions": [
                _cond("Accepted", True, "Accepted"),
                programmed or _cond("Programmed", True, "Programmed", "2 Envoy(s) hold v3"),
                _cond("AuthKeysReady", True, "Minted"),
                _cond("TailscaleServiceReady", True, "Claimed"),
            ],
            "serviceName": "svc:web",
            "hostingReplicas": 2,
        },
    }


def _labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tsgw-proxy",
        "app.kubernetes.io/instance": "web-tssvc",
        "gateway.tailscale.com/owner-kind": "TailscaleServices",
        "gateway.tailscale.com/owner-name": "web",
        "gateway.tailscale.com/tailnet": "ts",
    }


def pod(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "demo", "labels": _labels()},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": "tailscale", "ready": True, "state": {"running": {}}},
                {
                    "name": "envoy",
                    "ready": ready,
                    "state": {"running": {}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        },
    }


def healthy() -> ClusterFacts:
    crds = {c["metadata"]["name"]: copy.deepcopy(c) for c in api.crds()}
    for c in crds.values():
        c["spec"]["versions"][0]["served"] = True
    return ClusterFacts(
        namespace="tsgw-system",
        crds=crds,
        objects=(tailnet(), web()),
        statefulsets=(
            {
                "kind": "StatefulSet",
                "metadata": {"name": "web-tssvc", "namespace": "demo", "labels": _labels()},
                "spec": {"replicas": 2},
                "status": {"readyReplicas": 2},
            },
        ),
        pods=(pod("web-tssvc-0"), pod("web-tssvc-1")),
        devices={
            ("demo", "web-tssvc-0"): Device("n0", "web-tssvc-0.tail1234.ts.net", ("100.64.0.1",)),
            ("demo", "web-tssvc-1"): Device("n1", "web-tssvc-1.tail1234.ts.net", ("100.64.0.2",)),
        },
        tailnet_facts={
            "ts": {
                "v": 1,
                "suffix": "tail1234.ts.net",
                "devices": [
                    ["web-tssvc-0.tail1234.ts.net", ["100.64.0.1"], ["tag:k8s"], "", 1],
                    ["web-tssvc-1.tail1234.ts.net", ["100.64.0.2"], ["tag:k8s"], "", 1],
                ],
                "services": {"svc:web": ["100.100.1.1"]},
                "claims": {"svc:web": ["TailscaleServices/demo/web"]},
            }
        },
        xds_reports={
            "tsgw-abc": {
                "web-tssvc.demo": (
                    "f1",
                    (NodeSync(0, "web-tssvc-0", Sync.SYNCED), NodeSync(0, "web-tssvc-1", Sync.SYNCED)),
                )
            }
        },
        operator_pods=(
            {
                "kind": "Pod",
                "metadata": {"name": "tsgw-abc", "namespace": "tsgw-system"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
        ),
        lease={
            "spec": {
                "holderIdentity": "tsgw-abc",
                "leaseDurationSeconds": 15,
                "renewTime": "2027-01-15T08:00:00.000000Z",
            }
        },
        server_time=NOW,
        local_time=NOW + 0.4,
    )


def wrong_credentials(f: ClusterFacts) -> ClusterFacts:
    bad = tailnet(_cond("Ready", False, "AuthFailed", "401 Unauthorized: API key invalid"))
    return dataclasses.replace(f, objects=(bad, *f.objects[1:]))


def stopped_proxy(f: ClusterFacts) -> ClusterFacts:
    """web-tssvc-1's pod gone (its StatefulSet would bring it back; here it stays gone), its
    device offline, its Envoy disconnected."""
    facts = copy.deepcopy(dict(f.tailnet_facts))
    facts["ts"]["devices"][1][4] = 0
    reports = {"tsgw-abc": {"web-tssvc.demo": ("f1", (NodeSync(0, "web-tssvc-0", Sync.SYNCED),))}}
    return dataclasses.replace(f, pods=f.pods[:1], tailnet_facts=facts, xds_reports=reports)


def nacked(f: ClusterFacts) -> ClusterFacts:
    n = NodeSync(0, "web-tssvc-1", Sync.REJECTED, Nack("v4", "cannot bind '0.0.0.0:80': Address in use"), LDS)
    reports = {"tsgw-abc": {"web-tssvc.demo": ("f1", (NodeSync(0, "web-tssvc-0", Sync.SYNCED), n))}}
    msg = "Envoy 'web-tssvc-1' rejected lds version v4 of v4: cannot bind"
    return dataclasses.replace(
        f, objects=(f.objects[0], web(_cond("Programmed", False, "Rejected", msg))), xds_reports=reports
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
