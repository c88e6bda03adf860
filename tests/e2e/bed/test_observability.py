"""Observability of a running install, on the test bed: tsgw installed as a user installs it
(the Headscale overlay, the bed's proxy settings), an egress TailscaleEndpoints whose two proxy
replicas join the bed's Headscale, and the real Prometheus (Debian's, `just testbin`) run in
node 0's network namespace, which routes to every pod, with the monitoring component's scrape
jobs and rules.

Debian's Prometheus has no Kubernetes discovery, so its targets are what Kubernetes discovery
would give it, read from the bed's API: one target per EndpointSlice endpoint and port of every
Service in tsgw-system (``role: endpoints``) and one per container port of every pod
(``role: pod``), each with the ``__meta_kubernetes_*`` labels discovery sets, so the shipped
relabelling is what keeps the operator's metrics port and the proxies' Envoy stats port and
drops the rest (tests/support/prometheus.py, ``as_file_sd``).

Checked, in order:

- Prometheus scrapes both operator replicas and both proxies' Envoys, and nothing else.
- `tsgw status --cluster` and `tsgw doctor` on the healthy install: both replicas' devices,
  online, each Envoy SYNCED; no doctor finding fails.
- A NACK, injected for real: a program in one proxy pod's network namespace holds the port the
  next listener needs, and the object gains a port (the StatefulSet's rollout held by a
  partition, so the pod stays); that Envoy rejects the listener. The
  `TsgwXdsConfigRejected` alert fires in Prometheus (the shipped rules with each ``for``
  shortened to 2 s), `tsgw status --cluster` shows the Envoy NACKED with Envoy's reason and
  `tsgw doctor` names it.
- Every query of deploy/grafana/tsgw.json (both rows) returns at least one series.
- Wrong credentials (a bad API key written into the tailnet's Secret) and a stopped proxy (its
  processes SIGSTOPped: its pod turns not Ready): `tsgw doctor` exits 1 naming exactly those two,
  and `TsgwTailnetAPIFailing` fires once most of the window's requests were refused.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bed import Bed
from tests.e2e.bed.helpers import headscale_overlay, pod_processes, pods, ready, uninstall, wait
from tests.support.install import OPERATOR_SELECTOR, install_on_bed
from tests.support.prometheus import Prometheus, as_file_sd

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "kustomize" / "components" / "monitoring"
DASHBOARD = ROOT / "deploy" / "grafana" / "tsgw.json"
NS = "tsgw-system"
APPS = "default"
GROUP = "obs-tsep"
NODE_CLUSTER = f"{GROUP}.{APPS}"
PROXIES = f"app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance={GROUP}"
META = "__meta_kubernetes_"
SECOND_LISTENER = 10001  # translate.Options().first_listener_port + 1: the second port's listener


@pytest.fixture(scope="module")
def installed(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tree, overlay = headscale_overlay(bed, tmp_path_factory.mktemp("obs-install"), "bed-obs")
    install_on_bed(bed, tree, overlay)
    yield overlay
    uninstall(bed, overlay, ("tailscaleendpoints", "tailscaleservices"))


def _endpoints(address: str, ports: list[int]) -> str:
    listed = ", ".join(f"{{port: {p}, protocol: {'HTTP' if p == 8080 else 'TCP'}}}" for p in ports)
    return textwrap.dedent(
        f"""
        apiVersion: gateway.tailscale.com/v1alpha1
        kind: TailscaleEndpoints
        metadata: {{name: obs, namespace: {APPS}}}
        spec:
          tailnetRef: {{name: headscale}}
          proxy: {{replicas: 2}}
          targets:
            - name: device
              address: "{address}"
              ports: [{listed}]
        """
    )


def _api_key_secret(value: str) -> dict[str, Any]:
    """The tailnet's credentials Secret with ``value`` (base64) as its API key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "headscale-api-key", "namespace": NS},
        "type": "Opaque",
        "data": {"api_key": value},
    }


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def discovered_targets(bed: Bed) -> dict[str, list[dict[str, Any]]]:
    """What Kubernetes discovery would give each shipped job, from the bed's live objects:
    ``role: endpoints`` (in tsgw-system) one target per EndpointSlice endpoint and port, ``role:
    pod`` one per container port of every pod."""
    endpoints = []
    for s in bed.get("endpointslices", "-n", NS)["items"]:
        service = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name", "")
        for port in s.get("ports") or []:
            for e in s.get("endpoints") or []:
                for address in e["addresses"]:
                    endpoints.append(
                        {
                            "targets": [f"{address}:{port['port']}"],
                            "labels": {
                                f"{META}namespace": NS,
                                f"{META}service_name": service,
                                f"{META}endpoint_port_name": port.get("name") or "",
                                f"{META}pod_name": (e.get("targetRef") or {}).get("name", ""),
                            },
                        }
                    )
    by_pod = []
    for p in bed.get("pods", "-A")["items"]:
        ip = (p.get("status") or {}).get("podIP")
        if not ip:
            continue
        labels = {
            f"{META}pod_label_{k.replace('.', '_').replace('/', '_').replace('-', '_')}": v
            for k, v in (p["metadata"].get("labels") or {}).items()
        }
        for c in p["spec"]["containers"]:
            for port in c.get("ports") or []:
                by_pod.append(
                    {
                        "targets": [f"{ip}:{port['containerPort']}"],
                        "labels": {
                            **labels,
                            f"{META}namespace": p["metadata"]["namespace"],
                            f"{META}pod_name": p["metadata"]["name"],
                            f"{META}pod_container_name": c["name"],
                            f"{META}pod_container_port_name": port.get("name") or "",
                        },
                    }
                )
    return {"tsgw-operator": endpoints, "tsgw-proxies": by_pod}


