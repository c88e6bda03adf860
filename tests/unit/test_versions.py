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


def test_the_kube_benchmark_peers_are_the_pinned_client_go_of_the_pinned_kubernetes() -> None:
    gomod = (ROOT / "benchmarks" / "clientgo" / "go.mod").read_text()
    pinned = VERSIONS["bench"]["client-go"]
    assert re.search(rf"^\s*k8s\.io/client-go {re.escape(pinned)}$", gomod, re.M)
    cr = VERSIONS["bench"]["controller-runtime"]
    assert re.search(rf"^\s*sigs\.k8s\.io/controller-runtime {re.escape(cr)}$", gomod, re.M)
    # the staging modules of a Kubernetes release share its minor and patch: v1.36.3 <-> v0.36.3
    assert pinned == "v0" + VERSIONS["go"]["kubernetes"].removeprefix("v1")


def test_grpclib_and_h2_are_bounded_above_and_locked_inside_the_bounds() -> None:
    """tsgw.xds._fastsend uses their private names: a new major (or grpclib minor) is a decision."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.name: r for r in map(Requirement, project["dependencies"]) if r.name in ("grpclib", "h2")}
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if p["name"] in wanted}
    assert sorted(wanted) == ["grpclib", "h2"]
    for name, req in wanted.items():
        assert any(s.operator == "<" for s in req.specifier), f"{name} has no upper bound"
        assert req.specifier.contains(locked[name]), f"{name} {locked[name]} is outside {req.specifier}"
