"""Two clusters host one Tailscale Service: the failover when the serving cluster lets go.

Two 1-node Kubernetes beds on one tailnet in a box (``tests/support/multicluster.py``: the box in
bed A's tailnet namespace, linked to bed B's fabric). Each bed installs the operator with its own
``--cluster-id`` and OAuth client, a backend named after its cluster and a TailscaleServices for
``svc:web`` (one proxy). A tailnet client sends a request to the VIP every 100 ms. Each run: wait
until both clusters' claims are on the service and both proxies are approved hosts, delete the
TailscaleServices in the cluster that answers, wait for 10 answers in a row from the other, then
re-create it. Per run: the gap between the last answer of the first cluster and the first of the
other, and the requests that failed. Service definition writes are the fake's PUT and DELETE
calls on ``svc:web`` over the whole benchmark (and how many changed its ports or tags).

The box fails a service over as soon as the primary host's map poll closes (its README): on
Tailscale's control plane the switch may take longer, which this does not measure.

Last line: one JSON object, ``{"bench": "multicluster", "failover_gap_ms_p50": ..,
"failed_requests": .., "definition_writes": .., ...}``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.bed import Bed, BedOptions
from tests.e2e.bed.helpers import wait
from tests.support.boxed_fake import BoxedTailnet
from tests.support.multicluster import (
    APPS,
    CLUSTERS,
    SVC,
    Prober,
    host_web,
    install_cluster,
    linked_box,
    served_by,
    uninstall_cluster,
)
from tests.support.tailnet_services import auth_key
from tsgw.tailscale import NotFoundError, TailscaleService, owners_of


def say(msg: str) -> None:
    print(f"[multicluster] {msg}", file=sys.stderr, flush=True)


def _service(box: BoxedTailnet) -> TailscaleService | None:
    try:
        return box.call(box.ts.get_service, SVC)
    except NotFoundError:
        return None


def _both_hosting(box: BoxedTailnet) -> bool:
    svc = _service(box)
    if svc is None or {o.operator_id for o in owners_of(svc) or ()} != set(CLUSTERS):
        return False
    hosts = box.box.admin.service_hosts(SVC)
    return len([h for h in hosts if h.get("approved") and h.get("serviceHost")]) == 2


def _definition_writes(box: BoxedTailnet) -> tuple[int, int]:
    writes = redefinitions = 0
    last: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    for c in list(box.fake.calls):
        if (
            not c.path.endswith(f"/vip-services/{SVC}")
            or c.status != 200
            or c.method not in ("PUT", "DELETE")
        ):
            continue
        writes += 1
        if c.method == "DELETE":
            last = None
            continue
        d = (tuple(c.body["ports"]), tuple(c.body.get("tags") or ()))
        redefinitions += last is not None and d != last
        last = d
    return writes, redefinitions


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="just bench multicluster")
    p.add_argument("--runs", type=int, default=3, help="failovers (default 3)")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    result: dict[str, Any] = {"bench": "multicluster", "runs": args.runs}
    gaps: list[float] = []
    failed: list[int] = []
    requests: list[int] = []
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-multicluster-") as tmpdir:
        tmp = Path(tmpdir)
        beds = {c: Bed(tmp / c, BedOptions(nodes=1, backoff_base=2.0)) for c in CLUSTERS}
        try:
            t0 = time.monotonic()
            for b in beds.values():
                b.start()
            say(f"beds up in {time.monotonic() - t0:.1f} s")
            bed_a, bed_b = (beds[c] for c in CLUSTERS)
            with (
                linked_box(bed_a, bed_b, tmp / "box") as box,
                concurrent.futures.ThreadPoolExecutor(2) as pool,
            ):
                overlays: dict[str, Path] = {}
                try:
                    futs = {
                        c: pool.submit(install_cluster, beds[c], box, tmp / f"install-{c}", c)
                        for c in CLUSTERS
                    }
                    for c, f in futs.items():
                        overlays[c] = f.result()
                    for hosted in [pool.submit(host_web, beds[c], c) for c in CLUSTERS]:
                        hosted.result()
                    wait(
                        lambda: _both_hosting(box), timeout=180, what="both clusters host svc:web", interval=1
                    )
                    svc = _service(box)
                    assert svc is not None
                    vip = next(a for a in svc.addrs if "." in a)
                    client = box.box.join("bench-client", auth_key(box, ("tag:client",)), socks5=True)
                    wait(
                        lambda: not served_by(client, vip).startswith("failed"),
                        timeout=120,
                        what="the client reaches svc:web",
                        interval=0.5,
                    )
                    for run in range(args.runs):
                        gap, bad, n = _failover(beds, box, client, vip)
                        gaps.append(gap)
                        failed.append(bad)
                        requests.append(n)
                        say(f"run {run + 1}: gap {gap:.0f} ms, {bad} of {n} requests failed")
                finally:
                    for gone in [pool.submit(uninstall_cluster, beds[c], c, o) for c, o in overlays.items()]:
                        gone.result()
                writes, redefinitions = _definition_writes(box)
        finally:
            for b in beds.values():
                b.stop()
    result.update(
        {
            "failover_gap_ms_p50": round(statistics.median(gaps), 1) if gaps else None,
            "failover_gap_ms_max": round(max(gaps), 1) if gaps else None,
            "failed_requests": sum(failed),
            "failed_requests_per_run": failed,
            "requests": sum(requests),
            "definition_writes": writes,
            "definition_changes": redefinitions,
            "probe_period_ms": 100,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
    )
    print(json.dumps(result))
    return 0


def _failover(beds: dict[str, Bed], box: BoxedTailnet, client: Any, vip: str) -> tuple[float, int, int]:
    """Delete the TailscaleServices where it is served, measure, re-create it: (gap ms, failed, sent)."""
    wait(lambda: _both_hosting(box), timeout=240, what="both clusters host svc:web", interval=1)
    first = wait(
        lambda: r if not (r := served_by(client, vip)).startswith("failed") else None,
        timeout=60,
        what="an answer",
        interval=0.2,
    )
    other = next(c for c in CLUSTERS if c != first)
    prober = Prober(client, vip, period=0.1)
    thread = threading.Thread(target=prober.run, name="bench-prober", daemon=True)
    thread.start()
    try:
        wait(lambda: len(prober.answers) >= 5, timeout=30, what="answers before the deletion", interval=0.05)
        beds[first].kubectl("delete", "tailscaleservices", "-n", APPS, "web", "--wait=false")

        def switched() -> bool:
            tail = [w for _, w in prober.answers[-10:]]
            return len(tail) == 10 and all(w == other for w in tail)

        wait(switched, timeout=240, what=f"10 answers in a row from {other}", interval=0.2)
    finally:
        prober.stop()
        thread.join(timeout=10)
    answers = list(prober.answers)
    first_other = next(i for i, (_, w) in enumerate(answers) if w == other)
    last_first = max((i for i, (_, w) in enumerate(answers) if w == first), default=first_other)
    gap = (answers[first_other][0] - answers[last_first][0]) * 1000
    bad = len([w for _, w in answers if w.startswith("failed")])
    # Back: the cluster re-creates its object (a new proxy, a new claim); it joins as a host.
    host_web(beds[first], first)
    return gap, bad, len(answers)
