import pytest

from tsgw import __version__
from tsgw.cli import main


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"tsgw {__version__}\n"


def test_unknown_command_exits_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cluster_commands_say_so_when_the_kubeconfig_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    missing = "/nonexistent/kubeconfig"
    assert main(["doctor", "--kubeconfig", missing]) == 1
    assert capsys.readouterr().err == f"tsgw doctor: kubeconfig {missing}: no such file\n"
    assert main(["status", "--cluster", "--kubeconfig", missing, "-o", "yaml"]) == 1
    assert capsys.readouterr().err == f"tsgw status: kubeconfig {missing}: no such file\n"


def test_doctor_rejects_an_unknown_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "-o", "table"])
    assert exc.value.code == 2
