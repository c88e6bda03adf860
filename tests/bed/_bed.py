"""The bed: a real Kubernetes control plane, kube-proxy and CoreDNS, with process kubelets.

Start order (each step waits for the previous one to be ready):

1. the network (``_topology.build``);
2. etcd and kube-apiserver in node 0's namespace, bound to node 0's fabric address, with a
   serving cert for that address, ``10.96.0.1`` and ``kubernetes.default.svc``, ``Node,RBAC``,
   NodeRestriction and the ServiceAccount admission plugin, static tokens for every component;
3. kube-controller-manager (all default controllers, per-controller service accounts) and
   kube-scheduler, also in node 0's namespace;
4. a process kubelet and a kube-proxy (nftables mode) per node;
5. CoreDNS as a Deployment with a ClusterIP Service ``kube-dns`` at ``10.96.0.10``.

Stop order is the reverse (API server before etcd: one whose etcd is gone takes > 20 s to exit),
then every namespace whose name starts with the bed's prefix is swept.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.bed import _topology
from tests.bed._images import ROOT
from tests.bed._tailnet import BedTailnet
from tests.bed._topology import Plan
from tests.support.controlplane import ControlPlane
from tests.support.process import NotReady, Process
from tools import image_tree
from tools.netns import Namespace
from tools.testbin import bin_path

API_PORT = 6443
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SVC = "10.96.0.1"
DNS_SVC = "10.96.0.10"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.13.1"


@dataclass(frozen=True)
class BedOptions:
    """How to build a bed."""

    nodes: int = 1
    """Number of nodes (default 1); node 0 also runs the control plane."""
    dns: bool = True
    """Run CoreDNS on the bed (default True); needs kube-proxy."""
    proxy: bool = True
    """Run kube-proxy in nftables mode on every node (default True)."""
    backoff_base: float = 10.0
    """Container restart back-off start in seconds (default 10, a real kubelet's)."""
    tailnet: bool = False
    """Run Headscale in the bed's tailnet namespace (default False); devices join it with
    ``bed.tailnet.device(name, key)``, see :attr:`Bed.tailnet`."""
    apiserver_args: tuple[str, ...] = ()
    """Extra kube-apiserver flags (a benchmark's audit log, for one)."""
    headscale_tuning: Mapping[str, str] | None = None
    """Headscale's ``tuning:`` section (default None: Headscale's own defaults);
    ``tools.tailnet.HEADSCALE_FAST_BATCHING`` joins a device in ~0.3 s instead of ~2 s."""


class Bed:
    """One test bed. ``start()`` blocks until the control plane and every node are ready.

    ``kubeconfig`` is an admin kubeconfig for the test process (server on a host loopback port
    forwarded into node 0's namespace); ``kubectl(*args)`` runs kubectl with it.
    """

    def __init__(self, workdir: Path, options: BedOptions | None = None) -> None:
        self.options = options or BedOptions()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index = _topology.claim_index(os.getpid())
        self.plan = Plan(self.index, self.options.nodes)
        self.ns: dict[str, Namespace] = {}
        self.cp: ControlPlane | None = None
        self.processes: list[Process] = []
        self.kubelets: list[Process] = []
        self.tokens = {
            "controller-manager": secrets.token_hex(16),
            "scheduler": secrets.token_hex(16),
            "proxy": secrets.token_hex(16),
            **{f"node{k}": secrets.token_hex(16) for k in range(self.options.nodes)},
        }
        self.kubeconfig = self.dir / "kubeconfig"
        self.timings: dict[str, float] = {}
        self.tailnet: BedTailnet | None = None
        self._closed = False

    # -- start -----------------------------------------------------------------------------

    def start(self) -> Bed:
        t0 = time.monotonic()
        # The tsgw image's file tree (`*/tsgw` runs it): built here, not by a kubelet starting a
        # pod, so a cold build never stalls a kubelet; a hash of the sources when cached.
        image_tree.ensure()
        try:
            self.ns = _topology.build(self.plan)
            self._start_control_plane()
            self.timings["control_plane_s"] = time.monotonic() - t0
            for k in range(self.options.nodes):
                self._start_kubelet(k)
            if self.options.proxy:
                for k in range(self.options.nodes):
                    self._start_kube_proxy(k)
            self.wait_nodes_ready()
            # Pods of the default namespace need its ServiceAccount (the real controller makes it).
            self.kubelets[0].wait_ready(
                lambda: bool(self.get("serviceaccount", "default", "-n", "default")),
                timeout=60,
                what="default ServiceAccount",
            )
            self.timings["nodes_ready_s"] = time.monotonic() - t0
            if self.options.dns:
                self._start_coredns()
                self.timings["dns_ready_s"] = time.monotonic() - t0
            if self.options.tailnet:
                self.tailnet = BedTailnet(
                    self.dir / "tailnet",
                    self.ns["tailnet"],
                    self.plan.tailnet_ip,
                    self.plan,
                    tuning=self.options.headscale_tuning,
                )
                self.processes.append(self.tailnet.headscale)
        except BaseException:
            self.stop()
            raise
        (self.dir / "bed.json").write_text(json.dumps(self.describe(), indent=2))
        return self

    @property
    def node0(self) -> Namespace:
        return self.ns["node0"]

    @property
    def api_url(self) -> str:
        """The API server's address inside the bed (from nodes, pods and the tailnet)."""
        return f"https://{self.plan.node_ip(0)}:{API_PORT}"

    def _kubeconfig(self, path: Path, server: str, token: str) -> Path:
        assert self.cp is not None
        ca = base64.b64encode(self.cp.ca_file.read_bytes()).decode()
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "bed", "cluster": {"server": server, "certificate-authority-data": ca}}
                    ],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "bed", "context": {"cluster": "bed", "user": "u"}}],
                    "current-context": "bed",
                },
                indent=2,
            )
        )
        return path

    def _start_control_plane(self) -> None:
        t = self.tokens
        nodes = [
            f'{t[f"node{k}"]},system:node:{self.plan.node_name(k)},node-{k},"system:nodes"'
            for k in range(self.options.nodes)
        ]
        self.cp = ControlPlane(
            self.dir / "control-plane",
            netns=self.node0.name,
            host=self.plan.node_ip(0),
            port=API_PORT,
            sans=[
                "127.0.0.1",
                KUBERNETES_SVC,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            service_cidr=SERVICE_CIDR,
            authorization_mode="Node,RBAC",
            disable_admission_plugins="StorageObjectInUseProtection",
            extra_tokens=[
                f"{t['controller-manager']},system:kube-controller-manager,kcm",
                f"{t['scheduler']},system:kube-scheduler,sched",
                f"{t['proxy']},system:kube-proxy,proxy",
                *nodes,
            ],
            extra_args=[
                "--enable-admission-plugins=NodeRestriction",
                "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP",
                *self.options.apiserver_args,
            ],
        )
        self.cp.start()
        self.processes += [p for p in (self.cp.etcd, self.cp.apiserver) if p is not None]
        port = self.node0.forward(API_PORT, self.plan.node_ip(0))
        self.api_forward = f"https://127.0.0.1:{port}"
        self._kubeconfig(self.kubeconfig, self.api_forward, self.cp.token)
        comp = self.dir / "components"
        comp.mkdir(exist_ok=True)
        pki = self.cp.dir / "pki"
        kcm = self._kubeconfig(comp / "controller-manager.kubeconfig", self.api_url, t["controller-manager"])
        self._run(
            "kube-controller-manager",
            [
                bin_path("kube-controller-manager"),
                f"--kubeconfig={kcm}",
                "--controllers=*",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-cidr={self.plan.cluster_cidr}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10257",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ],
            self.node0,
        )
        sch = self._kubeconfig(comp / "scheduler.kubeconfig", self.api_url, t["scheduler"])
        self._run(
            "kube-scheduler",
            [
                bin_path("kube-scheduler"),
                f"--kubeconfig={sch}",
                f"--authentication-kubeconfig={sch}",
                f"--authorization-kubeconfig={sch}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10259",
            ],
            self.node0,
        )

    def _run(self, name: str, argv: list[Any], ns: Namespace, **kw: Any) -> Process:
        p = Process(f"bed{self.index}-{name}", argv, self.dir / "logs" / f"{name}.log", netns=ns.name, **kw)
        self.processes.append(p)
        return p

    def _start_kubelet(self, k: int) -> None:
        d = self.dir / "nodes" / f"node{k}"
        d.mkdir(parents=True, exist_ok=True)
        assert self.cp is not None
        cfg = {
            "node": self.plan.node_name(k),
            "node_ip": self.plan.node_ip(k),
            "pod_cidr": self.plan.pod_cidr(k),
            "bridge": "cbr0",
            "api": self.api_url,
            "token": self.tokens[f"node{k}"],
            "ca_file": str(self.cp.ca_file),
            "dir": str(d),
            "netns_prefix": self.plan.pod_ns_prefix(k),
            "cluster_dns": DNS_SVC,
            "kubernetes_service": KUBERNETES_SVC,
            "backoff_base": self.options.backoff_base,
        }
        (d / "kubelet.json").write_text(json.dumps(cfg, indent=2))
        # nsenter --net only: the kubelet stays in the host's mount namespace, so the pod
        # namespaces it makes with `ip netns add` are visible (and removable) from the host.
        p = Process(
            f"bed{self.index}-kubelet-{k}",
            [
                "nsenter",
                f"--net=/run/netns/{self.plan.node_ns(k)}",
                sys.executable,
                "-m",
                "tests.bed.kubelet",
                d / "kubelet.json",
            ],
            self.dir / "logs" / f"kubelet-{k}.log",
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT)},
        )
        self.processes.append(p)
        self.kubelets.append(p)

    def _start_kube_proxy(self, k: int) -> None:
        d = self.dir / "nodes" / f"node{k}"
        kc = self._kubeconfig(d / "kube-proxy.kubeconfig", self.api_url, self.tokens["proxy"])
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": str(kc)},
            "hostnameOverride": self.plan.node_name(k),
            "bindAddress": self.plan.node_ip(k),
            "clusterCIDR": self.plan.cluster_cidr,
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            # Conntrack tuning cannot be written from a network namespace: zero means "leave it".
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            # Replies from a backend on the same bridge must come back through the node.
            "nftables": {"masqueradeAll": True},
        }
        cfg = d / "kube-proxy.yaml"
        cfg.write_text(yaml.safe_dump(config))
        nft_dir = str(bin_path("nft").parent)
        self._run(
            f"kube-proxy-{k}",
            [bin_path("kube-proxy"), f"--config={cfg}", "--v=1"],
            self.ns[f"node{k}"],
            env={"PATH": f"{nft_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"},
        )

    # -- API helpers -----------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> str:
        """Run kubectl with the admin kubeconfig; returns stdout (raises with stderr)."""
        p = subprocess.run(
            [str(bin_path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def apply(self, objs: Iterable[dict[str, Any]] | str) -> None:
        text = objs if isinstance(objs, str) else yaml.safe_dump_all(list(objs))
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait_nodes_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            nodes = self.get("nodes")["items"]
            ok = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])
                )
            ]
            return len(ok) == self.options.nodes

        self.kubelets[0].wait_ready(ready, timeout=timeout, what="all nodes Ready")

    def _start_coredns(self) -> None:
        self.apply(coredns_manifests())
        assert self.cp is not None
        self.kubelets[0].wait_ready(
            lambda: (
                self.get("deployment", "-n", "kube-system", "coredns")["status"].get("availableReplicas", 0)
                >= 1
            ),
            timeout=90,
            what="CoreDNS available",
        )

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prefix": self.plan.prefix,
            "nodes": [
                {
                    "name": self.plan.node_name(k),
                    "ip": self.plan.node_ip(k),
                    "podCIDR": self.plan.pod_cidr(k),
                    "netns": self.plan.node_ns(k),
                }
                for k in range(self.options.nodes)
            ],
            "api": self.api_url,
            "kubeconfig": str(self.kubeconfig),
            "logs": str(self.dir / "logs"),
            "pod_logs": [str(self.dir / "nodes" / f"node{k}" / "logs") for k in range(self.options.nodes)],
            "timings": self.timings,
            **({"tailnet": self.tailnet_info()} if self.tailnet is not None else {}),
        }

    def tailnet_info(self) -> dict[str, Any]:
        """Where the bed's Headscale is, and how to reach it (for the CLI and bed.json)."""
        assert self.tailnet is not None
        return {
            "headscale": self.tailnet.url,
            "headscale_config": str(self.tailnet.config),
            "netns": self.plan.tailnet_ns,
            "user_id": next(
                (u["id"] for u in self.tailnet.headscale_cli("users", "list") or [] if u["name"] == "bed"),
                None,
            ),
            "devices": [
                {
                    "name": d.name,
                    "netns": d.ns.name if d.ns else "",
                    "address": d.address,
                    "tailnet_ip": d.ip4(),
                    "socket": str(d.socket),
                }
                for d in self.tailnet.nodes
            ],
        }

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The log file(s) the process kubelets keep for a pod's containers."""
        out = []
        for k in range(self.options.nodes):
            for f in sorted((self.dir / "nodes" / f"node{k}" / "logs").glob(f"{namespace}_{pod}_*.log")):
                if container is None or f.name == f"{namespace}_{pod}_{container}.log":
                    out.append(f.read_text(errors="replace"))
        return "".join(out)

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything; returns the namespaces the final sweep still had to remove."""
        if self._closed:
            return []
        self._closed = True
        for p in self.kubelets:
            p.stop(timeout=30)  # kubelets stop their pods first
        if self.tailnet is not None:
            self.tailnet.close()
        for p in reversed(self.processes):
            if p.alive():
                p.stop(timeout=20)
        for ns in self.ns.values():
            ns.close_forwards()
        swept = _topology.sweep(self.plan.prefix)
        _topology.release_index(self.index)
        return swept

    def __enter__(self) -> Bed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def coredns_manifests() -> list[dict[str, Any]]:
    """CoreDNS the way kubeadm installs it, less what the bed does not need (no upstream)."""
    labels = {"k8s-app": "kube-dns"}
    corefile = (
        ".:53 {\n    errors\n    health {\n        lameduck 1s\n    }\n    ready\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n"
        "       fallthrough in-addr.arpa ip6.arpa\n       ttl 5\n    }\n    cache 5\n    loop\n"
        "    reload\n}\n"
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
                                ],
                                "ports": [
                                    {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                    {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                    "failureThreshold": 5,
                                },
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SVC,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


__all__ = ["Bed", "BedOptions", "NotReady"]
