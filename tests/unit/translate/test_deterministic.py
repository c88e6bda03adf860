"""Translation's bytes do not depend on the process: two operator replicas translating the same
inputs must serve the same snapshot content, or an Envoy connected to one replica is never
judged Programmed by the other (the fingerprints never match), and an Envoy moving between
replicas takes a needless push. Protobuf maps (the caller-identity matcher's address map)
serialize in a per-process order unless serialized deterministically: on the bed half of the
TailscaleServices stayed Programmed=Pending for that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CASES = (
    "services_http_rules",
    "services_caller_identity",
    "services_tcp",
    "endpoints_http_grpc_tls",
    "gateway",
)

SCRIPT = """
import sys
from tests.unit.translate._cases import load_case
from tsgw.translate import translate
from tsgw.xds import Snapshot
for case in sys.argv[1:]:
    result = translate(load_case(case))
    for key, res in sorted(result.xds.items()):
        print(case, key, sorted(Snapshot(res.by_type(), version="v").versions().items()))
"""


def _versions(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *CASES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


@pytest.mark.parametrize("seeds", [("1", "2"), ("3", "4")])
def test_two_processes_translate_the_same_inputs_to_the_same_bytes(seeds: tuple[str, str]) -> None:
    a, b = (_versions(s) for s in seeds)
    assert a.count("\n") >= len(CASES)
    assert a == b
