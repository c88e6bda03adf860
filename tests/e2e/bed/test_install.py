"""Installing tsgw as docs/install.md tells a user: `kubectl apply -k` of an overlay (Headscale,
pointed at the bed's Headscale), on the bed's real control plane, with the operator image's own
file tree running as the pods (tests/bed/_images.py, tools/image_tree.py).

Checked: both replicas become Ready through their probes; one holds the Lease and runs the
controllers, the other does not; the xDS Service has both as ready endpoints; /metrics serves the
xDS server's and the controllers' series; every process of the operator's pods runs as uid 65532
with no capabilities; the operator's RBAC is enough to apply a proxy group's objects (Role
included) and write status; `kubectl delete -k` removes everything.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bed import Bed
from tests.e2e.bed.helpers import pod_processes, pods, proc_status, wait
from tests.support.install import copy_install, install_on_bed, render
from tools import image_tree

pytestmark = pytest.mark.e2e

NS = "tsgw-system"
SELECTOR = "app.kubernetes.io/name=tsgw,app.kubernetes.io/component=operator"
OVERLAY = Path(__file__).parent / "install"


@pytest.fixture(scope="module")
def installed(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The install applied; yields the overlay's folder. Deleted at the end if a test did not."""
    assert bed.tailnet is not None
    tree = copy_install(tmp_path_factory.mktemp("install"))
    # A real API key: the proxy group's pods start only once each replica's key is minted.
    (tree / "overlays" / "headscale" / "api_key").write_text(bed.tailnet.api_key())
    overlay = tree / "overlays" / "bed"
    shutil.copytree(OVERLAY, overlay)
    (overlay / "headscale-url.yaml").write_text(
        "apiVersion: gateway.tailscale.com/v1alpha1\n"
        "kind: TailscaleTailnet\n"
        "metadata: {name: headscale}\n"
        f"spec: {{controlPlane: {{type: Headscale, apiURL: '{bed.tailnet.url}'}}}}\n"
    )
    took = install_on_bed(bed, tree, overlay, namespace=NS)
    print(f"\ninstall: apply to both operator pods Ready in {took:.1f} s")
    yield overlay
    bed.kubectl("delete", "--ignore-not-found", "--wait=false", "-k", str(overlay), check=False)


def _operator_pods(bed: Bed) -> list[dict[str, Any]]:
    items = pods(bed, SELECTOR, NS)
    assert len(items) == 2, [p["metadata"]["name"] for p in items]
    return items


def _metrics(bed: Bed, pod: str) -> str:
    """The pod's /metrics through the API server's proxy (node 0 routes to every pod)."""
    return bed.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{pod}:8080/proxy/metrics")


def _samples(text: str, name: str) -> list[float]:
    """Every sample of a series (``name`` with or without its ``{labels}``)."""
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in "{ "
    ]


def _leader(bed: Bed) -> str:
    return str(
        wait(
            lambda: bed.get("lease", "-n", NS, "tsgw-operator")["spec"].get("holderIdentity"),
            timeout=60,
            what="the Lease held",
        )
    )


def test_both_replicas_are_ready_and_exactly_one_leads(bed: Bed, installed: Path) -> None:
    items = _operator_pods(bed)
    names = {p["metadata"]["name"] for p in items}
    # The anti-affinity preference spread them over the two nodes.
    assert {p["spec"]["nodeName"] for p in items} == {bed.plan.node_name(0), bed.plan.node_name(1)}
    lease = _leader(bed)
    assert lease in names  # POD_NAME from the downward API is the identity
    (follower,) = names - {lease}
    status = "leader_election_master_status"
    # The Lease is written before the leader sets its gauge, logs, and starts its controllers
    # (each reports its worker count when it starts): wait for all of it on the leader.
    wait(
        lambda: (
            _samples(m := _metrics(bed, lease), status) == [1.0]
            and bool(_samples(m, "controller_runtime_max_concurrent_reconciles"))
            and "acquired the lease" in bed.pod_log(NS, lease)
        ),
        timeout=30,
        what=f"the leader {lease} reporting its controllers started",
    )
    leader_metrics, follower_metrics = _metrics(bed, lease), _metrics(bed, follower)
    assert _samples(leader_metrics, status) == [1.0]
    assert _samples(follower_metrics, status) in ([], [0.0])
    # The leader started its controllers (a started controller reports its worker count); the
    # follower's never started, and reconciled nothing.
    assert _samples(leader_metrics, "controller_runtime_max_concurrent_reconciles")
    assert not _samples(follower_metrics, "controller_runtime_max_concurrent_reconciles")
    assert not any(_samples(follower_metrics, "controller_runtime_reconcile_total"))
    assert "acquired the lease" in bed.pod_log(NS, lease)
    assert "acquired the lease" not in bed.pod_log(NS, follower)


def test_the_xds_service_has_both_replicas_as_ready_endpoints(bed: Bed, installed: Path) -> None:
    ips = {p["status"]["podIP"] for p in _operator_pods(bed)}

    def endpoints() -> set[str]:
        slices = bed.get("endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=tsgw")["items"]
        assert all(port["port"] == 18000 for s in slices for port in s["ports"])
        return {
            a for s in slices for e in s["endpoints"] if e["conditions"].get("ready") for a in e["addresses"]
        }

    assert wait(lambda: endpoints() == ips and endpoints(), timeout=30, what="2 ready xDS endpoints") == ips


