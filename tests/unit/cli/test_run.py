"""`tsgw run`: argument errors are usage errors (exit 2) with a message, before anything starts."""

from pathlib import Path

import pytest

from tsgw.cli import main


def test_run_without_standalone_says_only_standalone_mode_is_available(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run"]) == 2
    assert "tsgw run --standalone DIR" in capsys.readouterr().err


def test_run_standalone_on_a_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--standalone", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
