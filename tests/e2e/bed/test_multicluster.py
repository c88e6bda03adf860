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
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bed import Bed, BedOptions
from tests.e2e.bed.helpers import assert_bed_gone, wait
from tests.e2e.bed.test_tailscale_services import APPS, SVC, _service
from tests.support.boxed_fake import BoxedTailnet
from tests.support.multicluster import (
    CLUSTERS,
    Prober,
    host_web,
    install_cluster,
    linked_box,
    served_by,
    uninstall_cluster,
)
from tests.support.tailnet_services import auth_key
from tsgw.tailscale import owners_of

pytestmark = pytest.mark.e2e


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
    with linked_box(bed, bed_b, tmp_path_factory.mktemp("mc-box")) as box:
        yield box


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
            c: pool.submit(install_cluster, b, mc_box, tmp_path_factory.mktemp(f"install-{c}"), c)
            for c, b in beds.items()
        }
        try:
            for c, f in futures.items():
                tc.overlays[c] = f.result()
            for f2 in [pool.submit(host_web, b, c) for c, b in beds.items()]:
                f2.result()
            yield tc
        finally:
            for f3 in [pool.submit(uninstall_cluster, beds[c], c, o) for c, o in tc.overlays.items()]:
                f3.result()


def test_two_clusters_host_svc_web_and_traffic_survives_deleting_it_in_one(two: TwoClusters) -> None:
    box = two.box

    def both_claims() -> set[str]:
        svc = _service(box, SVC)
        ids = {o.operator_id for o in owners_of(svc) or ()} if svc is not None else set()
        return ids if ids == set(CLUSTERS) else set()

    wait(both_claims, timeout=120, what="both clusters' claims on svc:web", interval=1)
    for cluster, bed in two.beds.items():
        peer = next(c for c in CLUSTERS if c != cluster)

        def claimed(bed: Bed = bed, peer: str = peer) -> bool:
            status = bed.get("tailscaleservices", "-n", APPS, "web").get("status") or {}
            c = {c["type"]: c for c in status.get("conditions") or []}.get("TailscaleServiceClaimed")
            return (
                c is not None and c["status"] == "True" and f"shared with cluster(s) {peer}" in c["message"]
            )

        wait(
            claimed,
            timeout=60,
            what=f"{cluster}'s TailscaleServiceClaimed=True, shared with {peer}",
            interval=1,
        )

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
        lambda: r if not (r := served_by(client, vip)).startswith("failed") else None,
        timeout=120,
        what=f"the client reaches a backend through {SVC} ({vip})",
        interval=0.5,
    )
    other = next(c for c in CLUSTERS if c != first)
    before = [served_by(client, vip) for _ in range(10)]
    # One primary host for every client (the box's rule). A dial the tailnet did not carry (a
    # loaded machine) says nothing about which host serves: only answers count here.
    answered = [w for w in before if not w.startswith("failed: 'dial failed")]
    assert answered, before
    assert answered == [first] * len(answered), before

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
