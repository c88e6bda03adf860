"""Two clusters, one Tailscale Service: two Kubernetes beds on ONE tailnet in a box.

Bed A is the session's bed; the box (tsgw-testcontrol and the hosted-API fake) runs in its
tailnet namespace, as in ``test_tailscale_services.py``. Bed B is a second, 1-node bed; one veth
links bed A's tailnet namespace to bed B's fabric, with routes both ways between the box's
address and bed B's pod network, so bed B's operator reaches the API and its proxy reaches
control and DERP. Nothing else links the beds, and nothing links either to the host.

Each bed installs the operator as a user would (the tailscale overlay, its own OAuth client,
``--cluster-id=cluster-a`` / ``cluster-b``, one operator replica to spare the shared cores),
a backend Deployment named after its cluster (``web-a`` / ``web-b``: the answer says which
cluster served) and a TailscaleServices for ``svc:web`` with one proxy:

- both claims are on the service, both proxies are approved hosts; a tailnet client's requests
  are answered by the primary host (the box routes every client to one primary: its README);
- the TailscaleServices is deleted in the cluster that is serving: the service stays (the
  other cluster's claim, same VIPs), traffic moves to the other cluster; requests sent every
  200 ms throughout are counted: failed ones only between the last answer of the first cluster
  and the first of the second, none after;
- deleted in the other cluster too: the service is gone from the tailnet, and no proxy device
  and no unused key is left.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bed import Bed, BedOptions
from tests.e2e.bed.helpers import assert_bed_gone, pods, ready, wait
from tests.e2e.bed.test_tailscale_services import APPS, BOX_TAGS, NS, OVERLAY, SVC, _get_headers, _service
from tests.support.boxed_fake import OPERATOR_TAG, BoxedTailnet, boxed_tailnet
from tests.support.install import copy_install, install_on_bed
from tests.support.tailnet import Node
from tests.support.tailnet_services import auth_key
from tsgw.tailscale import owners_of

pytestmark = pytest.mark.e2e

CLUSTERS = ("cluster-a", "cluster-b")
INGRESS = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=web-tssvc"


@pytest.fixture(scope="module")
def bed_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    b = Bed(tmp_path_factory.mktemp("bed-b"), BedOptions(nodes=1, backoff_base=2.0))
    b.start()
    try:
        yield b
    finally:
        b.stop()
    assert_bed_gone(b)


@pytest.fixture(scope="module")
def mc_box(bed: Bed, bed_b: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxedTailnet]:
    """The box in bed A's tailnet namespace on an address of its own, reachable from bed B."""
    tn = bed.ns["tailnet"]
    address = bed.plan.tailnet_ip.rsplit(".", 1)[0] + ".3"
    b_side = bed_b.plan.tailnet_ip.rsplit(".", 1)[0] + ".3"  # free on bed B's fabric
    tn.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    tn.run(["ip", "link", "add", "mc0", "type", "veth", "peer", "name", "mcA", "netns", bed_b.plan.fabric_ns])
    try:
        fab_b = bed_b.ns["fabric"]
        fab_b.run(["ip", "link", "set", "mcA", "master", "fab0", "up"])
        tn.run(["ip", "addr", "add", f"{b_side}/24", "dev", "mc0"])
        tn.run(["ip", "link", "set", "mc0", "up"])
        for k in range(bed_b.plan.nodes):
            tn.run(["ip", "route", "add", bed_b.plan.pod_cidr(k), "via", bed_b.plan.node_ip(k)])
            bed_b.ns[f"node{k}"].run(["ip", "route", "add", f"{address}/32", "via", b_side])
        with boxed_tailnet(
            tmp_path_factory.mktemp("mc-box"), tn, address, api_in_namespace=True, tags=BOX_TAGS
        ) as box:
            box.set_policy(services={SVC: ["tag:k8s"]})
            yield box
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # gone with bed B's fabric
            tn.run(["ip", "link", "del", "mc0"])
        tn.run(["ip", "addr", "del", f"{address}/24", "dev", "eth0"])


def _overlay(cluster: str) -> str:
    assert "--cluster-id=bed\n" in OVERLAY
    return OVERLAY.replace("--cluster-id=bed\n", f"--cluster-id={cluster}\n") + (
        "replicas:\n  - name: tsgw\n    count: 1\n"
    )


