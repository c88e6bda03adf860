"""benchmarks/informer.py's driver: its goals against client-go and the Go peer's build key (the
contenders themselves are measured by `just bench informer`; the Go peer against a real API
server by tests/integration/test_bench_clientgo.py)."""

from __future__ import annotations

from pathlib import Path

from benchmarks._k8s import clientgo_build_dir, clientgo_version
from benchmarks.informer import goals_of, median_run


def _size(ours: dict[str, object], **client_go: dict[str, object]) -> dict[str, object]:
    return {"ours": ours, **client_go}


def test_goals_compare_our_default_with_client_go_s_best_mode_on_each_axis() -> None:
    sizes = {
        "10000": _size(
            {"sync_s": 0.5, "kib_per_object": 3.0, "max_stall_ms": 12.0},
            client_go={"sync_s": 1.0, "heap_kib_per_object": 3.6},
            client_go_list={"sync_s": 0.4, "heap_kib_per_object": 3.5},
            client_go_strip={"sync_s": 1.1, "heap_kib_per_object": 3.0},
        )
    }
    goals = goals_of(sizes)  # type: ignore[arg-type]
    assert goals["sync_vs_client_go_at_10000"] == 0.8  # LIST mode, 0.4 s, is client-go's fastest
    assert goals["sync_at_or_below_client_go_at_10000"] is False
    assert goals["memory_vs_client_go_at_10000"] == 1.0  # stripped, 3.0 KiB, is its smallest
    assert goals["memory_at_or_below_client_go_at_10000"] is True
    assert goals["loop_stall_under_20ms_at_10000"] is True


def test_a_failed_contender_misses_its_goals_instead_of_crashing_the_report() -> None:
    sizes = {
        "50000": _size(
            {"error": "store holds 3 objects"},
            client_go={"sync_s": 1.0, "heap_kib_per_object": 3.6},
        ),
        "10000": _size(
            {"sync_s": 0.5, "kib_per_object": 3.0, "max_stall_ms": 25.0},
            client_go={"error": "exit 1"},
        ),
    }
    goals = goals_of(sizes)  # type: ignore[arg-type]
    assert goals["sync_vs_client_go_at_50000"] is None
    assert goals["sync_at_or_below_client_go_at_50000"] is False
    assert goals["loop_stall_under_20ms_at_50000"] is False
    assert goals["memory_at_or_below_client_go_at_10000"] is False
    assert goals["loop_stall_under_20ms_at_10000"] is False


def test_the_go_build_is_keyed_by_client_go_s_version_and_the_sources(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n\nrequire (\n\tk8s.io/client-go v0.36.3\n)\n")
    (tmp_path / "go.sum").write_text("")
    (tmp_path / "cmd").mkdir()
    (tmp_path / "cmd" / "main.go").write_text("package main\n")
    first = clientgo_build_dir(tmp_path)
    assert first.name.startswith("clientgo-v0.36.3-")
    assert first.parent == Path.home() / ".cache" / "tsgw" / "bench"
    assert clientgo_build_dir(tmp_path) == first
    (tmp_path / "cmd" / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert clientgo_build_dir(tmp_path) != first
    assert clientgo_version("module x\n") == "unknown"


def test_repeated_runs_give_the_median_of_each_figure_and_a_failed_run_fails_the_contender() -> None:
    runs = [
        {"sync_s": 0.9, "heap_kib_per_object": 3.1, "watch_list": True},
        {"sync_s": 0.4, "heap_kib_per_object": 3.5, "watch_list": True},
        {"sync_s": 0.5, "heap_kib_per_object": 3.2, "watch_list": True},
    ]
    assert median_run(runs) == {
        "sync_s": 0.5,
        "heap_kib_per_object": 3.2,
        "watch_list": True,
        "sync_s_runs": [0.9, 0.4, 0.5],
    }
    assert median_run([*runs, {"error": "exit 1"}]) == {"error": "exit 1"}
