"""benchmarks/xds.py's driver: its goals, percentiles and deadlines (the servers are measured by
`just bench xds` itself; the Go envelope scanner by tests/integration/test_bench_gcp.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from benchmarks.xds import Line, goals_of, percentile


def _case(streams: int, clusters: int, ours: dict[str, float], linear: dict[str, float]) -> dict[str, object]:
    return {"streams": streams, "clusters": clusters, "servers": {"tsgw": ours, "gcp_linear": linear}}


def test_goals_are_ratios_to_linear_cache_in_both_goal_cases() -> None:
    cases = [
        _case(
            100,
            1000,
            {"p50_ms": 50, "cpu_ms_per_push": 40, "kib_per_stream": 45},
            {"p50_ms": 150, "cpu_ms_per_push": 60},
        ),
        _case(
            500,
            1000,
            {"p50_ms": 100, "cpu_ms_per_push": 100, "kib_per_stream": 120},
            {"p50_ms": 200, "cpu_ms_per_push": 400},
        ),
    ]
    goals = goals_of(cases)
    assert goals["p50_vs_gcp_linear_at_100x1000"] == 3.0
    assert goals["p50_2x_better_than_gcp_linear_at_100x1000"] is True
    assert goals["cpu_per_push_vs_gcp_linear_at_100x1000"] == 1.5
    assert goals["cpu_per_push_2x_better_than_gcp_linear_at_100x1000"] is False
    assert goals["p50_2x_better_than_gcp_linear_at_500x1000"] is True
    assert goals["memory_under_100kib_per_stream"] is False  # 120 KiB at 500 streams


def test_a_failed_server_misses_its_goals_instead_of_crashing_the_report() -> None:
    cases = [_case(100, 1000, {"error": "no 'acked' in 60 s"}, {"p50_ms": 150, "cpu_ms_per_push": 60})]  # type: ignore[dict-item]
    goals = goals_of(cases)
    assert goals["p50_vs_gcp_linear_at_100x1000"] is None
    assert goals["p50_2x_better_than_gcp_linear_at_100x1000"] is False
    assert goals["memory_under_100kib_per_stream"] is False


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 51)]
    assert percentile(values, 0.5) in (25.0, 26.0)
    assert percentile(values, 0.99) == 50.0
    assert percentile([7.0], 0.99) == 7.0


def test_expect_gives_up_at_its_deadline_when_the_child_prints_nothing(tmp_path: Path) -> None:
    silent = Line([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "silent.log")
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no 'acked'"):
            silent.expect("acked", timeout=0.5)
        assert time.monotonic() - started < 30  # returned at the deadline, not at the child's exit
    finally:
        silent.p.kill()
        silent.stop()


def test_a_line_that_comes_early_is_kept_for_its_expect_and_an_exit_is_reported(tmp_path: Path) -> None:
    # go-control-plane's LinearCache can get every ACK before SetResources returns: "acked"
    # before "pushed". Dropping it was the benchmark's hang at 100 x 10,000.
    code = "print('acked 3 120'); print('pushed 3 99 7')"
    early = Line([sys.executable, "-c", code], tmp_path / "c.log")
    try:
        assert early.expect("pushed", timeout=30) == ["pushed", "3", "99", "7"]
        assert early.expect("acked", timeout=30) == ["acked", "3", "120"]
        with pytest.raises(RuntimeError, match="exited"):
            early.expect("acked", timeout=30)
    finally:
        early.stop()
