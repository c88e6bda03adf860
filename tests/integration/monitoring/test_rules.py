"""The monitoring component's files against the real promtool (Debian's, from `just testbin`):
the rules load cleanly, each alert's logic passes promtool's rule unit tests, and the scrape
configuration is a valid Prometheus configuration once its Kubernetes discovery is replaced by
file discovery (Debian builds Prometheus without Kubernetes discovery); kustomize renders the
component into an install."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.install import copy_install, find, render
from tests.support.prometheus import as_file_sd, promtool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "kustomize" / "components" / "monitoring"
RULES = MONITORING / "tsgw.rules.yaml"


def test_promtool_checks_the_rules_clean() -> None:
    out = promtool("check", "rules", RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(alerts)} rules found" in out.stdout


def test_each_alert_passes_promtools_rule_unit_tests() -> None:
    out = promtool("test", "rules", Path(__file__).with_name("tsgw_rules_test.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_scrape_configuration_is_valid_with_file_discovery_in_place_of_kubernetes(tmp_path: Path) -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    # As shipped, this build cannot even parse it: say so, so a future build that can is noticed.
    shipped = promtool("check", "config", MONITORING / "prometheus.yml")
    assert "field kubernetes_sd_configs not found" in shipped.stdout + shipped.stderr
    checked = as_file_sd(config, {}, tmp_path / "sd")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(checked))
    (tmp_path / "tsgw.rules.yaml").write_text(RULES.read_text())
    out = promtool("check", "config", tmp_path / "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


def test_the_component_renders_its_configmap_into_an_install(tmp_path: Path) -> None:
    tree = copy_install(tmp_path)
    overlay = tree / "overlays" / "monitored"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../../base]\ncomponents: [../../components/monitoring]\n"
    )
    objs = render(overlay)
    (cm,) = [
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tsgw-prometheus")
    ]
    assert cm["metadata"]["namespace"] == "tsgw-system"
    assert cm["data"]["tsgw.rules.yaml"] == RULES.read_text()
    assert cm["data"]["prometheus.yml"] == (MONITORING / "prometheus.yml").read_text()
    find(objs, "Service", "tsgw-metrics")  # what the operator job discovers
