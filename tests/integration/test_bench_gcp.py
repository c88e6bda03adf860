"""The xDS benchmark's Go programs (benchmarks/gcp): `go vet` and `go test` on the envelope
scanner the load client reads every response with."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GCP_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "gcp"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain"),
]


def test_the_envelope_scanner_agrees_with_a_full_decode_and_the_programs_vet_clean() -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    for argv in (["go", "vet", "./..."], ["go", "test", "-count=1", "./..."]):
        done = subprocess.run(argv, cwd=GCP_DIR, env=env, capture_output=True, text=True, timeout=540)
        assert done.returncode == 0, done.stdout + done.stderr
