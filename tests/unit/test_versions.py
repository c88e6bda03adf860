"""tools/versions.toml is the one list of pinned versions: the other places that must name the
same version (uv.lock, the bootstrap script, the benchmark's go.mod) agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = tomllib.loads((ROOT / "tools" / "versions.toml").read_text())


def test_the_pinned_wheels_are_the_versions_uv_lock_installs() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p.get("version") for p in lock["package"]}
    assert {name: locked.get(name) for name in VERSIONS["pypi"]} == VERSIONS["pypi"]


def test_the_bootstrap_installs_the_pinned_just() -> None:
    justw = (ROOT / "justw").read_text()
    assert f"rust-just=={VERSIONS['pypi']['rust-just']}" in justw


def test_the_xds_benchmark_peer_is_the_pinned_go_control_plane() -> None:
    gomod = (ROOT / "benchmarks" / "gcp" / "go.mod").read_text()
    pinned = VERSIONS["bench"]["go-control-plane"]
    assert re.search(rf"^\s*github\.com/envoyproxy/go-control-plane {re.escape(pinned)}$", gomod, re.M)
