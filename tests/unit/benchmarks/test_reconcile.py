"""benchmarks/reconcile.py's driver: its goals against controller-runtime and the bare writer
(the contenders are measured by `just bench reconcile`; the Go peers against a real API server
by tests/integration/test_bench_clientgo.py)."""

from __future__ import annotations

from benchmarks.reconcile import _module_version, goals_of


def test_goals_are_ratios_to_controller_runtime_and_the_writer_at_each_worker_count() -> None:
    by_workers = {
        "4": {
            "tsgw": {"converge_s": 6.0, "writes_per_object": 2.0, "reconciles_after_converge": 0},
            "controller_runtime": {"converge_s": 6.6},
            "writer": {"converge_s": 5.5},
        },
        "16": {
            "tsgw": {"converge_s": 8.0, "writes_per_object": 2.5, "reconciles_after_converge": 3},
            "controller_runtime": {"converge_s": 6.0},
            "writer": {"converge_s": 5.0},
        },
    }
    goals = goals_of(by_workers)  # type: ignore[arg-type]
    assert goals["converge_vs_controller_runtime_at_4"] == 1.1
    assert goals["converge_at_or_below_controller_runtime_at_4"] is True
    assert goals["converge_vs_writer_at_4"] == 1.09
    assert goals["converge_within_1_2x_of_writer_at_4"] is True
    assert goals["two_writes_per_object_at_4"] is True
    assert goals["no_reconciles_after_converge_at_4"] is True
    assert goals["converge_vs_controller_runtime_at_16"] == 0.75
    assert goals["converge_at_or_below_controller_runtime_at_16"] is False
    assert goals["converge_within_1_2x_of_writer_at_16"] is False  # 1.6x
    assert goals["two_writes_per_object_at_16"] is False
    assert goals["no_reconciles_after_converge_at_16"] is False


def test_a_failed_contender_misses_its_goals_instead_of_crashing_the_report() -> None:
    goals = goals_of({"4": {"tsgw": {"error": "TimeoutError"}, "controller_runtime": {"converge_s": 6.0}}})
    assert goals["converge_vs_controller_runtime_at_4"] is None
    assert goals["converge_at_or_below_controller_runtime_at_4"] is False
    assert goals["converge_vs_writer_at_4"] is None
    assert goals["no_reconciles_after_converge_at_4"] is False


def test_the_reported_versions_are_read_from_the_go_mod() -> None:
    gomod = "module x\n\nrequire (\n\tsigs.k8s.io/controller-runtime v0.24.1\n)\n"
    assert _module_version(gomod, "sigs.k8s.io/controller-runtime") == "v0.24.1"
    assert _module_version(gomod, "k8s.io/client-go") == "unknown"
