"""``.ci/run`` gates on the lint (ruff, mypy --strict, import-linter) before the tests, and fails
when either fails. It runs here against a recording stand-in for ``justw`` in a copy of the
script's folder layout, so the test checks the script's control flow, not the lint itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_ci(tmp_path: Path, fail: str | None) -> tuple[int, list[str]]:
    (tmp_path / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    calls = tmp_path / "calls"
    justw = tmp_path / "justw"
    justw.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = "{fail or ""}" ] && exit 3\nexit 0\n')
    justw.chmod(0o755)
    rc = subprocess.run([str(tmp_path / ".ci" / "run")], cwd="/", timeout=30, check=False).returncode
    return rc, calls.read_text().splitlines() if calls.exists() else []


def test_ci_runs_the_lint_first_then_the_tests(tmp_path: Path) -> None:
    assert _run_ci(tmp_path, None) == (0, ["lint", "test"])


@pytest.mark.parametrize(
    ("fail", "ran"), [("lint", ["lint"]), ("test", ["lint", "test"])], ids=["lint", "test"]
)
def test_ci_fails_when_the_lint_or_the_tests_fail(tmp_path: Path, fail: str, ran: list[str]) -> None:
    rc, calls = _run_ci(tmp_path, fail)
    assert rc != 0
    assert calls == ran