def _rules_firing_fast() -> str:
    rules = yaml.safe_load((MONITORING / "tsgw.rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    return yaml.safe_dump(rules, sort_keys=False)


def _alert_expr(name: str) -> str:
    rules = yaml.safe_load((MONITORING / "tsgw.rules.yaml").read_text())
    (expr,) = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]
    return str(expr)


def dashboard_queries() -> list[tuple[str, str]]:
    """(title, query) of every panel of the dashboard, in rows or not."""
    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    panels += [c for p in board["panels"] if p["type"] == "row" for c in p["panels"]]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def record_dashboard(prom: Prometheus, start: float, end: float, path: Path) -> None:
    """Every panel's series over the test (1 s steps) into ``path``, for `just dashboard-pngs`
    (tools/dashboard_pngs.py draws them)."""
    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    panels += [c for p in board["panels"] if p["type"] == "row" for c in p["panels"]]
    out = []
    for p in panels:
        for t in p["targets"]:
            out.append(
                {
                    "title": p["title"],
                    "unit": ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit", ""),
                    "legend": t.get("legendFormat", ""),
                    "query": t["expr"],
                    "series": prom.query_range(t["expr"], start, end, 1.0),
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"panels": out}, sort_keys=True, separators=(",", ":")) + "\n")


def tsgw(bed: Bed, *args: str) -> tuple[int, str]:
    """The `tsgw` command against the bed's API, as a person runs it."""
    p = subprocess.run(
        [sys.executable, "-m", "tsgw", *args, "--kubeconfig", str(bed.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not p.stderr, p.stderr
    return p.returncode, p.stdout


def _failing(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["check"], f["subject"]) for f in findings if f["level"] == "fail"]


def _proxies(doc: dict[str, Any]) -> list[dict[str, Any]]:
    [tn] = [t for t in doc["tailnets"] if t["name"] == "headscale"]
    [g] = [g for g in tn["groups"] if g["group"] == GROUP]
    return list(g["proxies"])


def test_prometheus_alerts_dashboard_status_and_doctor_on_a_running_install(
    bed: Bed, installed: Path, tmp_path: Path
) -> None:
    assert bed.tailnet is not None
    device = bed.tailnet.device("obs-device", bed.tailnet.preauth_key_for())
    bed.apply(_endpoints(device.ip4(), [8080]))
    wait(
        lambda: len([p for p in pods(bed, PROXIES, APPS) if ready(p)]) == 2,
        timeout=240,
        what="both proxy replicas Ready",
        interval=1,
    )
    wait(
        lambda: (
            _condition(bed.get("tailscaleendpoints", "-n", APPS, "obs"), "Programmed").get("status") == "True"
        ),
        timeout=60,
        what="obs Programmed",
        interval=0.5,
    )

    prometheus: Prometheus | None = None
    squatter: subprocess.Popen[str] | None = None
    stopped: list[int] = []
    secret = bed.get("secret", "-n", NS, "headscale-api-key")
    try:
        config = as_file_sd(
            yaml.safe_load((MONITORING / "prometheus.yml").read_text()),
            discovered_targets(bed),
            tmp_path / "sd",
        )
        config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        prometheus = Prometheus(
            config, tmp_path / "prometheus", files={"tsgw.rules.yaml": _rules_firing_fast()}, netns=bed.node0
        )
        prom = prometheus
        started = time.time()

        # Both operator replicas and both Envoys, through the shipped relabelling; nothing else.
        operator_pods = {p["metadata"]["name"] for p in pods(bed, OPERATOR_SELECTOR, NS)}
        proxy_pods = {p["metadata"]["name"] for p in pods(bed, PROXIES, APPS)}

        def scraped() -> Any:
            active = prom.targets()["activeTargets"]
            up = {(a["labels"]["job"], a["labels"]["pod"]) for a in active if a["health"] == "up"}
            return len(up) == len(active) == 4 and up

        up = prom.wait_for("4 targets up", scraped, timeout=90)
        assert up == {("tsgw-operator", p) for p in operator_pods} | {("tsgw-proxies", p) for p in proxy_pods}
        assert {
            a["labels"]["proxy_group"]
            for a in prom.targets()["activeTargets"]
            if "proxy_group" in a["labels"]
        } == {GROUP}
        synced = f'sum(tsgw_xds_envoys{{group="{NODE_CLUSTER}",sync="synced"}}) == 2'
        prom.wait_for("both Envoys synced, summed over the replicas", lambda: prom.query(synced))

        # The healthy install, as the commands see it. Prometheus scrapes the replicas' own
        # metrics; the commands read the replicas' report ConfigMaps (written at most once a
        # second) and the facts (polled every 2 s): other views, which may trail it a little.
        healthy = [(f"{GROUP}-0", True, True, "SYNCED"), (f"{GROUP}-1", True, True, "SYNCED")]

        def status_healthy() -> list[dict[str, Any]] | None:
            code, out = tsgw(bed, "status", "--cluster", "-o", "json")
            assert code == 0, out
            proxies = _proxies(json.loads(out))
            seen = [(p["pod"], p["ready"], p["online"], p["envoy"]) for p in proxies]
            return proxies if seen == healthy else None

        proxies = wait(status_healthy, timeout=30, what=f"tsgw status --cluster showing {healthy}")
        assert all(p["device"] and p["addresses"] for p in proxies), proxies
        code, out = tsgw(bed, "doctor", "-o", "json")
        assert _failing(json.loads(out)) == [], out
        assert code == 0
        code, table = tsgw(bed, "status", "--cluster")
        print(f"\n{table}")

        # A NACK for real: the next listener's port held inside proxy 1's network namespace.
        victim = next(p for p in pods(bed, PROXIES, APPS) if p["metadata"]["name"] == f"{GROUP}-1")
        pid = pod_processes(victim)[0]
        squatter = subprocess.Popen(
            [
                "nsenter",
                f"--net=/proc/{pid}/ns/net",
                sys.executable,
                "-c",
                "import socket, sys, time\n"
                f"s = socket.socket(); s.bind(('0.0.0.0', {SECOND_LISTENER})); s.listen()\n"
                "print('held', flush=True); time.sleep(3600)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert squatter.stdout is not None
        assert squatter.stdout.readline().strip() == "held"
        # A new egress port is a new container port, so the StatefulSet would roll its pods (and
        # the squatter's namespace with them); a partition as high as the replicas holds the
        # pods on their template (a field tsgw does not apply, so it keeps it), as an operator
        # pausing a rollout would.
        hold = {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}}
        bed.kubectl("patch", "statefulset", GROUP, "-n", APPS, "--type=merge", "-p", json.dumps(hold))
        bed.apply(_endpoints(device.ip4(), [8080, 9000]))
        nack = _alert_expr("TsgwXdsConfigRejected")
        rejected = prom.wait_for(
            "the NACK expression returns the group", lambda: prom.query(nack), timeout=60
        )
        assert {r["metric"]["group"] for r in rejected} == {NODE_CLUSTER}
        (alert,) = prom.wait_for(
            "TsgwXdsConfigRejected fires",
            lambda: [
                a
                for a in prom.alerts()
                if a["labels"]["alertname"] == "TsgwXdsConfigRejected" and a["state"] == "firing"
            ],
            timeout=60,
        )
        assert alert["labels"] == {
            "alertname": "TsgwXdsConfigRejected",
            "group": NODE_CLUSTER,
            "severity": "warning",
        }
        # The dashboard's NACK panel counts it (the counter starts at 0, so increase() sees it).
        nacks = 'sum by (type) (increase(tsgw_xds_nacks_total{type="lds"}[5m]))'
        prom.wait_for(
            "the NACK panel counts it", lambda: [r for r in prom.query(nacks) if float(r["value"][1]) > 0]
        )

        def status_nacked() -> tuple[dict[str, Any], dict[str, Any]] | None:
            _, out = tsgw(bed, "status", "--cluster", "-o", "json")
            p0, p1 = _proxies(json.loads(out))
            return (p0, p1) if p1["envoy"] == "NACKED" else None

        p0, p1 = wait(status_nacked, timeout=30, what="tsgw status --cluster showing the NACK")
        assert p0["envoy"] == "SYNCED"
        assert "Address already in use" in p1["nack"], p1
        code, out = tsgw(bed, "doctor", "-o", "json")
        assert code == 1
        assert _failing(json.loads(out)) == [("envoys", f"{APPS}/{GROUP}-1")], out

        # Every dashboard query has data for this install (the NACK panels included).
        empty = [(title, q) for title, q in dashboard_queries() if not prom.query(q)]
        if empty:
            # Scrapes and rate windows fill within a few intervals: wait for the laggards once.
            prom.wait_for(
                f"series for {empty}",
                lambda: all(prom.query(q) for _, q in empty),
                timeout=60,
            )

        # Fixed: the port freed and the object back to one port; the alert's expression clears.
        squatter.kill()
        squatter.wait(timeout=10)
        squatter.stdout.close()
        squatter = None
        bed.apply(_endpoints(device.ip4(), [8080]))
        prom.wait_for("the NACK expression is empty again", lambda: not prom.query(nack), timeout=60)

        # Wrong credentials and a stopped proxy.
        bed.apply([_api_key_secret(base64.b64encode(b"not-a-headscale-key").decode())])
        wait(
            lambda: (
                _condition(bed.get("tailscaletailnet", "headscale"), "Ready").get("reason") == "AuthFailed"
            ),
            timeout=60,
            what="the tailnet AuthFailed",
            interval=0.5,
        )
        victim = next(p for p in pods(bed, PROXIES, APPS) if p["metadata"]["name"] == f"{GROUP}-1")
        stopped = pod_processes(victim)
        for p in stopped:
            os.kill(p, signal.SIGSTOP)
        wait(
            lambda: not ready(bed.get("pod", "-n", APPS, f"{GROUP}-1")),
            timeout=60,
            what="the stopped proxy not Ready",
            interval=0.5,
        )
        code, out = tsgw(bed, "doctor", "-o", "json")
        findings = json.loads(out)
        assert code == 1
        # The stopped replica may also be seen offline by then: a second finding on the same proxy.
        assert set(_failing(findings)) == {
            ("credentials", "TailscaleTailnet/headscale"),
            ("proxies", f"{APPS}/{GROUP}-1"),
        }, out
        cred = next(f for f in findings if f["check"] == "credentials")
        assert "AuthFailed" in cred["message"]
        assert "Secret tsgw-system/headscale-api-key" in cred["fix"]
        proxy = next(f for f in findings if f["check"] == "proxies")
        assert proxy["message"].startswith("proxy pod not Ready: tailscale not ready"), findings
        code, text = tsgw(bed, "doctor")
        print(f"\n{text}")
        # The refused key fires the tailnet alert too, once most requests in its window fail.
        (api_alert,) = prom.wait_for(
            "TsgwTailnetAPIFailing fires",
            lambda: [
                a
                for a in prom.alerts()
                if a["labels"]["alertname"] == "TsgwTailnetAPIFailing" and a["state"] == "firing"
            ],
            timeout=180,
        )
        assert api_alert["labels"] == {
            "alertname": "TsgwTailnetAPIFailing",
            "tailnet": "headscale",
            "severity": "critical",
        }
        if os.environ.get("TSGW_DASHBOARD_DATA"):
            record_dashboard(prom, started, time.time(), Path(os.environ["TSGW_DASHBOARD_DATA"]))
    except BaseException:
        print(tsgw(bed, "status", "--cluster")[1])
        raise
    finally:
        for p in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        if squatter is not None:
            squatter.kill()
            squatter.wait(timeout=10)
            if squatter.stdout is not None:
                squatter.stdout.close()
        if prometheus is not None:
            prometheus.stop()
        bed.apply([_api_key_secret(secret["data"]["api_key"])])
