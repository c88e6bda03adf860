"""`tsgw run`: argument errors are usage errors (exit 2) with a message, before anything starts."""

from pathlib import Path

import pytest

from tsgw.cli import main


def test_run_against_a_cluster_with_a_missing_kubeconfig_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--kubeconfig", str(tmp_path / "nope"), "--no-leader-elect"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tsgw run: ")
    assert "nope" in err
    assert len(err.strip().splitlines()) == 1


def test_run_takes_the_deployments_every_interface_probe_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--health-probe-bind-address=:8081` (controller-runtime's form, the Deployment's flag) is
    no usage error: the run gets as far as the missing kubeconfig."""
    argv = ["--kubeconfig", str(tmp_path / "nope"), "--health-probe-bind-address=:8081"]
    assert main(["run", *argv, "--metrics-bind-address=:8080"]) == 1
    assert "kubeconfig" in capsys.readouterr().err


def test_run_standalone_on_a_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--standalone", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "65", "-1"])
def test_run_refuses_auth_key_workers_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    argv = ["--kubeconfig", str(tmp_path / "nope"), f"--auth-key-workers={workers}"]
    assert main(["run", *argv]) == 2
    assert f"--auth-key-workers must be 1 to 64, got {workers}" in capsys.readouterr().err


def test_run_takes_auth_key_workers_in_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In range, the run gets as far as the missing kubeconfig (exit 1, not a usage error)."""
    assert main(["run", "--kubeconfig", str(tmp_path / "nope"), "--auth-key-workers=8"]) == 1
    assert "kubeconfig" in capsys.readouterr().err
