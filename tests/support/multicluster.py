"""Two Kubernetes beds on one tailnet in a box: what the multi-cluster e2e test
(``tests/e2e/bed/test_multicluster.py``) and ``just bench multicluster`` share.

:func:`linked_box` runs the box in bed A's tailnet namespace and links it to bed B: one veth from
that namespace onto bed B's fabric bridge, an address of bed B's fabric on it, routes from there
to bed B's pod networks and from bed B's nodes to the box's address. Nothing else links the beds,
nothing links either to the host. :func:`install_cluster` installs the operator as a user would
(the tailscale overlay with its own OAuth client and ``--cluster-id``, one operator replica);
:func:`host_web` a backend named after the cluster (``web-a``: the answer says which cluster
served) and a TailscaleServices for ``svc:web`` with one proxy.
"""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed import Bed
from tests.e2e.bed.helpers import BOX_OVERLAY as OVERLAY
from tests.e2e.bed.helpers import get_headers, pods, ready, uninstall, wait
from tests.e2e.bed.test_tailscale_services import APPS, BOX_TAGS, SVC
from tests.support.boxed_fake import OPERATOR_TAG, BoxedTailnet, boxed_tailnet
from tests.support.install import copy_install, install_on_bed
from tests.support.tailnet import Node

__all__ = [
    "APPS",
    "CLUSTERS",
    "SVC",
    "Prober",
    "host_web",
    "install_cluster",
    "linked_box",
    "served_by",
    "uninstall_cluster",
]

CLUSTERS = ("cluster-a", "cluster-b")
INGRESS = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=web-tssvc"


@contextlib.contextmanager
def linked_box(bed: Bed, bed_b: Bed, workdir: Path) -> Iterator[BoxedTailnet]:
    """The box in bed A's tailnet namespace on an address of its own, reachable from bed B;
    the policy approves ``tag:k8s`` hosts of svc:web."""
    tn = bed.ns["tailnet"]
    address = bed.plan.tailnet_ip.rsplit(".", 1)[0] + ".3"
    b_side = bed_b.plan.tailnet_ip.rsplit(".", 1)[0] + ".3"  # free on bed B's fabric
    tn.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    try:
        tn.run(
            ["ip", "link", "add", "mc0", "type", "veth", "peer", "name", "mcA", "netns", bed_b.plan.fabric_ns]
        )
        bed_b.ns["fabric"].run(["ip", "link", "set", "mcA", "master", "fab0", "up"])
        tn.run(["ip", "addr", "add", f"{b_side}/24", "dev", "mc0"])
        tn.run(["ip", "link", "set", "mc0", "up"])
        for k in range(bed_b.plan.nodes):
            tn.run(["ip", "route", "add", bed_b.plan.pod_cidr(k), "via", bed_b.plan.node_ip(k)])
            bed_b.ns[f"node{k}"].run(["ip", "route", "add", f"{address}/32", "via", b_side])
        with boxed_tailnet(workdir, tn, address, api_in_namespace=True, tags=BOX_TAGS) as box:
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


def install_cluster(bed: Bed, box: BoxedTailnet, workdir: Path, cluster: str) -> Path:
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


def host_web(bed: Bed, cluster: str) -> None:
    backend = f"web-{cluster[-1]}"
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: {backend}, namespace: {APPS}}}
            spec:
              replicas: 1
              selector: {{matchLabels: {{app: {backend}}}}}
              template:
                metadata: {{labels: {{app: {backend}}}}}
                spec:
                  containers: [{{name: web, image: bed.test/backend}}]
            ---
            apiVersion: v1
            kind: Service
            metadata: {{name: web, namespace: {APPS}}}
            spec:
              # Its own label: the shared bed may run other modules' app=web pods.
              selector: {{app: {backend}}}
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


def uninstall_cluster(bed: Bed, cluster: str, overlay: Path) -> None:
    bed.kubectl("delete", "tailscaleservices", "--all", "-A", "--ignore-not-found", check=False, timeout=120)
    backend = f"deployment/web-{cluster[-1]}"
    bed.kubectl("delete", "-n", APPS, backend, "service/web", "--ignore-not-found", check=False, timeout=120)
    uninstall(bed, overlay, ())


def served_by(client: Node, vip: str) -> str:
    """Which cluster answered (``cluster-a``/``cluster-b``), or ``failed: ...``."""
    line, body = get_headers(client, vip)
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
            self.answers.append((time.monotonic(), served_by(self.client, self.vip)))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
