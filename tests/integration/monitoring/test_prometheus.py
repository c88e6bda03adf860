"""A real Prometheus scrapes a real `tsgw run --standalone` and a real Envoy of one of its proxy
groups, with the monitoring component's own scrape configuration (its Kubernetes discovery
replaced by file discovery carrying the same ``__meta_kubernetes_*`` labels, so its relabelling
picks the targets) and rules. A configuration Envoy rejects (a listener whose port another
program holds: tests/integration/operator/test_programmed_nack.py) makes the NACK alert's
expression return the group and the alert fire, through Prometheus's HTTP API (the rules are
loaded as shipped but for their ``for``, shortened to 2 s so the test sees a firing; promtool's
unit tests hold the durations); fixing the file clears it. An Envoy that goes away makes the
disconnected alert's expression return its group. Every query of deploy/grafana/tsgw.json's
top-level panels returns at least one series."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.standalone import INGRESS_GROUP, Tsgw, copy_example, get, wait_until, write
from tests.integration.operator.test_programmed_nack import SECOND_PORT
from tests.support.backend import HttpBackend
from tests.support.envoy import Envoy
from tests.support.process import free_port
from tests.support.prometheus import Prometheus, as_file_sd
from tsgw.xds import bootstrap

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "kustomize" / "components" / "monitoring"
DASHBOARD = ROOT / "deploy" / "grafana" / "tsgw.json"
EGRESS_GROUP = "tailnet-echo-tsep.demo"  # in the example, with no Envoy started here


def _alert_expr(name: str) -> str:
    rules = yaml.safe_load((MONITORING / "tsgw.rules.yaml").read_text())
    (expr,) = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]
    return str(expr)


def _rules_firing_fast() -> str:
    """The shipped rules with every ``for`` shortened to 2 s."""
    rules = yaml.safe_load((MONITORING / "tsgw.rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    return yaml.safe_dump(rules, sort_keys=False)


def _groups(result: list[dict[str, Any]]) -> set[str]:
    return {r["metric"].get("group", "") for r in result}


def _squat_pair() -> tuple[int, socket.socket]:
    """A free port whose next port is held (bound and listening) by this process."""
    for _ in range(20):
        port = free_port()
        squatter = socket.socket()
        try:
            squatter.bind(("127.0.0.1", port + 1))
        except OSError:
            squatter.close()
            continue
        squatter.listen()
        return port, squatter
    pytest.fail("found no free pair of ports")


def _dashboard_queries() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(title, query) of the dashboard's top-level panels, and of the panels in its rows (the
    Kubernetes-mode row: controllers, leader, tailnets, which a standalone tsgw does not run)."""
    board = json.loads(DASHBOARD.read_text())
    top = [p for p in board["panels"] if p["type"] != "row"]
    nested = [c for p in board["panels"] if p["type"] == "row" for c in p["panels"]]
    queries = [[(p["title"], t["expr"]) for p in ps for t in p["targets"]] for ps in (top, nested)]
    return queries[0], queries[1]


