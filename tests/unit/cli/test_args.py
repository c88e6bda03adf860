"""HOST:PORT and port arguments: checked while parsing, so a bad one is a one-line usage error
(exit 2), never a traceback from deep inside a server."""

import re
from pathlib import Path

import pytest

from tsgw.cli import main
from tsgw.cli._args import parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:18000", ("127.0.0.1", 18000)),
        ("localhost:0", ("localhost", 0)),
        ("tsgw.tsgw-system.svc:65535", ("tsgw.tsgw-system.svc", 65535)),
        ("[::1]:9901", ("::1", 9901)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_parse_address_splits_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nohost", "HOST:PORT"),
        (":18000", "HOST"),
        ("127.0.0.1:", "PORT"),
        ("127.0.0.1:99999", "0-65535"),
        ("127.0.0.1:-1", "0-65535"),
        ("127.0.0.1:http", "0-65535"),
        ("::1:80", "brackets"),
        ("[::1]", "PORT"),
        ("[::1:80", "]"),
        ("[web]:80", "IPv6"),
        ("we b:80", "host"),
    ],
)
def test_parse_address_refuses_what_no_server_could_listen_on(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_address(text)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--listener-port", "70000"], "--listener-port"),
        (["--listener-port", "0"], "--listener-port"),
        (["--connect-proxy-port", "x"], "--connect-proxy-port"),
        (["--xds", "127.0.0.1:99999"], "--xds"),
        (["--xds", "nohost"], "--xds"),
        (["--admin", "[::1"], "--admin"),
        (["--extension", "nohost"], "--extension"),
        (["--health-probe-bind-address", "localhost:123456"], "--health-probe-bind-address"),
    ],
)
def test_run_refuses_a_bad_port_or_address_in_one_line(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--standalone", str(tmp_path), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"tsgw run: error: argument {flag}: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["bootstrap", "--node-id", "n", "--cluster", "c", "--xds-address", "nohost"],
        ["bootstrap", "--node-id", "n", "--cluster", "c", "--xds-address", "h:1", "--admin-port", "65536"],
        ["status", "--admin", "127.0.0.1:70000"],
        ["snapshot", "list", "--admin", "nohost"],
    ],
)
def test_every_command_checks_its_addresses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error: argument --" in capsys.readouterr().err.splitlines()[-1]
