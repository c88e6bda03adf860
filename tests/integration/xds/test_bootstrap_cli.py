"""`tsgw bootstrap` writes a bootstrap that the real Envoy accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.process import Process
from tools.testbin import bin_path
from tsgw.cli import main

pytestmark = pytest.mark.integration


def envoy_validates(config: Path, log: Path) -> tuple[int, str]:
    p = Process("envoy-validate", [bin_path("envoy"), "--mode", "validate", "-c", config], log)
    try:
        code = p.popen.wait(60)
    finally:
        p.stop()
    return code, log.read_text()


@pytest.mark.parametrize(("flags", "api_type"), [([], "GRPC"), (["--delta"], "DELTA_GRPC")])
def test_bootstrap_is_valid_for_envoy_and_sends_the_node_once(
    tmp_path: Path, flags: list[str], api_type: str
) -> None:
    out = tmp_path / "bootstrap.yaml"
    argv = ["bootstrap", "--node-id", "proxy-0", "--cluster", "egress", "--xds-address", "10.0.0.7:18000"]
    assert main([*argv, *flags, "-o", str(out)]) == 0
    config = yaml.safe_load(out.read_text())
    ads = config["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == api_type
    assert ads["set_node_on_first_message_only"] is True
    assert config["node"] == {"id": "proxy-0", "cluster": "egress"}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    code, log = envoy_validates(out, tmp_path / "validate.log")
    assert code == 0, log
    assert "OK" in log


def test_bootstrap_with_a_hostname_uses_dns_and_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bootstrap", "--node-id", "p", "--cluster", "g", "--xds-address", "tsgw.tsgw-system.svc:18000"]
    assert main([*argv, "--format", "json"]) == 0
    config = json.loads(capsys.readouterr().out)
    (xds,) = config["static_resources"]["clusters"]
    assert xds["type"] == "LOGICAL_DNS"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(config))
    code, log = envoy_validates(path, tmp_path / "validate.log")
    assert code == 0, log


def test_bootstrap_refuses_an_address_without_port(capsys: pytest.CaptureFixture[str]) -> None:
    # A usage error, from argparse (tests/unit/cli/test_args.py has the other bad values).
    with pytest.raises(SystemExit) as exit_:
        main(["bootstrap", "--node-id", "p", "--cluster", "g", "--xds-address", "nowhere"])
    assert exit_.value.code == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_bootstrap_for_a_group_names_its_node_cluster_and_envoy_accepts_the_proxies_bootstrap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--group NAMESPACE/GROUP gives the node cluster the pipeline keys snapshots by; the
    bootstrap the proxy pods mount (no node: their command line sets it) is valid for Envoy with
    the flags their StatefulSet passes."""
    argv = ["bootstrap", "--node-id", "db-0", "--group", "team-a/db-tsep", "--xds-address", "127.0.0.1:18000"]
    assert main([*argv, "--format", "json"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["node"]["cluster"] == "db-tsep.team-a"
    assert main(["bootstrap", "--node-id", "x", "--group", "no-slash", "--xds-address", "127.0.0.1:1"]) == 2
    assert "NAMESPACE/GROUP" in capsys.readouterr().err

    from tsgw.translate import Options
    from tsgw.translate._objects import envoy_bootstrap

    shared = envoy_bootstrap(Options())
    assert "node" not in shared
    ads = shared["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]
    assert ads["retry_policy"]["retry_back_off"] == {"base_interval": "0.25s", "max_interval": "2s"}
    (stats,) = shared["static_resources"]["listeners"]  # /stats/prometheus on the pod's IP
    assert stats["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 19001}
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(shared))
    p = Process(
        "envoy-validate",
        [
            bin_path("envoy"),
            "--mode",
            "validate",
            "-c",
            path,
            "--service-node",
            "db-0",
            "--service-cluster",
            "db-tsep.team-a",
            "--disable-hot-restart",
        ],
        tmp_path / "validate-proxy.log",
    )
    try:
        code = p.popen.wait(60)
    finally:
        p.stop()
    assert code == 0, (tmp_path / "validate-proxy.log").read_text()
