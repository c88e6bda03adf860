"""The admin API (snapshots, streams, problems) listens on loopback unless told otherwise, in
both modes and in the shipped Deployment: reach it with a port-forward."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from tsgw._address import parse_address
from tsgw.admin import DEFAULT_ADDRESS
from tsgw.cli._main import _parser
from tsgw.operator import OperatorOptions, StandaloneOptions

ROOT = Path(__file__).resolve().parents[3]


def _loopback(address: str) -> bool:
    host, _ = parse_address(address, what="admin")
    return ipaddress.ip_address(host).is_loopback


@pytest.mark.parametrize("argv", [["run", "--standalone", "."], ["run"]])
def test_tsgw_run_serves_the_admin_api_on_loopback_by_default(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TSGW_ADMIN", raising=False)
    args = _parser().parse_args(argv)
    assert _loopback(args.admin)


def test_the_options_default_to_loopback_too() -> None:
    assert _loopback(DEFAULT_ADDRESS)
    assert _loopback(OperatorOptions().admin_address)
    assert _loopback(StandaloneOptions(directory=Path(".")).admin_address)


def test_the_shipped_deployment_does_not_move_the_admin_api_off_loopback() -> None:
    for path in (ROOT / "deploy").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for arg in c.get("args", []):
                    if str(arg).startswith("--admin"):
                        assert _loopback(str(arg).split("=", 1)[1]), (path, arg)
                for env in c.get("env", []):
                    if env.get("name") == "TSGW_ADMIN":
                        assert _loopback(env["value"]), (path, env)


def test_tsgw_bootstrap_writes_the_groups_token_from_a_key_file(tmp_path: Path) -> None:
    import json

    from tsgw.cli import main
    from tsgw.xds import group_token

    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123\n")
    out = tmp_path / "b.json"
    argv = [
        "bootstrap",
        "--node-id",
        "web-0",
        "--group",
        "demo/web-tssvc",
        "--xds-address",
        "127.0.0.1:18000",
    ]
    assert main([*argv, "--xds-auth-key-file", str(key), "--format", "json", "-o", str(out)]) == 0
    (svc,) = json.loads(out.read_text())["dynamic_resources"]["ads_config"]["grpc_services"]
    token = group_token(b"0123456789abcdef0123", "web-tssvc.demo")
    assert svc["initial_metadata"] == [{"key": "authorization", "value": f"Bearer {token}"}]
    key.write_bytes(b"short")
    with pytest.raises(SystemExit):
        main([*argv, "--xds-auth-key-file", str(key)])
