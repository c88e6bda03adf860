"""Two namespaces with the same object names are two proxy groups: the real
`tsgw run --standalone` serves examples/standalone's ingress copied into namespaces `team-a` and
`team-b` (same object names, backends answering different bodies), and one real Envoy per
namespace, announcing node cluster `web-tssvc.team-a` or `web-tssvc.team-b`, routes to its own
namespace's backend. Deleting team-b's object clears team-b's snapshot only; team-a's traffic
keeps flowing.

Each Envoy runs in a network namespace of its own, as each proxy pod has one: both bind the
same listener port (the first listener port), which on one host's loopback they would share
through SO_REUSEPORT. They reach tsgw's xDS port and the backends on the host through reverse
port-forwards at the same port numbers, so the folder's addresses hold inside and out.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.standalone import EXAMPLE, Tsgw, envoy_bootstrap, get, wait_until
from tests.support.backend import HttpBackend
from tests.support.netns import NetNS
from tests.support.process import Process
from tools.testbin import bin_path

pytestmark = pytest.mark.e2e

TEAMS = ("team-a", "team-b")


@dataclass
class Team:
    namespace: str
    primary: HttpBackend
    standby: HttpBackend
    netns: NetNS | None = None
    envoy: Process | None = None
    port: int = 0
    """The host port forwarded to the Envoy's ingress listener inside its network namespace."""

    @property
    def node_cluster(self) -> str:
        return f"web-tssvc.{self.namespace}"

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self.netns is not None:
            self.netns.delete()
        self.primary.stop()
        self.standby.stop()


def write_team(folder: Path, team: Team) -> None:
    """examples/standalone's web.yaml and backends.yaml in ``team``'s namespace and backends."""
    d = folder / team.namespace
    d.mkdir(parents=True)
    web = (EXAMPLE / "web.yaml").read_text()
    assert web.count("namespace: demo") == 1
    (d / "web.yaml").write_text(web.replace("namespace: demo", f"namespace: {team.namespace}"))
    backends = (EXAMPLE / "backends.yaml").read_text()
    assert backends.count("namespace: demo") == 4
    backends = backends.replace("namespace: demo", f"namespace: {team.namespace}")
    backends = backends.replace("port: 18081", f"port: {team.primary.port}")
    (d / "backends.yaml").write_text(backends.replace("port: 18082", f"port: {team.standby.port}"))


def start_envoy(tsgw: Tsgw, team: Team, workdir: Path) -> None:
    """One Envoy of ``team``'s proxy group, in a network namespace of its own."""
    ns = team.netns = NetNS(prefix="tsgw-ident")
    for port in (tsgw.xds_port, team.primary.port, team.standby.port):
        ns.expose_host_port(port, port)
    config = workdir / f"envoy-{team.namespace}.yaml"
    config.write_text(yaml.safe_dump(envoy_bootstrap(team.node_cluster, "web-0", tsgw.xds_port)))
    team.envoy = Process(
        f"envoy-{team.namespace}",
        [bin_path("envoy"), "-c", config, "--disable-hot-restart", "--concurrency", "1"],
        workdir / f"envoy-{team.namespace}.log",
        netns=ns.name,
    )
    team.port = ns.forward(tsgw.listener_port)


def snapshot_groups(tsgw: Tsgw) -> set[str]:
    """The groups `tsgw snapshot list` shows."""
    out = tsgw.cli("snapshot", "list")
    assert out.returncode == 0, out.stderr
    return {line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()}


@pytest.fixture
def teams() -> Iterator[dict[str, Team]]:
    made = {ns: Team(ns, HttpBackend(ns).start(), HttpBackend(f"{ns}-standby").start()) for ns in TEAMS}
    try:
        yield made
    finally:
        for team in made.values():
            team.stop()


def test_the_same_names_in_two_namespaces_are_two_groups_each_serving_its_own_backends(
    tmp_path: Path, teams: dict[str, Team]
) -> None:
    folder = tmp_path / "standalone"
    folder.mkdir()
    shutil.copy(EXAMPLE / "tailnet.yaml", folder / "tailnet.yaml")
    for team in teams.values():
        write_team(folder, team)
    tsgw = Tsgw(folder, tmp_path)
    try:
        for team in teams.values():
            start_envoy(tsgw, team, tmp_path)
        a, b = teams["team-a"], teams["team-b"]

        # Each Envoy reaches its own namespace's backend, never the other's.
        assert wait_until(lambda: get(a.port) == (200, "team-a"))
        assert wait_until(lambda: get(b.port) == (200, "team-b"))
        assert [get(a.port) for _ in range(5)] == [(200, "team-a")] * 5
        assert [get(b.port) for _ in range(5)] == [(200, "team-b")] * 5
        assert a.primary.requests >= 6
        assert b.primary.requests >= 6

        # Two snapshots, one per node cluster; each Envoy connected under its own.
        assert snapshot_groups(tsgw) == {"web-tssvc.team-a", "web-tssvc.team-b"}
        nodes = {n["cluster"]: n for n in tsgw.status_json()["nodes"]}
        assert set(nodes) == {"web-tssvc.team-a", "web-tssvc.team-b"}
        assert all(n["group"] == cluster for cluster, n in nodes.items())

        # Deleting team-b's object clears team-b's snapshot only.
        (folder / "team-b" / "web.yaml").unlink()
        wait_until(lambda: snapshot_groups(tsgw) == {"web-tssvc.team-a"})
        assert [get(a.port) for _ in range(5)] == [(200, "team-a")] * 5
        status = tsgw.status()
        (row_a,) = [ln for ln in status.splitlines() if "web-tssvc.team-a" in ln]
        assert row_a.split()[-4:] == ["SYNCED"] * 4
        assert "ok, " in status  # no problem: deleting an object is not an error
    finally:
        tsgw.stop()
