"""How long the test bed takes: to a ready control plane, and to 50 Ready test-backend pods.

``just bench bed [--nodes N] [--pods P]``. Starts a bed (CoreDNS included, no tailnet), applies
a Deployment of P test-backend replicas with a readiness probe, and times until the Deployment
reports all P available (so the scheduler, the process kubelets, the probes, the pod status
writes and the Deployment controller are all in the figure). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tests.bed import BACKEND_IMAGE, Bed, BedOptions


def deployment(replicas: int) -> dict[str, object]:
    labels = {"app": "bench"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "backend",
                            "image": BACKEND_IMAGE,
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": 8080},
                                "periodSeconds": 1,
                            },
                        }
                    ]
                },
            },
        },
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="just bench bed")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--pods", type=int, default=50)
    p.add_argument("--no-dns", action="store_true", help="skip CoreDNS (faster up_s)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-bed-") as tmp:
        t0 = time.monotonic()
        bed = Bed(Path(tmp), BedOptions(nodes=args.nodes, dns=not args.no_dns))
        try:
            bed.start()
            up_s = time.monotonic() - t0
            t1 = time.monotonic()
            bed.apply([deployment(args.pods)])
            while True:
                st = bed.get("deployment", "bench")["status"]
                if st.get("availableReplicas", 0) >= args.pods:
                    break
                if time.monotonic() - t1 > 600:
                    raise TimeoutError(f"{st.get('availableReplicas', 0)}/{args.pods} available after 600 s")
                time.sleep(0.2)
            pods_ready_s = time.monotonic() - t1
            t2 = time.monotonic()
            bed.kubectl("delete", "deployment", "bench", "--wait=true")
            while bed.get("pods", "-l", "app=bench")["items"]:
                time.sleep(0.2)
            delete_s = time.monotonic() - t2
        finally:
            t3 = time.monotonic()
            bed.stop()
            down_s = time.monotonic() - t3
    result = {
        "bench": "bed",
        "nodes": args.nodes,
        "dns": not args.no_dns,
        "up_s": round(up_s, 2),
        "control_plane_s": round(bed.timings.get("control_plane_s", 0.0), 2),
        "nodes_ready_s": round(bed.timings.get("nodes_ready_s", 0.0), 2),
        "dns_ready_s": round(bed.timings.get("dns_ready_s", 0.0), 2),
        "pods": args.pods,
        "pods_ready_s": round(pods_ready_s, 2),
        "pods_deleted_s": round(delete_s, 2),
        "down_s": round(down_s, 2),
    }
    print(json.dumps(result))
    return 0
