"""`tsgw status --cluster` and `tsgw doctor` against a real kube-apiserver, on crafted objects
written as the operator writes them (status subresources, state Secrets, the tailnet's facts
ConfigMap, a replica's xDS report, the Lease), run as the `tsgw` command a person runs.

No operator and no kubelet run here: the point is what the commands read and say, through the
real API (its RBAC-free admin access, its stored CRDs, its Date header). The session's API
server is shared with other tests, so assertions look at this test's own namespaces, tailnet and
objects only. The live install is the bed's test (tests/e2e/bed/test_observability.py).
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest
import yaml

from tests.integration.operator.test_operator_on_apiserver import (
    KINDS,
    STATEFULSETS,
    _install_crds,
    _namespace,
)
from tests.support.controlplane import ControlPlane
from tsgw.api import API_VERSION
from tsgw.kube import CONFIGMAPS, LEASES, SECRETS, Client, Resource

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PODS = Resource("v1", "Pod", "pods")
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[Client]:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as c:
        await _install_crds(c)
        yield c


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cond(type_: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now()[:19] + "Z",
        "observedGeneration": 1,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Install:
    """One crafted install: operator namespace ``op``, tailnet ``tn``, TailscaleServices
    ``web`` in ``app`` with two proxy replicas (pods, state Secrets with devices)."""

    def __init__(self, client: Client, op: str, app: str, tn: str) -> None:
        self.client, self.op, self.app, self.tn = client, op, app, tn
        self.group = "web-tssvc"
        self.labels = {
            "app.kubernetes.io/name": "tsgw-proxy",
            "app.kubernetes.io/instance": self.group,
            "gateway.tailscale.com/owner-kind": "TailscaleServices",
            "gateway.tailscale.com/owner-name": "web",
            "gateway.tailscale.com/tailnet": tn,
        }

    async def tailnet_ready(self, ok: bool, reason: str, message: str) -> None:
        obj = await self.client.get(KINDS["TailscaleTailnet"], self.tn)
        obj["status"] = {
            "conditions": [_cond("Ready", ok, reason, message)],
            "magicDNSSuffix": "tail1234.ts.net",
        }
        await self.client.replace_status(KINDS["TailscaleTailnet"], obj)

    async def programmed(self, ok: bool, reason: str, message: str) -> None:
        obj = await self.client.get(KINDS["TailscaleServices"], "web", self.app)
        obj["status"] = {
            "conditions": [
                _cond("Accepted", True, "Accepted"),
                _cond("Programmed", ok, reason, message),
                _cond("AuthKeysReady", True, "Minted", "every proxy replica has an auth key or a device"),
            ],
            "serviceName": "svc:web",
            "hostingReplicas": 2,
        }
        await self.client.replace_status(KINDS["TailscaleServices"], obj)

    async def report(self, envoys: list[list[str]]) -> None:
        doc = {"v": 1, "groups": {f"{self.group}.{self.app}": ["fp", envoys]}}
        await self.client.apply(
            CONFIGMAPS,
            {
                "metadata": {
                    "name": "tsgw-xds-tsgw-0",
                    "namespace": self.op,
                    "labels": {
                        "app.kubernetes.io/managed-by": "tsgw",
                        "gateway.tailscale.com/xds-report": "tsgw-0",
                    },
                },
                "data": {"report.json": orjson.dumps(doc).decode()},
            },
            field_manager="tsgw",
        )

    async def facts(self, online: list[int]) -> None:
        doc = {
            "v": 1,
            "suffix": "tail1234.ts.net",
            "devices": [
                [f"{self.group}-{i}.tail1234.ts.net", [f"100.64.0.{i + 1}"], ["tag:k8s"], "", on]
                for i, on in enumerate(online)
            ],
            "services": {"svc:web": ["100.100.1.1"]},
            "claims": {"svc:web": [f"TailscaleServices/{self.app}/web"]},
        }
        await self.client.apply(
            CONFIGMAPS,
            {
                "metadata": {
                    "name": f"tsgw-tailnet-{self.tn}",
                    "namespace": self.op,
                    "labels": {
                        "app.kubernetes.io/managed-by": "tsgw",
                        "gateway.tailscale.com/tailnet": self.tn,
                    },
                },
                "data": {"facts.json": orjson.dumps(doc).decode()},
            },
            field_manager="tsgw",
        )

    async def pod(self, name: str, namespace: str, labels: dict[str, str], ready: bool) -> None:
        await self.client.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"name": "envoy", "image": "envoy"}]},
            },
        )
        live = await self.client.get(PODS, name, namespace)
        live["status"] = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": "envoy",
                    "ready": ready,
                    "restartCount": 0,
                    "image": "envoy",
                    "imageID": "",
                    "state": {"running": {"startedAt": _now()[:19] + "Z"}},
                }
            ],
        }
        await self.client.replace_status(PODS, live)

    async def renew(self) -> None:
        """The leader renews its Lease every few seconds; the crafted one is renewed before each
        doctor run (``tsgw`` starting takes seconds on a loaded machine)."""
        lease = await self.client.get(LEASES, "tsgw-operator", self.op)
        lease["spec"]["renewTime"] = _now()
        lease["spec"]["leaseDurationSeconds"] = 60
        await self.client.replace(LEASES, lease)

    async def create(self) -> None:
        c = self.client
        await c.create(
            KINDS["TailscaleTailnet"],
            {
                "apiVersion": API_VERSION,
                "kind": "TailscaleTailnet",
                "metadata": {"name": self.tn},
                "spec": {
                    "controlPlane": {"type": "Headscale", "apiURL": "http://127.0.0.1:1"},
                    "credentials": {"secretRef": {"namespace": self.op, "name": "creds"}, "apiKey": {}},
                },
            },
        )
        await self.tailnet_ready(True, "Ready", "2 devices")
        await c.create(
            KINDS["TailscaleServices"],
            {
                "apiVersion": API_VERSION,
                "kind": "TailscaleServices",
                "metadata": {"name": "web", "namespace": self.app},
                "spec": {
                    "tailnetRef": {"name": self.tn},
                    "ports": [{"port": 80, "protocol": "HTTP"}],
                    "backends": [{"service": "web"}],
                },
            },
        )
        await self.programmed(True, "Programmed", "2 Envoy(s) hold its configuration")
        await c.create(
            STATEFULSETS,
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": self.group, "namespace": self.app, "labels": self.labels},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app.kubernetes.io/instance": self.group}},
                    "template": {
                        "metadata": {"labels": self.labels},
                        "spec": {"containers": [{"name": "envoy", "image": "envoy"}]},
                    },
                },
            },
        )
        for i in range(2):
            pod = f"{self.group}-{i}"
            await self.pod(pod, self.app, self.labels, ready=True)
            await c.create(
                SECRETS,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": pod, "namespace": self.app, "labels": self.labels},
                    "data": {
                        "device_id": _b64(f"node{i}"),
                        "device_fqdn": _b64(f"{pod}.tail1234.ts.net."),
                        "device_ips": _b64(f'["100.64.0.{i + 1}"]'),
                        "_machinekey": _b64("privkey:not-for-the-cli"),
                    },
                },
            )
        await self.facts([1, 1])
        await self.report(
            [[f"{self.group}-0", "SYNCED", "", "", ""], [f"{self.group}-1", "SYNCED", "", "", ""]]
        )
        await self.pod("tsgw-0", self.op, {"app.kubernetes.io/name": "tsgw"}, ready=True)
        await c.create(
            LEASES,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "tsgw-operator", "namespace": self.op},
                "spec": {"holderIdentity": "tsgw-0", "leaseDurationSeconds": 15, "renewTime": _now()},
            },
        )


async def _tsgw(control_plane: ControlPlane, *args: str) -> tuple[int, str]:
    """The `tsgw` command, as a person runs it (its own process: it runs its own event loop)."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "tsgw", *args, "--kubeconfig", str(control_plane.kubeconfig)], check=False
        )
    assert not done.stderr, done.stderr.decode()
    return done.returncode, done.stdout.decode()


