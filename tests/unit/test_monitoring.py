"""The monitoring files agree with each other and with the docs: the PrometheusRule holds the
rules file's groups, every alert has a runbook in docs/operations.md at the anchor its
runbook_url names and a promtool unit test that fires it, and every dashboard panel reads
the dashboard's Prometheus variable. (promtool and a real Prometheus check the queries
themselves: tests/integration/monitoring.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "kustomize" / "components" / "monitoring"


def _alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load((MONITORING / "tsgw.rules.yaml").read_text())
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_the_prometheusrule_holds_the_rules_files_groups() -> None:
    rules = yaml.safe_load((MONITORING / "tsgw.rules.yaml").read_text())
    cr = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert (cr["apiVersion"], cr["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert cr["spec"]["groups"] == rules["groups"]


def test_every_alert_has_a_runbook_and_a_unit_test_that_fires_it() -> None:
    ops = (ROOT / "docs" / "operations.md").read_text()
    headings = {m.lower() for m in re.findall(r"^### (Tsgw\w+)$", ops, re.M)}
    tests = yaml.safe_load(
        (ROOT / "tests" / "integration" / "monitoring" / "tsgw_rules_test.yaml").read_text()
    )
    fired = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names))
    for alert in _alerts():
        name = alert["alert"]
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert name.lower() in headings, f"{name}: no runbook heading in docs/operations.md"
        assert name in fired, f"{name}: no promtool test in which it fires"
        assert alert["labels"]["severity"] in ("warning", "critical")


def test_every_dashboard_panel_reads_the_dashboards_prometheus() -> None:
    board = json.loads((ROOT / "deploy" / "grafana" / "tsgw.json").read_text())
    panels = [c for p in board["panels"] for c in (p["panels"] if p["type"] == "row" else [p])]
    assert len({p["id"] for p in panels}) == len(panels)
    (var,) = board["templating"]["list"]
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": f"${{{var['name']}}}"}
        assert p["targets"], p["title"]