def test_metrics_serve_the_xds_and_controller_series(bed: Bed, installed: Path) -> None:
    # Through the Service, as Prometheus would scrape it, and from each replica. The xDS series
    # are labelled by type or group, so until an Envoy connects only their families show (the
    # proxy-group test below sees samples).
    texts = [
        bed.kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/services/tsgw-metrics:metrics/proxy/metrics"),
        *(_metrics(bed, p["metadata"]["name"]) for p in _operator_pods(bed)),
    ]
    for text in texts:
        assert "# TYPE tsgw_xds_pushes_total counter" in text
        assert "# TYPE tsgw_xds_snapshot_generation gauge" in text
        assert _samples(text, "controller_runtime_reconcile_total")
        assert _samples(text, "workqueue_depth")


def test_every_operator_process_runs_as_non_root_without_capabilities(bed: Bed, installed: Path) -> None:
    entry = str(image_tree.tree_path() / "bin" / "tsgw")
    for pod in _operator_pods(bed):
        procs = pod_processes(pod)
        for pid in procs:
            st = proc_status(pid)
            assert st["Uid"].split() == ["65532"] * 4, (pid, st["Uid"])
            assert st["Gid"].split() == ["65532"] * 4, (pid, st["Gid"])
            assert int(st["CapEff"], 16) == 0, (pid, st["CapEff"])
            assert int(st["CapPrm"], 16) == 0, (pid, st["CapPrm"])
        # What runs is the image's file tree, not the repository's venv.
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in procs]
        assert any(entry.encode() in c for c in cmdlines), cmdlines


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def test_the_operators_rbac_applies_a_proxy_group_and_writes_status(bed: Bed, installed: Path) -> None:
    """The ServiceAccount's RBAC, for real: the leader applies a proxy group's objects (the Role
    passes RBAC's escalation check), writes the owner's status, and the group goes with it."""
    ns = "install-check"
    bed.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {
                "apiVersion": "gateway.tailscale.com/v1alpha1",
                "kind": "TailscaleEndpoints",
                "metadata": {"name": "db", "namespace": ns},
                "spec": {
                    "tailnetRef": {"name": "headscale"},
                    "targets": [{"name": "db", "address": "100.64.0.1", "ports": [{"port": 5432}]}],
                    "proxy": {"replicas": 1},
                },
            },
        ]
    )
    try:
        wait(lambda: bed.get("statefulset", "-n", ns, "db-tsep"), timeout=60, what="the StatefulSet applied")
        role = bed.get("role", "-n", ns, "db-tsep")
        assert role["rules"][0]["resourceNames"] == ["db-tsep-0"]
        accepted = wait(
            lambda: _condition(bed.get("tailscaleendpoints", "-n", ns, "db"), "Accepted"),
            timeout=60,
            what="status written",
        )
        assert accepted["status"] == "True", accepted
        # Every replica translated the group into a snapshot; the proxy's Envoy reached one of
        # them through the xDS Service (tsgw.tsgw-system.svc:18000, from its bootstrap).
        names = [p["metadata"]["name"] for p in _operator_pods(bed)]
        group = f'tsgw_xds_snapshot_generation{{group="db-tsep.{ns}"}}'
        for name in names:
            wait(lambda n=name: _samples(_metrics(bed, n), group), timeout=30, what=f"{name} snapshot")
        wait(
            lambda: sum(sum(_samples(_metrics(bed, n), "tsgw_xds_connected_streams")) for n in names) >= 1,
            timeout=90,
            what="the proxy's Envoy connected through the xDS Service",
        )
        # Only the leader reconciled.
        leader = _leader(bed)
        assert sum(_samples(_metrics(bed, leader), "controller_runtime_reconcile_total")) > 0
        for name in set(names) - {leader}:
            assert not any(_samples(_metrics(bed, name), "controller_runtime_reconcile_total"))
        # The owner goes: the garbage collector takes its group (owner references), and the
        # operator drops the group's snapshot.
        t0 = time.monotonic()
        bed.kubectl("delete", "tailscaleendpoints", "-n", ns, "db", "--wait=false")
        wait(
            lambda: not bed.kubectl("get", "statefulset,role", "-n", ns, "--ignore-not-found", "-o", "name"),
            timeout=60,
            what="the proxy group's objects collected",
        )
        for name in names:
            wait(lambda n=name: not _samples(_metrics(bed, n), group), timeout=30, what=f"{name} dropped it")
        print(f"\ninstall: proxy group gone in {time.monotonic() - t0:.1f} s")
    finally:
        bed.kubectl("delete", "namespace", ns, "--wait=false")


def test_kubectl_delete_k_removes_the_install(bed: Bed, installed: Path) -> None:
    procs = [pid for p in _operator_pods(bed) for pid in pod_processes(p)]
    rendered = render(installed)
    t0 = time.monotonic()
    # docs/install.md: the tsgw objects first (the operator cleans up after them while it runs),
    # then the install. --ignore-not-found: kubectl deletes the CRDs before the TailscaleTailnet
    # it lists after them, whose kind is then gone.
    bed.kubectl("delete", "tailscaletailnets", "--all", "--timeout=60s", timeout=90)
    bed.kubectl("delete", "-k", str(installed), "--ignore-not-found", "--wait=false")

    def gone() -> bool:
        for o in rendered:
            args = [o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found", "-o", "name"]
            if o["metadata"].get("namespace"):
                args += ["-n", o["metadata"]["namespace"]]
            if o["kind"] != "TailscaleTailnet" and bed.kubectl("get", *args):
                return False
        return not bed.kubectl("get", "namespace", NS, "--ignore-not-found", "-o", "name")

    wait(gone, timeout=120, what="every object of the install gone", interval=1.0)
    wait(
        lambda: not [pid for pid in procs if Path(f"/proc/{pid}").exists()],
        timeout=60,
        what="the operator's processes gone",
    )
    print(f"\ninstall: delete -k to everything gone in {time.monotonic() - t0:.1f} s")
    assert not bed.kubectl("get", "crd", "-o", "name").count("gateway.tailscale.com")
