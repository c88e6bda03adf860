"""benchmarks/report.py and the result saving in benchmarks/__main__.py: pure functions on
saved results, no benchmark run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import benchmarks.__main__ as runner
from benchmarks import report


def _xds_record() -> dict[str, object]:
    fig = {"p50_ms": 50.0, "p99_ms": 60.0, "cpu_ms_per_push": 40.0, "kib_per_stream": 45.0}
    return {
        "bench": "xds",
        "argv": [],
        "finished": "2026-12-05 07:50 UTC",
        "machine": {"cores": 2, "cpu": "x", "memory_gib": 8, "kernel": "6", "python": "3.11"},
        "load": "5.0 4.0 3.0",
        "result": {
            "pushes": 50,
            "cases": [
                {
                    "streams": 100,
                    "clusters": 1000,
                    "servers": {"tsgw": fig, "gcp_linear": {**fig, "p50_ms": 120.0}},
                },
                {
                    "streams": 100,
                    "clusters": 10000,
                    "servers": {"tsgw": fig, "gcp_linear": {"error": "no 'acked'"}},
                },
            ],
            "goals": {"p50_2x_better_than_gcp_linear_at_100x1000": True},
        },
    }


def test_a_line_chart_is_well_formed_svg_with_one_line_per_series_and_gaps_for_missing_values() -> None:
    svg = report.line_chart(
        "t", ["a", "b", "c"], {"one": [1.0, 10.0, 100.0], "two": [5.0, None, 7.0]}, "ms", log=True
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 1  # "two" has a gap: two single points, no line
    assert len(root.findall(f"{ns}circle")) == 5


def test_the_xds_section_names_every_server_the_errors_and_the_goals() -> None:
    text, plots = report.render_xds(_xds_record())
    assert set(plots) == {"xds-p50.svg", "xds-cpu.svg"}
    assert "| 100×1k | gcp_linear | 120.0 |" in text
    assert "no &#x27;acked&#x27;" in text or "no 'acked'" in text
    assert "p50_2x_better_than_gcp_linear_at_100x1000" in text
    assert "load average after the run 5.0 4.0 3.0" in text


def test_a_section_is_replaced_between_its_markers_and_the_rest_is_kept() -> None:
    doc = "# B\n\nhand text\n\n<!-- report:xds -->\nold\n<!-- /report:xds -->\n\ntail\n"
    new = report.replace_section(doc, "xds", "new figures")
    assert new == "# B\n\nhand text\n\n<!-- report:xds -->\nnew figures\n<!-- /report:xds -->\n\ntail\n"
    appended = report.replace_section("# B\n", "other", "x")
    assert appended.endswith("## other\n\n<!-- report:other -->\nx\n<!-- /report:other -->\n")


def test_the_runner_saves_the_last_json_line_with_its_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "RESULTS", tmp_path)
    path = runner.save("xds", json.dumps({"bench": "xds", "goals": {}}), ["--pushes", "50"])
    assert path == tmp_path / "xds.json"
    saved = json.loads(path.read_text())
    assert saved["result"] == {"bench": "xds", "goals": {}}
    assert saved["argv"] == ["--pushes", "50"]
    assert saved["machine"]["cores"] >= 1
    assert runner.save("xds", "not json", []) is None


def test_standalone_goals_are_absolute_and_a_ratio_to_envoy_gateway() -> None:
    from benchmarks.standalone import goals_of

    goals = goals_of({"p50_ms": 30.0, "p99_ms": 120.0}, {"p50_ms": 450.0})
    assert goals == {
        "p50_under_40ms": True,
        "p99_under_100ms": False,
        "p50_vs_envoy_gateway": 15.0,
        "10x_faster_than_envoy_gateway": True,
    }
    assert "p50_vs_envoy_gateway" not in goals_of({"p50_ms": 30.0, "p99_ms": 50.0}, None)


def _operator_record(tuning: object) -> dict[str, object]:
    stats = {
        f"apply_to_{k}_byte_{q}_ms": v
        for k in ("egress", "ingress")
        for q, v in (("p50", 2658), ("p95", 2869), ("max", 3703), ("min", 1732))
    }
    return {
        "bench": "operator",
        "argv": ["--headscale-fast-batching"],
        "finished": "2026-12-05 12:37 UTC",
        "machine": {"cores": 2},
        "load": "0.7 0.7 0.6",
        "result": {
            "headscale_tuning": tuning,
            **stats,
            "egress_samples": 20,
            "ingress_samples": 20,
            "phases_egress_p50_ms": {"sts": 418.2, "joined": 842.0, "endpoint": 1575.9},
            "phases_ingress_p50_ms": {"sts": 431.2},
            "writes_per_object": 14.5,
            "writes_per_object_min": 13,
            "writes_per_object_max": 18,
        },
    }


def test_the_operator_section_names_the_control_plane_and_tabulates_both_kinds_and_their_phases() -> None:
    text, plots = report.render_operator(_operator_record({"batch_change_delay": "50ms"}))
    assert plots == {}
    assert "Control plane: Headscale with `batch_change_delay: 50ms`." in text
    assert "| egress (20 samples) | 2,658 | 2,869 | 3,703 | 1,732 |" in text
    assert "| egress | 418 | – | – | – | 842 | – | 1,576 |" in text
    assert "| ingress | 431 | – | – | – | – | – | – |" in text
    assert "14.5 p50 (13–18)" in text
    assert "RSS" not in text
    default, _ = report.render_operator(_operator_record("defaults"))
    assert "Control plane: Headscale with its default batching timers." in default
    box = _operator_record("defaults")
    box["result"] = {k: v for k, v in box["result"].items() if k != "headscale_tuning"}  # type: ignore[attr-defined]
    box["result"]["control_plane"] = "tailnet in a box"  # type: ignore[index]
    assert "Control plane: tailnet in a box." in report.render_operator(box)[0]


def test_each_saved_file_is_its_own_section_so_two_runs_of_one_benchmark_both_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "operator.json").write_text(json.dumps(_operator_record("defaults")))
    (results / "operator-headscale-fast.json").write_text(json.dumps(_operator_record({"a": "1ms"})))
    monkeypatch.setattr(report, "RESULTS", results)
    monkeypatch.setattr(report, "DOC", tmp_path / "benchmarks.md")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    assert report.main([]) == 0
    doc = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- report:operator -->" in doc
    assert "<!-- report:operator-headscale-fast -->" in doc
    assert "its default batching timers" in doc
    assert "`a: 1ms`" in doc


def test_a_variants_run_is_saved_beside_the_headline_not_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import __main__ as bench_main

    monkeypatch.setattr(bench_main, "RESULTS", tmp_path)
    path = bench_main.save(
        "operator", json.dumps({"bench": "operator", "variant": "box"}), ["--control", "box"]
    )
    assert path == tmp_path / "operator-box.json"
    assert json.loads(path.read_text())["bench"] == "operator"  # rendered as an operator run
    # A variant that is not a plain name cannot reach outside the results folder.
    assert bench_main.save("operator", json.dumps({"variant": "../x"}), []) == tmp_path / "operator.json"