def _mine(findings: list[dict[str, Any]], inst: Install) -> list[tuple[str, str, str]]:
    """Findings about this test's objects, plus the cluster-wide ones (CRDs, clock)."""
    keep = (f"/{inst.app}/", f"{inst.app}/", f"/{inst.tn}", inst.op, "this machine")
    return [
        (f["check"], f["level"], f["subject"])
        for f in findings
        if f["level"] != "ok" and (f["check"] in ("crds", "clock") or any(k in f["subject"] for k in keep))
    ]


async def test_status_and_doctor_on_a_healthy_install_then_wrong_credentials_a_stopped_proxy_and_a_nack(
    client: Client, control_plane: ControlPlane
) -> None:
    op, app = await _namespace(client, "tsgw"), await _namespace(client, "app")
    inst = Install(client, op, app, f"tn-{uuid.uuid4().hex[:6]}")
    await inst.create()

    code, out = await _tsgw(control_plane, "status", "--cluster", "--namespace", op, "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["operator"] == {"leader": "tsgw-0", "replicas": [{"pod": "tsgw-0", "ready": True}]}
    [tn] = [t for t in doc["tailnets"] if t["name"] == inst.tn]
    assert tn["ready"]["status"] == "True"
    [g] = tn["groups"]
    assert (g["owner"], g["group"], g["service"]) == (f"TailscaleServices/{app}/web", "web-tssvc", "svc:web")
    assert [(p["pod"], p["ready"], p["device"], p["online"], p["envoy"]) for p in g["proxies"]] == [
        ("web-tssvc-0", True, "web-tssvc-0.tail1234.ts.net", True, "SYNCED"),
        ("web-tssvc-1", True, "web-tssvc-1.tail1234.ts.net", True, "SYNCED"),
    ]
    assert "privkey" not in out
    assert tn["services"] == [
        {"name": "svc:web", "addresses": ["100.100.1.1"], "claimedBy": [f"TailscaleServices/{app}/web"]}
    ]
    code, table = await _tsgw(control_plane, "status", "--cluster", "--namespace", op)
    assert f"tailnet {inst.tn}: Ready=True" in table
    assert f"{app}/web-tssvc-1" in table

    # The real API server stores the CRDs as tsgw generates them, and its clock is this one.
    await inst.renew()
    code, out = await _tsgw(control_plane, "doctor", "--namespace", op, "-o", "json")
    assert _mine(json.loads(out), inst) == []

    # Wrong credentials, and a proxy stopped: its pod gone, its device offline, its Envoy gone.
    await inst.tailnet_ready(False, "AuthFailed", "Headscale answered 401: invalid API key")
    await client.delete(PODS, "web-tssvc-1", app)
    await inst.facts([1, 0])
    await inst.report([["web-tssvc-0", "SYNCED", "", "", ""]])
    await inst.renew()
    code, out = await _tsgw(control_plane, "doctor", "--namespace", op, "-o", "json")
    assert code == 1
    findings = json.loads(out)
    assert _mine(findings, inst) == [
        ("credentials", "fail", f"TailscaleTailnet/{inst.tn}"),
        ("proxies", "fail", f"{app}/web-tssvc-1"),
    ]
    cred = next(f for f in findings if f["subject"] == f"TailscaleTailnet/{inst.tn}")
    assert "AuthFailed: Headscale answered 401" in cred["message"]
    assert f"Secret {op}/creds" in cred["fix"]
    await inst.renew()
    code, text = await _tsgw(control_plane, "doctor", "--namespace", op)
    assert f"FAIL credentials TailscaleTailnet/{inst.tn}: Ready=False AuthFailed" in text
    assert f"FAIL proxies     {app}/web-tssvc-1: proxy pod missing ->" in text

    # Back up, but its Envoy NACKs the listener.
    await inst.tailnet_ready(True, "Ready", "2 devices")
    await inst.pod("web-tssvc-1", app, inst.labels, ready=True)
    await inst.facts([1, 1])
    await inst.report(
        [
            ["web-tssvc-0", "SYNCED", "", "", ""],
            ["web-tssvc-1", "REJECTED", LDS, "v2", "cannot bind '0.0.0.0:80'"],
        ]
    )
    await inst.programmed(False, "Rejected", "Envoy 'web-tssvc-1' rejected lds version v2 of v2: cannot bind")
    await inst.renew()
    code, out = await _tsgw(control_plane, "doctor", "--namespace", op, "-o", "json")
    assert code == 1
    findings = json.loads(out)
    assert _mine(findings, inst) == [("envoys", "fail", f"{app}/web-tssvc-1")]
    [nack] = [f for f in findings if f["subject"] == f"{app}/web-tssvc-1"]
    assert nack["message"] == "Envoy rejected lds version v2: cannot bind '0.0.0.0:80'"
    code, out = await _tsgw(control_plane, "status", "--cluster", "--namespace", op, "-o", "yaml")
    doc = yaml.safe_load(out)
    [tn] = [t for t in doc["tailnets"] if t["name"] == inst.tn]
    assert [p["envoy"] for p in tn["groups"][0]["proxies"]] == ["SYNCED", "NACKED"]
    assert tn["groups"][0]["lastError"].startswith("Programmed Rejected: Envoy 'web-tssvc-1'")


async def test_doctor_without_an_install_says_what_is_missing(
    client: Client, control_plane: ControlPlane
) -> None:
    op = await _namespace(client, "empty")
    code, out = await _tsgw(control_plane, "doctor", "--namespace", op, "-o", "json")
    assert code == 1
    subjects = {(f["check"], f["level"], f["subject"]) for f in json.loads(out)}
    assert ("operator", "fail", f"namespace {op}") in subjects
    assert ("operator", "fail", f"Lease {op}/tsgw-operator") in subjects