def _install(bed: Bed, box: BoxedTailnet, workdir: Path, cluster: str) -> Path:
    """docs/install.md with this cluster's own OAuth client and cluster id."""
    cid, secret = box.fake.add_oauth_client(tags=(OPERATOR_TAG,))
    tree = copy_install(workdir)
    (tree / "overlays" / "tailscale" / "client_id").write_text(cid)
    (tree / "overlays" / "tailscale" / "client_secret").write_text(secret)
    overlay = tree / "overlays" / cluster
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(_overlay(cluster))
    (overlay / "api-url.yaml").write_text(
        "apiVersion: gateway.tailscale.com/v1alpha1\n"
        "kind: TailscaleTailnet\n"
        "metadata: {name: tailscale}\n"
        "spec:\n"
        f"  controlPlane: {{type: Tailscale, apiURL: '{box.api_url_inside}', loginURL: '{box.box.url}'}}\n"
    )
    install_on_bed(bed, tree, overlay, operators=1)
    return overlay


def _web(bed: Bed, cluster: str) -> None:
    backend = f"web-{cluster[-1]}"
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: {backend}, namespace: {APPS}}}
            spec:
              replicas: 1
              selector: {{matchLabels: {{app: web}}}}
              template:
                metadata: {{labels: {{app: web}}}}
                spec:
                  containers: [{{name: web, image: bed.test/backend}}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: web, namespace: {APPS}}}
            spec:
              selector: {{app: web}}
              ports: [{{name: http, port: 80, targetPort: 8080}}]
            ---
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleServices
            metadata: {{name: web, namespace: {APPS}}}
            spec:
              tailnetRef: {{name: tailscale}}
              proxy: {{replicas: 1}}
              ports: [{{port: 80, protocol: HTTP, targetPort: http}}]
              backends: [{{service: web}}]
              tags: [tag:k8s]
            """
        )
    )
    wait(
        lambda: len([p for p in pods(bed, INGRESS, APPS) if ready(p)]) == 1,
        timeout=240,
        what=f"{cluster}'s ingress proxy Ready",
        interval=1,
    )


def _uninstall(bed: Bed, cluster: str, overlay: Path) -> None:
    bed.kubectl("delete", "tailscaleservices", "--all", "-A", "--ignore-not-found", check=False, timeout=120)
    backend = f"deployment/web-{cluster[-1]}"
    bed.kubectl("delete", "-n", APPS, backend, "service/web", "--ignore-not-found", check=False, timeout=120)
    bed.kubectl("delete", "--ignore-not-found", "-k", str(overlay), check=False, timeout=180)
    wait(
        lambda: NS not in {n["metadata"]["name"] for n in bed.get("namespaces")["items"]},
        timeout=120,
        what=f"namespace {NS} gone",
    )


@dataclass
class TwoClusters:
    beds: dict[str, Bed]
    box: BoxedTailnet
    overlays: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def two(
    bed: Bed, bed_b: Bed, mc_box: BoxedTailnet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoClusters]:
    beds = dict(zip(CLUSTERS, (bed, bed_b), strict=True))
    tc = TwoClusters(beds, mc_box)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            c: pool.submit(_install, b, mc_box, tmp_path_factory.mktemp(f"install-{c}"), c)
            for c, b in beds.items()
        }
        try:
            for c, f in futures.items():
                tc.overlays[c] = f.result()
            for f2 in [pool.submit(_web, b, c) for c, b in beds.items()]:
                f2.result()
            yield tc
        finally:
            for f3 in [pool.submit(_uninstall, beds[c], c, o) for c, o in tc.overlays.items()]:
                f3.result()


def _served_by(client: Node, vip: str) -> str:
    """Which cluster answered (``cluster-a``/``cluster-b``), or ``failed: ...``."""
    line, body = _get_headers(client, vip)
    if " 200 " not in f"{line} " or not body:
        return f"failed: {line!r}"
    pod = body[0]
    for c in CLUSTERS:
        if pod.startswith(f"web-{c[-1]}-"):
            return c
    return f"failed: unknown backend {pod!r}"


@dataclass
class Prober:
    """Requests to the VIP every ``period`` seconds from a thread; each answer with its time."""

    client: Node
    vip: str
    period: float = 0.2
    answers: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            self.answers.append((time.monotonic(), _served_by(self.client, self.vip)))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()


def test_two_clusters_host_svc_web_and_traffic_survives_deleting_it_in_one(two: TwoClusters) -> None:
    box = two.box

    def both_claims() -> set[str]:
        svc = _service(box, SVC)
        ids = {o.operator_id for o in owners_of(svc) or ()} if svc is not None else set()
        return ids if ids == set(CLUSTERS) else set()

    wait(both_claims, timeout=120, what="both clusters' claims on svc:web", interval=1)

    def hosts() -> list[str]:
        hs = box.box.admin.service_hosts(SVC)
        ok = [str(h["name"]) for h in hs if h.get("approved") and h.get("serviceHost")]
        return ok if len(ok) == 2 else []

    wait(hosts, timeout=120, what="both clusters' proxies approved hosts of svc:web", interval=1)
    svc = _service(box, SVC)
    assert svc is not None
    vip = next(a for a in svc.addrs if "." in a)

    client = box.box.join("mc-client", auth_key(box, ("tag:client",)), socks5=True)
    first = wait(
        lambda: r if not (r := _served_by(client, vip)).startswith("failed") else None,
        timeout=120,
        what=f"the client reaches a backend through {SVC} ({vip})",
        interval=0.5,
    )
    other = next(c for c in CLUSTERS if c != first)
    before = [_served_by(client, vip) for _ in range(10)]
    assert before == [first] * 10, before  # one primary host for every client (the box's rule)

    # Deleted in the serving cluster: the other keeps the service and takes the traffic.
    prober = Prober(client, vip)
    thread = threading.Thread(target=prober.run, name="mc-prober", daemon=True)
    thread.start()
    try:
        wait(lambda: len(prober.answers) >= 3, timeout=30, what="answers before the deletion", interval=0.1)
        two.beds[first].kubectl("delete", "tailscaleservices", "-n", APPS, "web", "--wait=false")

        def switched() -> bool:
            tail = [who for _, who in prober.answers[-10:]]
            return len(tail) == 10 and all(w == other for w in tail)

        wait(switched, timeout=240, what=f"10 answers in a row from {other}", interval=0.5)
    finally:
        prober.stop()
        thread.join(timeout=10)
    answers = list(prober.answers)
    first_other = next(i for i, (_, w) in enumerate(answers) if w == other)
    last_first = max((i for i, (_, w) in enumerate(answers) if w == first), default=-1)
    failed = [w for _, w in answers if w.startswith("failed")]
    gap_ms = (answers[first_other][0] - answers[last_first][0]) * 1000 if last_first >= 0 else float("nan")
    print(
        f"\nfailover {first} -> {other}: {len(answers)} requests, {len(failed)} failed, "
        f"gap between the last answer of {first} and the first of {other}: {gap_ms:.0f} ms"
    )
    # No flapping and no failure once the other cluster answered.
    assert all(w == other for _, w in answers[first_other:]), answers[first_other:]
    assert last_first < first_other
    after = _service(box, SVC)
    assert after is not None, f"{SVC} deleted while {other} still hosts it"
    assert [o.operator_id for o in owners_of(after) or ()] == [other]
    assert after.addrs == svc.addrs

    def proxies() -> int:
        return len([d for d in box.call(box.ts.list_devices) if d.hostname.startswith("web-tssvc")])

    wait(lambda: proxies() == 1, timeout=120, what=f"{first}'s proxy device deleted", interval=1)

    # Deleted in the other cluster too: the service, every proxy device and unused key go.
    two.beds[other].kubectl("delete", "tailscaleservices", "-n", APPS, "web")
    wait(lambda: _service(box, SVC) is None, timeout=120, what=f"{SVC} deleted through the API")
    wait(lambda: proxies() == 0, timeout=120, what="every proxy device deleted", interval=1)
    keys = box.box.admin.list_keys()
    unused = [k for k in keys if "tag:k8s" in set(k.get("tags") or ()) and not k.get("uses")]
    assert not unused, keys