def test_prometheus_scrapes_tsgw_and_envoy_and_a_nack_raises_the_alert(tmp_path: Path) -> None:
    with HttpBackend("primary") as primary, HttpBackend("standby") as standby:
        folder = copy_example(tmp_path / "standalone", primary.port, standby.port)
        listener, squatter = _squat_pair()
        tsgw = Tsgw(folder, tmp_path, listener_port=listener)
        admin_port, stats_port = free_port(), free_port()
        config = bootstrap(
            "web-0",
            INGRESS_GROUP,
            f"127.0.0.1:{tsgw.xds_port}",
            admin_port=admin_port,
            stats_port=stats_port,
            stats_address="127.0.0.1",
        )
        envoy = Envoy(config, tmp_path / "envoy", name="envoy-web")
        prometheus = None
        try:
            envoy.start()
            assert wait_until(lambda: get(listener) == (200, "primary"))

            # The stats listener serves Prometheus's text and nothing else of admin.
            assert envoy_get(stats_port, "/stats/prometheus?usedonly")[0] == 200
            assert envoy_get(stats_port, "/config_dump")[0] == 404

            shipped = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
            kube = "__meta_kubernetes_"
            targets = {
                "tsgw-operator": [
                    {
                        "targets": [f"127.0.0.1:{tsgw.probe_port}"],
                        "labels": {
                            f"{kube}service_name": "tsgw-metrics",
                            f"{kube}endpoint_port_name": "metrics",
                            f"{kube}namespace": "tsgw-system",
                            f"{kube}pod_name": "tsgw-0",
                        },
                    },
                    {  # the xDS Service's endpoint: not a metrics port, dropped
                        "targets": [f"127.0.0.1:{tsgw.xds_port}"],
                        "labels": {f"{kube}service_name": "tsgw", f"{kube}endpoint_port_name": "xds"},
                    },
                ],
                "tsgw-proxies": [
                    {
                        "targets": [f"127.0.0.1:{stats_port}"],
                        "labels": {
                            f"{kube}pod_label_app_kubernetes_io_name": "tsgw-proxy",
                            f"{kube}pod_label_app_kubernetes_io_instance": "web-tssvc",
                            f"{kube}pod_container_port_name": "envoy-metrics",
                            f"{kube}namespace": "demo",
                            f"{kube}pod_name": "web-0",
                        },
                    },
                    {  # the same pod's listener port: dropped
                        "targets": [f"127.0.0.1:{listener}"],
                        "labels": {
                            f"{kube}pod_label_app_kubernetes_io_name": "tsgw-proxy",
                            f"{kube}pod_container_port_name": f"l-{listener}",
                        },
                    },
                ],
            }
            pconfig = as_file_sd(shipped, targets, tmp_path / "sd")
            pconfig["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
            prometheus = Prometheus(
                pconfig,
                tmp_path / "prometheus",
                files={"tsgw.rules.yaml": _rules_firing_fast()},
            )

            def scraped() -> Any:
                t = prometheus.targets() if prometheus else {}
                active = t.get("activeTargets", [])
                return len(active) == 2 and all(a["health"] == "up" for a in active) and t

            found = prometheus.wait_for("both targets scraped", scraped)
            assert {a["labels"]["job"] for a in found["activeTargets"]} == {"tsgw-operator", "tsgw-proxies"}
            assert len(found["droppedTargets"]) == 2
            (proxy,) = [a for a in found["activeTargets"] if a["labels"]["job"] == "tsgw-proxies"]
            assert proxy["labels"]["proxy_group"] == "web-tssvc"
            assert proxy["labels"]["pod"] == "web-0"

            synced = f'tsgw_xds_envoys{{group="{INGRESS_GROUP}",sync="synced"}} == 1'
            prometheus.wait_for("the Envoy counted as synced", lambda: prometheus.query(synced))
            nack = _alert_expr("TsgwXdsConfigRejected")
            disconnected = _alert_expr("TsgwEnvoysDisconnected")
            assert prometheus.query(nack) == []
            assert _groups(prometheus.query(disconnected)) == {EGRESS_GROUP}

            # A listener Envoy cannot bind: Envoy NACKs, and the alert's expression names the group.
            good = (folder / "web.yaml").read_text()
            first_port = SECOND_PORT.split("    - port: 8443")[0]
            assert first_port in good
            write(folder / "web.yaml", good.replace(first_port, SECOND_PORT))
            rejected = prometheus.wait_for(
                "the NACK expression returns a series", lambda: prometheus.query(nack)
            )
            assert _groups(rejected) == {INGRESS_GROUP}
            assert rejected[0]["value"][1] == "1"
            (alert,) = prometheus.wait_for(
                "the NACK alert fires",
                lambda: [
                    a
                    for a in prometheus.alerts()
                    if a["labels"]["alertname"] == "TsgwXdsConfigRejected" and a["state"] == "firing"
                ],
            )
            assert alert["labels"] == {
                "alertname": "TsgwXdsConfigRejected",
                "group": INGRESS_GROUP,
                "severity": "warning",
            }
            assert (
                alert["annotations"]["summary"]
                == f"Envoys of proxy group {INGRESS_GROUP} reject its configuration"
            )
            assert alert["annotations"]["description"].startswith(f"1 Envoy(s) of {INGRESS_GROUP} NACKed")
            # Envoy's own count of rejected listener updates, scraped through the stats listener.
            lds = 'envoy_listener_manager_lds_update_rejected{job="tsgw-proxies",pod="web-0"} > 0'
            prometheus.wait_for("Envoy's rejected LDS count", lambda: prometheus.query(lds))
            assert get(listener) == (200, "primary")  # the last good config keeps serving

            standalone, kubernetes = _dashboard_queries()
            assert len(standalone) >= 8
            for title, expr in standalone:
                prometheus.wait_for(f"panel {title!r} has data: {expr}", lambda e=expr: prometheus.query(e))
            for _, expr in kubernetes:
                prometheus.query(expr)  # a valid query (the API refuses a bad one); its data needs a cluster

            # The fixed file is ACKed: the expression is empty again.
            write(folder / "web.yaml", good)
            prometheus.wait_for("the NACK expression clears", lambda: prometheus.query(nack) == [])

            # The Envoy goes away: its group joins the disconnected ones.
            envoy.stop()
            prometheus.wait_for(
                "the disconnected expression names the group",
                lambda: _groups(prometheus.query(disconnected)) == {EGRESS_GROUP, INGRESS_GROUP},
            )
        finally:
            if prometheus is not None:
                prometheus.stop()
            envoy.stop()
            tsgw.stop()
            squatter.close()


def envoy_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
