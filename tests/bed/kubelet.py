"""The bed's process kubelet: runs the pods bound to one Node as local processes.

One kubelet per node, started by the bed inside the node's network namespace (``nsenter --net``,
so ``ip netns add`` still lands in the host's ``/run/netns``)::

    python -m tests.bed.kubelet CONFIG.json

It does what a kubelet does, as far as a test can observe through the API server: registers its
Node (addresses, capacity, Ready, pod CIDR) and renews its Lease; watches the pods bound to it;
gives each a network namespace with a veth on the node's bridge and an address from the pod CIDR;
writes its volumes (Secret, ConfigMap, emptyDir, downward API, projected service-account token from
the TokenRequest API, refreshed), ``/etc/hosts`` and ``/etc/resolv.conf``; runs init containers in
order, then containers, each through ``_launch.py`` in its own mount namespace as ``runAsUser``;
runs startup, liveness and readiness probes (HTTP, TCP, exec, gRPC); restarts with back-off per
``restartPolicy``; deletes with SIGTERM, the grace period, SIGKILL; and writes the pod's status the
way a kubelet does. A pod it cannot run (unknown image, missing Secret, bad command) gets the
status and Event a kubelet would give it; the kubelet itself never stops for a pod's fault.

What it does not do (docs/testbed.md): cgroups and resource limits, image filesystems, service
links env vars beyond ``KUBERNETES_*``, ephemeral containers, volumes other than the above.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import ssl
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bed import _images

log = logging.getLogger("kubelet")
LAUNCH = Path(__file__).with_name("_launch.py")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# What of root's (0700) home a non-root container still sees: the Python toolchain and the
# test binaries, which live there on this machine.
ROOT_KEEP = [str(Path.home() / ".pyenv"), str(Path.home() / ".cache" / "tsgw"), str(Path.home() / ".local")]

Obj = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def run(*argv: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {err.decode().strip()}")
    return out.decode()


class PodError(Exception):
    """A pod-level fault shown in a container's waiting state and an Event, never a crash."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Config:
    node: str
    node_ip: str
    pod_cidr: str
    bridge: str
    api: str
    token: str
    ca_file: str
    dir: str
    netns_prefix: str
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    kubernetes_service: str = "10.96.0.1"
    backoff_base: float = 10.0
    """Restart back-off start (a real kubelet: 10 s, doubling to 300 s)."""
    backoff_max: float = 300.0
    lease_seconds: int = 40
    labels: dict[str, str] = field(default_factory=dict)


class Api:
    """The few API calls a kubelet makes, over httpx with the node's credentials."""

    def __init__(self, cfg: Config) -> None:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        self.http = httpx.AsyncClient(
            base_url=cfg.api,
            verify=ctx,
            headers={"Authorization": f"Bearer {cfg.token}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )

    async def request(
        self, method: str, path: str, body: Any = None, *, ctype: str = "", **params: Any
    ) -> Any:
        headers = {"Content-Type": ctype} if ctype else {}
        content = json.dumps(body).encode() if body is not None else None
        r = await self.http.request(method, path, content=content, headers=headers, params=params or None)
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.text)
        return r.json() if r.content else None

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, **params)

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body, ctype="application/json")

    async def put(self, path: str, body: Any) -> Any:
        return await self.request("PUT", path, body, ctype="application/json")

    async def merge(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body, ctype="application/merge-patch+json")

    async def delete(self, path: str, body: Any = None) -> Any:
        return await self.request("DELETE", path, body, ctype="application/json")


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


class Kubelet:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.api = Api(cfg)
        self.root = Path(cfg.dir)
        self.workers: dict[str, PodWorker] = {}
        net = ipaddress.ip_network(cfg.pod_cidr)
        self.gateway = str(next(net.hosts()))
        self.prefixlen = net.prefixlen
        self.free_ips = [str(h) for h in list(net.hosts())[1:]]
        self.seq = 0
        self.tg: asyncio.TaskGroup | None = None
        self.worker_tasks: set[asyncio.Task[None]] = set()

    # -- node ------------------------------------------------------------------------------

    def node_status(self) -> Obj:
        ts = now()
        cond = lambda t, s, r, m: {  # noqa: E731
            "type": t,
            "status": s,
            "reason": r,
            "message": m,
            "lastHeartbeatTime": ts,
            "lastTransitionTime": ts,
        }
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "addresses": [
                {"type": "InternalIP", "address": self.cfg.node_ip},
                {"type": "Hostname", "address": self.cfg.node},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "process kubelet"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "process kubelet"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "process kubelet"),
                cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "tsgw test bed",
                "containerRuntimeVersion": "bed://1",
                "kubeletVersion": "v1.36.3",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.cfg.node,
                "labels": {
                    "kubernetes.io/hostname": self.cfg.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                    **self.cfg.labels,
                },
            },
            "spec": {"podCIDR": self.cfg.pod_cidr, "podCIDRs": [self.cfg.pod_cidr]},
        }
        while True:
            try:
                self.node_uid = (await self.api.post("/api/v1/nodes", node))["metadata"]["uid"]
                break
            except ApiError as e:
                if e.status == 409:
                    self.node_uid = (await self.api.get(f"/api/v1/nodes/{self.cfg.node}"))["metadata"]["uid"]
                    break
                log.warning("register node: %s", e)
            except httpx.HTTPError as e:
                log.warning("register node: %r", e)
            await asyncio.sleep(1)
        await self.api.merge(f"/api/v1/nodes/{self.cfg.node}/status", {"status": self.node_status()})
        log.info("node %s registered", self.cfg.node)

    async def heartbeat(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.cfg.node}"
        lease: Obj | None = None
        last_status = time.monotonic()
        while True:
            try:
                if lease is None:
                    try:
                        lease = await self.api.get(path)
                    except ApiError as e:
                        if e.status != 404:
                            raise
                        lease = await self.api.post(
                            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                            {
                                "apiVersion": "coordination.k8s.io/v1",
                                "kind": "Lease",
                                "metadata": {
                                    "name": self.cfg.node,
                                    "ownerReferences": [
                                        {
                                            "apiVersion": "v1",
                                            "kind": "Node",
                                            "name": self.cfg.node,
                                            "uid": self.node_uid,
                                        }
                                    ],
                                },
                                "spec": {
                                    "holderIdentity": self.cfg.node,
                                    "leaseDurationSeconds": self.cfg.lease_seconds,
                                    "renewTime": micro_now(),
                                },
                            },
                        )
                assert lease is not None
                lease["spec"]["renewTime"] = micro_now()
                lease = await self.api.put(path, lease)
                if time.monotonic() - last_status > 60:
                    await self.api.merge(
                        f"/api/v1/nodes/{self.cfg.node}/status", {"status": self.node_status()}
                    )
                    last_status = time.monotonic()
            except (ApiError, httpx.HTTPError) as e:
                log.warning("lease: %r", e)
                lease = None
            await asyncio.sleep(self.cfg.lease_seconds / 4)

    # -- pods ------------------------------------------------------------------------------

    async def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.cfg.node}"
        while True:
            try:
                lst = await self.api.get("/api/v1/pods", fieldSelector=selector)
                seen = set()
                for pod in lst["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self.observe(pod)
                for uid in list(self.workers):
                    if uid not in seen:
                        self.workers[uid].gone()
                rv = lst["metadata"]["resourceVersion"]
                params = {
                    "fieldSelector": selector,
                    "watch": "1",
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                }
                async with self.api.http.stream(
                    "GET", "/api/v1/pods", params=params, timeout=httpx.Timeout(None, connect=5)
                ) as r:
                    if r.status_code != 200:
                        raise ApiError(r.status_code, await r.aread() and "watch failed")
                    async for line in r.aiter_lines():
                        if not line:
                            continue
                        ev = json.loads(line)
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            self.observe(ev["object"])
                        elif ev["type"] == "DELETED":
                            w = self.workers.get(ev["object"]["metadata"]["uid"])
                            if w:
                                w.gone()
                        elif ev["type"] == "ERROR":
                            break
            except (ApiError, httpx.HTTPError, json.JSONDecodeError) as e:
                log.warning("pod watch: %r", e)
                await asyncio.sleep(1)

    def observe(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not pod["metadata"].get(
                "deletionTimestamp"
            ):
                return  # finished before this kubelet started: nothing to run
            self.seq += 1
            w = PodWorker(self, pod, self.seq)
            self.workers[uid] = w
            assert self.tg is not None
            t = self.tg.create_task(w.run())
            self.worker_tasks.add(t)
            t.add_done_callback(self.worker_tasks.discard)
        else:
            w.update(pod)

    def take_ip(self) -> str:
        return self.free_ips.pop(0)

    def release_ip(self, ip: str) -> None:
        self.free_ips.append(ip)

    async def event(self, pod: Obj, type_: str, reason: str, message: str, field_path: str = "") -> None:
        md = pod["metadata"]
        ts = now()
        ref = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": md["namespace"],
            "name": md["name"],
            "uid": md["uid"],
        }
        if field_path:
            ref["fieldPath"] = field_path
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "kubelet", "host": self.cfg.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.cfg.node,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            await self.api.post(f"/api/v1/namespaces/{md['namespace']}/events", body)
        except (ApiError, httpx.HTTPError) as e:
            log.warning("event %s: %r", reason, e)

    async def main(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then stop every pod's processes and remove their namespaces.

        The pod objects stay, as when a real node's kubelet goes away. Shutdown does not rely on
        cancellation reaching every pod task: it tears the pods down itself, then cancels.
        """
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        async with asyncio.TaskGroup() as tg:
            self.tg = tg
            work = tg.create_task(self._work())
            await stop.wait()
            log.info("shutting down: stopping %d pods", len(self.workers))
            await asyncio.gather(*(w.teardown(grace=2) for w in list(self.workers.values())))
            work.cancel()
            for t in list(self.worker_tasks):
                t.cancel()

    async def _work(self) -> None:
        await self.register()
        server = await self.serve_logs()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.heartbeat())
                tg.create_task(self.watch_pods())
        finally:
            server.close()

    async def serve_logs(self) -> asyncio.Server:
        """The kubelet API's ``/containerLogs`` on port 10250, so ``kubectl logs`` works.

        The API server connects here (``--kubelet-preferred-address-types=InternalIP``) without
        verifying the serving cert, as it does with no ``--kubelet-certificate-authority``.
        Only whole logs (``tailLines`` honoured); no follow, no exec, no port-forward.
        """
        from tests.support.controlplane import _write_pki

        pki = self.root / "pki"
        pki.mkdir(exist_ok=True)
        if not (pki / "apiserver.crt").exists():
            _write_pki(pki, (self.cfg.node_ip,))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                path, _, query = target.partition("?")
                parts = path.strip("/").split("/")
                status, body = "404 Not Found", b"not found\n"
                if len(parts) == 4 and parts[0] == "containerLogs":
                    f = self.root / "logs" / f"{parts[1]}_{parts[2]}_{parts[3]}.log"
                    if f.exists():
                        status, body = "200 OK", f.read_bytes()
                        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                        if params.get("tailLines", "").isdigit():
                            lines = body.splitlines(keepends=True)
                            body = b"".join(lines[len(lines) - int(params["tailLines"]) :])
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(handle, self.cfg.node_ip, 10250, ssl=ctx)


class Container:
    """One container's process, probes and status."""

    def __init__(self, pod: PodWorker, spec: Obj, init: bool) -> None:
        self.pod, self.spec, self.init = pod, spec, init
        self.name: str = spec["name"]
        self.restarts = 0
        # Like a kubelet: app containers of a pod with init containers wait "PodInitializing".
        waiting = (
            "PodInitializing" if not init and pod.pod["spec"].get("initContainers") else "ContainerCreating"
        )
        self.state: Obj = {"waiting": {"reason": waiting}}
        self.last_state: Obj = {}
        self.ready = False
        self.started = False
        self.proc: asyncio.subprocess.Process | None = None
        self.done = False  # will not run again
        self.exit_code: int | None = None
        self.stopping = False
        self.cid = ""
        self.env: dict[str, str] = {}
        self.trigger = asyncio.Event()
        """Set by :meth:`PodWorker.changed`: probe readiness now instead of at the period's end."""

    def status(self) -> Obj:
        st: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"bed://{_images.repository(self.spec.get('image', ''))}",
            "ready": self.ready,
            "restartCount": self.restarts,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.cid:
            st["containerID"] = self.cid
        return st

    def waiting(self, reason: str, message: str = "") -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.ready = False
        self.pod.changed()

    async def start(self) -> None:
        pod = self.pod
        image = _images.resolve(self.spec.get("image", ""))
        env = self.env = await pod.env_for(self.spec, image)
        argv = _images.argv(image, self.spec.get("command"), self.spec.get("args"))
        argv = [pod.expand(a, env) for a in argv]
        sc = {**(pod.pod["spec"].get("securityContext") or {}), **(self.spec.get("securityContext") or {})}
        psc = pod.pod["spec"].get("securityContext") or {}
        groups = [*psc.get("supplementalGroups", [])]
        if psc.get("fsGroup") is not None:
            groups.append(psc["fsGroup"])
        cdir = pod.dir / "containers" / self.name
        cdir.mkdir(parents=True, exist_ok=True)
        os.chmod(cdir, 0o777)
        term = cdir / "termination-log"
        spec = {
            "netns": pod.netns_path,
            "scratch": str(cdir / f"scratch{self.restarts}"),
            "shm": str(pod.dir / "shm"),
            "mounts": pod.mounts_for(self.spec),
            "uid": sc.get("runAsUser"),
            "gid": sc.get("runAsGroup", sc.get("runAsUser") and 0)
            if sc.get("runAsUser") is not None
            else sc.get("runAsGroup"),
            "groups": groups,
            "cwd": self.spec.get("workingDir") or "/",
            "argv": argv,
            "env": env,
            "term": str(term),
            "root_keep": ROOT_KEEP if sc.get("runAsUser") else [],
            # The project (its venv and the bed's own programs) stays visible even when it lives
            # under /tmp, /run or /root, which containers see replaced (a CI clone may be there).
            "host_keep": [str(_images.ROOT)],
        }
        if sc.get("runAsNonRoot") and not sc.get("runAsUser"):
            raise PodError(
                "CreateContainerConfigError", "container has runAsNonRoot and image will run as root"
            )
        spec_file = cdir / "spec.json"
        spec_file.write_text(json.dumps(spec))
        logf = pod.kubelet.root / "logs" / f"{pod.ns}_{pod.name}_{self.name}.log"
        with logf.open("ab") as fh:
            log.info("start %s/%s %s #%d: %s", pod.ns, pod.name, self.name, self.restarts, " ".join(argv))
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                str(LAUNCH),
                str(spec_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=True,
            )
        self.cid = f"bed://{pod.uid[:8]}-{self.name}-{self.proc.pid}"
        self.state = {"running": {"startedAt": now()}}
        self.started = not self.spec.get("startupProbe")
        self.ready = self.started and not self.spec.get("readinessProbe") and not self.init
        self.pod.changed()

    async def kill(self, grace: float) -> None:
        """SIGTERM to the process group, then SIGKILL after ``grace`` seconds."""
        p = self.proc
        if p is None or p.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await p.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await p.wait()

    async def run(self) -> None:
        """Run (and re-run per restartPolicy, with back-off) until done or stopped."""
        pod = self.pod
        policy = pod.pod["spec"].get("restartPolicy", "Always")
        if self.init and policy == "Always":
            # An init container must succeed once: restarted on failure, done on success. With
            # "Never" its failure fails the pod (lifecycle() then starts no app container).
            policy = "OnFailure"
        backoff = pod.kubelet.cfg.backoff_base
        while not self.stopping:
            try:
                await self.start()
            except _images.UnknownImage as e:
                if self.state.get("waiting", {}).get("reason") not in ("ErrImagePull", "ImagePullBackOff"):
                    await pod.kubelet.event(
                        pod.pod, "Warning", "Failed", f"Failed to pull image: {e}", self.field_path
                    )
                    self.waiting("ErrImagePull", str(e))
                    await asyncio.sleep(1)
                self.waiting("ImagePullBackOff", f'Back-off pulling image "{self.spec.get("image")}": {e}')
                await pod.sleep(backoff)
                backoff = min(backoff * 2, pod.kubelet.cfg.backoff_max)
                continue
            except PodError as e:
                await pod.kubelet.event(pod.pod, "Warning", "Failed", f"Error: {e.message}", self.field_path)
                self.waiting(e.reason, e.message)
                await pod.sleep(min(backoff, 5))
                continue
            except Exception as e:
                log.exception("start %s/%s %s", pod.ns, pod.name, self.name)
                await pod.kubelet.event(pod.pod, "Warning", "Failed", f"Error: {e}", self.field_path)
                self.waiting("RunContainerError", str(e))
                await pod.sleep(min(backoff, 5))
                continue
            await pod.kubelet.event(
                pod.pod, "Normal", "Started", f"Started container {self.name}", self.field_path
            )
            assert self.proc is not None
            started_at = self.state["running"]["startedAt"]
            async with asyncio.TaskGroup() as tg:
                probes = [tg.create_task(t) for t in self.probe_tasks()]
                code = await self.proc.wait()
                for t in probes:
                    t.cancel()
            reason, message = ("Completed" if code == 0 else "Error"), ""
            term = pod.dir / "containers" / self.name / "termination-log"
            if code == 128 and term.exists() and term.read_text():
                reason, message = "StartError", term.read_text()
            elif code < 0:
                code, reason = 128 - code, "Error"
            self.exit_code = code
            self.ready = False
            self.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": started_at,
                    "finishedAt": now(),
                    "containerID": self.cid,
                    **({"message": message} if message else {}),
                }
            }
            pod.changed()
            if reason == "StartError":
                await pod.kubelet.event(pod.pod, "Warning", "Failed", message, self.field_path)
            if self.stopping:
                break
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self.done = True
                break
            self.last_state = self.state
            self.restarts += 1
            self.started = False
            if self.restarts == 1:
                continue  # like a kubelet: the first restart is immediate, back-off starts after
            await pod.kubelet.event(
                pod.pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {self.name}",
                self.field_path,
            )
            self.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:.0f}s restarting failed container="
                    f"{self.name} pod={pod.name}_{pod.ns}({pod.uid})",
                }
            }
            pod.changed()
            await pod.sleep(backoff)
            backoff = min(backoff * 2, pod.kubelet.cfg.backoff_max)
        pod.changed()

    @property
    def field_path(self) -> str:
        kind = "initContainers" if self.init else "containers"
        return f"spec.{kind}{{{self.name}}}"

    # -- probes ----------------------------------------------------------------------------

    def probe_tasks(self) -> list[Awaitable[None]]:
        if self.init:
            return []
        out: list[Awaitable[None]] = [self.probe_loop()]
        return out

    async def probe_loop(self) -> None:
        spec = self.spec
        startup, live, ready = spec.get("startupProbe"), spec.get("livenessProbe"), spec.get("readinessProbe")
        if startup:
            if not await self.until(startup, True, "Startup"):
                await self.fail_and_kill("Startup")
                return
            self.started = True
            self.pod.changed()
        async with asyncio.TaskGroup() as tg:
            if live:
                tg.create_task(self.liveness(live))
            if ready:
                tg.create_task(self.readiness(ready))
            elif not self.ready:
                self.ready = True
                self.pod.changed()

    async def until(self, probe: Obj, want: bool, kind: str) -> bool:
        """Probe until it reaches its threshold: True on success, False on failureThreshold."""
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        ok = fail = 0
        while True:
            tick = time.monotonic()
            result, msg = await self.probe(probe)
            if result:
                ok, fail = ok + 1, 0
                if ok >= probe.get("successThreshold", 1):
                    return True
            else:
                ok, fail = 0, fail + 1
                await self.pod.kubelet.event(
                    self.pod.pod, "Warning", "Unhealthy", f"{kind} probe failed: {msg}", self.field_path
                )
                if fail >= probe.get("failureThreshold", 3):
                    return False
            await asyncio.sleep(_until_tick(tick, probe))

    async def fail_and_kill(self, kind: str) -> None:
        await self.pod.kubelet.event(
            self.pod.pod,
            "Normal",
            "Killing",
            f"Container {self.name} failed {kind.lower()} probe, will be restarted",
            self.field_path,
        )
        grace = self.pod.pod["spec"].get("terminationGracePeriodSeconds", 30)
        await self.kill(grace)

    async def liveness(self, probe: Obj) -> None:
        if not await self.until(probe, False, "Liveness"):
            await self.fail_and_kill("Liveness")
            return
        period = probe.get("periodSeconds", 10)
        fail = 0
        while True:
            await asyncio.sleep(period)
            result, msg = await self.probe(probe)
            if result:
                fail = 0
                continue
            fail += 1
            await self.pod.kubelet.event(
                self.pod.pod, "Warning", "Unhealthy", f"Liveness probe failed: {msg}", self.field_path
            )
            if fail >= probe.get("failureThreshold", 3):
                await self.fail_and_kill("Liveness")
                return

    async def readiness(self, probe: Obj) -> None:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        ok = fail = 0
        while True:
            tick = time.monotonic()
            result, msg = await self.probe(probe)
            if result:
                ok, fail = ok + 1, 0
                if ok >= probe.get("successThreshold", 1) and not self.ready:
                    self.ready = True
                    self.pod.changed()
            else:
                ok, fail = 0, fail + 1
                if fail >= probe.get("failureThreshold", 3) and self.ready:
                    self.ready = False
                    self.pod.changed()
                    await self.pod.kubelet.event(
                        self.pod.pod,
                        "Warning",
                        "Unhealthy",
                        f"Readiness probe failed: {msg}",
                        self.field_path,
                    )
            self.trigger.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_until_tick(tick, probe)):
                    await self.trigger.wait()

    def port(self, p: Any) -> int:
        if isinstance(p, int) or (isinstance(p, str) and p.isdigit()):
            return int(p)
        for cp in self.spec.get("ports", []):
            if cp.get("name") == p:
                return int(cp["containerPort"])
        raise ValueError(f"no port named {p!r}")

    async def probe(self, probe: Obj) -> tuple[bool, str]:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            async with asyncio.timeout(timeout + 0.5):
                return await self._probe(probe, timeout)
        except TimeoutError:
            return False, f"timeout after {timeout}s"
        except Exception as e:
            return False, str(e) or repr(e)

    async def _probe(self, probe: Obj, seconds: float) -> tuple[bool, str]:
        host = self.pod.ip
        if "httpGet" in probe:
            h = probe["httpGet"]
            scheme = h.get("scheme", "HTTP").lower()
            url = f"{scheme}://{h.get('host') or host}:{self.port(h['port'])}{h.get('path', '/')}"
            headers = {x["name"]: x["value"] for x in h.get("httpHeaders", [])}
            async with httpx.AsyncClient(verify=False, timeout=seconds) as c:
                r = await c.get(url, headers=headers)
            return 200 <= r.status_code < 400, f"HTTP probe failed with statuscode: {r.status_code}"
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            _, w = await asyncio.open_connection(t.get("host") or host, self.port(t["port"]))
            w.close()
            return True, ""
        if "exec" in probe:
            assert self.proc is not None
            await _launched_pid(self.proc.pid, seconds)
            sc = {
                **(self.pod.pod["spec"].get("securityContext") or {}),
                **(self.spec.get("securityContext") or {}),
            }
            ids = []
            if sc.get("runAsUser") is not None:
                ids = [f"--setuid={sc['runAsUser']}", f"--setgid={sc.get('runAsGroup', 0)}"]
            p = await asyncio.create_subprocess_exec(
                "nsenter",
                "-t",
                str(self.proc.pid),
                "-n",
                "-m",
                *ids,
                "--",
                *probe["exec"]["command"],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # As a runtime execs in the container: its environment, so its PATH (the
                # image's directories first) finds the image's programs.
                env=self.env or None,
            )
            out, _ = await p.communicate()
            return p.returncode == 0, f"command exited {p.returncode}: {out.decode(errors='replace')[:200]}"
        if "grpc" in probe:
            return await grpc_health(host, self.port(probe["grpc"]["port"]), probe["grpc"].get("service", ""))
        return False, "probe has no handler"


def _until_tick(tick: float, probe: Obj) -> float:
    """Seconds from now to the next probe of a probe that started at ``tick``: a kubelet's
    prober ticks every ``periodSeconds`` (a Go ticker, one tick buffered), so a probe that took
    longer than the period is followed at once, not a whole period later."""
    return max(0.0, tick + probe.get("periodSeconds", 10) - time.monotonic())


async def _launched_pid(pid: int, seconds: float) -> None:
    """Wait (up to ``seconds``) until the launcher ``pid`` has exec'd the container's entry point.

    The bed marks a container running once its launcher is spawned, before the launcher entered
    the container's mount namespace; a runtime execs a probe only in a started container, so an
    exec probe waits for that (the launcher's command line names ``_launch.py`` until then)."""
    marker = str(LAUNCH).encode()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:  # noqa: ASYNC230 (procfs: no disk)
                if marker not in f.read():
                    return
        except OSError:
            return  # gone: the exec fails on its own
        await asyncio.sleep(0.01)


async def grpc_health(host: str, port: int, service: str) -> tuple[bool, str]:
    """grpc.health.v1.Health/Check with hand-encoded messages (no generated code)."""
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from tests.bed.backend import RawCodec

    req = b""
    if service:
        s = service.encode()
        req = b"\x0a" + bytes([len(s)]) + s
    ch = Channel(host, port, codec=RawCodec())
    try:
        async with ch.request("/grpc.health.v1.Health/Check", Cardinality.UNARY_UNARY, bytes, bytes) as st:
            await st.send_message(req, end=True)
            reply = await st.recv_message()
            await st.recv_trailing_metadata()
    finally:
        ch.close()
    return reply == b"\x08\x01", f"service unhealthy (responded with {reply!r})"


class PodWorker:
    """Everything about one pod: namespace, volumes, containers, status."""

    def __init__(self, kubelet: Kubelet, pod: Obj, seq: int) -> None:
        self.kubelet, self.pod = kubelet, pod
        md = pod["metadata"]
        self.uid, self.name, self.ns = md["uid"], md["name"], md["namespace"]
        self.dir = kubelet.root / "pods" / self.uid
        self.netns = f"{kubelet.cfg.netns_prefix}{seq}"
        self.veth = f"vp{seq}"
        self.ip = ""
        self.host_network = bool(pod["spec"].get("hostNetwork"))
        self.netns_path: str | None = None
        self.containers: list[Container] = []
        self.init_containers = [Container(self, c, True) for c in pod["spec"].get("initContainers", [])]
        self.containers = [Container(self, c, False) for c in pod["spec"].get("containers", [])]
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self.deleting = False
        self.removed = False
        self.sandbox = False
        self.initialized = not self.init_containers
        self.start_time = now()
        self.last_status: Any = None
        self.volumes: dict[str, Path] = {}
        self.tokens: dict[str, tuple[bytes, float]] = {}

    # -- events from the watch -------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting = True
        self._wake.set()

    def gone(self) -> None:
        self.removed = self.deleting = True
        self._wake.set()

    def changed(self) -> None:
        self._changed.set()
        # A kubelet's status sync runs the readiness probe of every started container not yet
        # Ready at once (prober_manager.go, UpdatePodStatus: "Trigger an immediate run of the
        # readinessProbe"): one container turning Ready or started re-probes its siblings.
        for c in self.containers:
            if c.started and not c.ready:
                c.trigger.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake early when the pod is being deleted."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._deleting()

    async def _deleting(self) -> None:
        while not self.deleting:
            self._wake.clear()
            await self._wake.wait()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.pod["metadata"].get("deletionTimestamp"):
                self.deleting = True
            async with asyncio.TaskGroup() as tg:
                status = tg.create_task(self.status_loop())
                main = tg.create_task(self.lifecycle())
                await self._deleting()
                log.info("pod %s/%s: stopping (grace %.0fs)", self.ns, self.name, self.grace())
                main.cancel()
                await self.teardown(self.grace())
                await self.flush_status()
                status.cancel()
            await self.finalize()
        except Exception:
            log.exception("pod %s/%s", self.ns, self.name)
            with contextlib.suppress(Exception):
                await self.teardown(0)
        # On cancellation (kubelet shutdown) the worker stays listed: Kubelet.main tears it down.
        self.kubelet.workers.pop(self.uid, None)

    def grace(self) -> float:
        g = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if g is None:
            g = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(g)

    async def lifecycle(self) -> None:
        # Sandbox: retried until it works (a missing Secret waits here, like a real FailedMount),
        # after 0.5 s, then twice as long each time up to 5 s: a kubelet's volume operations back
        # off from 500 ms, doubling (its cap, 2 min, is cut to keep the bed quick). A Secret
        # the Node authorizer does not yet let this node read (its graph learns a pod's
        # references from a watch, after the pod was bound) is the common case, and is gone
        # within a retry or two.
        delay = 0.5
        while True:
            try:
                await self.make_sandbox()
                break
            except PodError as e:
                await self.kubelet.event(self.pod, "Warning", e.reason, e.message)
            except Exception as e:
                log.exception("sandbox %s/%s", self.ns, self.name)
                await self.kubelet.event(self.pod, "Warning", "FailedCreatePodSandBox", str(e))
            await self.sleep(delay)
            delay = min(delay * 2, 5.0)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.refresh_volumes())
            for c in self.init_containers:
                await c.run()
                if c.exit_code != 0:
                    return  # restartPolicy Never and a failed init container: the pod failed
            self.initialized = True
            self.changed()
            for c in self.containers:
                tg.create_task(c.run())

    async def make_sandbox(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # The pod's own /dev/shm, shared by its containers (a pod's IPC namespace): POSIX shared
        # memory names are otherwise the host's, and two Envoys with one --base-id collide.
        (self.dir / "shm").mkdir(exist_ok=True)
        os.chmod(self.dir / "shm", 0o1777)
        await self.write_volumes()
        if self.host_network:
            self.netns_path = f"/proc/{os.getpid()}/ns/net"
            self.ip = self.kubelet.cfg.node_ip
        elif not self.sandbox:
            cfg = self.kubelet.cfg
            self.ip = self.kubelet.take_ip()
            await run("ip", "netns", "add", self.netns)
            self.sandbox = True
            await run(
                "ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns
            )
            await run("ip", "link", "set", self.veth, "master", cfg.bridge, "up")
            batch = (
                f"link set lo up\naddr add {self.ip}/{self.kubelet.prefixlen} dev eth0\n"
                f"link set eth0 up\nroute add default via {self.kubelet.gateway}\n"
            )
            p = await asyncio.create_subprocess_exec(
                "ip",
                "-n",
                self.netns,
                "-batch",
                "-",
                stdin=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await p.communicate(batch.encode())
            if p.returncode:
                raise RuntimeError(f"pod network: {err.decode()}")
            self.netns_path = f"/run/netns/{self.netns}"
        self.write_etc()
        self.changed()

    async def teardown(self, grace: float) -> None:
        for c in [*self.containers, *self.init_containers]:
            c.stopping = True
        await asyncio.gather(*(c.kill(grace) for c in [*self.containers, *self.init_containers]))
        for c in [*self.containers, *self.init_containers]:
            if "running" in c.state and c.proc is not None:
                code = c.proc.returncode if c.proc.returncode is not None else 137
                code = 128 - code if code < 0 else code
                c.state = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Error" if code else "Completed",
                        "startedAt": c.state["running"]["startedAt"],
                        "finishedAt": now(),
                        "containerID": c.cid,
                    }
                }
                c.ready = False
        if self.sandbox:
            # Anything else left in the namespace (a probe, a stray child) goes too.
            with contextlib.suppress(Exception):
                for pid in (await run("ip", "netns", "pids", self.netns, check=False)).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(Exception):
                await run("ip", "netns", "delete", self.netns, check=False)
            self.kubelet.release_ip(self.ip)
            self.sandbox = False

    async def finalize(self) -> None:
        """Remove the pod object (the kubelet's last word: delete with grace 0, same uid)."""
        if not self.removed:
            path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
            body = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid},
            }
            try:
                await self.kubelet.api.delete(path, body)
            except (ApiError, httpx.HTTPError) as e:
                log.warning("delete %s/%s: %r", self.ns, self.name, e)
        log.info("pod %s/%s removed", self.ns, self.name)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- status ----------------------------------------------------------------------------

    async def status_loop(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(0.05)  # coalesce bursts
            self._changed.clear()
            await self.flush_status()

    async def flush_status(self) -> None:
        status = self.compute_status()
        key = json.dumps(status, sort_keys=True)
        if key == self.last_status:
            return
        try:
            await self.kubelet.api.merge(
                f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
            )
            self.last_status = key
        except (ApiError, httpx.HTTPError) as e:
            log.warning("status %s/%s: %r", self.ns, self.name, e)
            if not (isinstance(e, ApiError) and e.status == 404):
                self._changed.set()
                await asyncio.sleep(0.5)

    def compute_status(self) -> Obj:
        ts = now()
        old = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions", [])}

        def cond(t: str, ok: bool, reason: str = "") -> Obj:
            s = "True" if ok else "False"
            prev = old.get(t)
            c = {
                "type": t,
                "status": s,
                "lastProbeTime": None,
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev["status"] == s else ts,
            }
            if reason and not ok:
                c["reason"] = reason
            return c

        cs = self.containers
        policy = self.pod["spec"].get("restartPolicy", "Always")
        all_ready = bool(cs) and all(c.ready for c in cs)
        failed_init = any(c.done and c.exit_code not in (0, None) for c in self.init_containers)
        if failed_init:
            phase = "Failed"
        elif not self.initialized:
            phase = "Pending"
        elif cs and all(c.done for c in cs):
            phase = "Succeeded" if all(c.exit_code == 0 for c in cs) else "Failed"
        elif any("running" in c.state or c.restarts or "terminated" in c.state for c in cs):
            phase = "Running"
        else:
            phase = "Pending"
        if policy == "Always" and phase in ("Succeeded", "Failed") and not failed_init:
            phase = "Running"
        conditions = [
            cond("PodReadyToStartContainers", self.sandbox or self.host_network),
            cond("Initialized", self.initialized, "ContainersNotInitialized"),
            cond("Ready", all_ready and phase == "Running", "ContainersNotReady"),
            cond("ContainersReady", all_ready, "ContainersNotReady"),
        ]
        if "PodScheduled" in old:
            conditions.append(old["PodScheduled"])
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.kubelet.cfg.node_ip,
            "hostIPs": [{"ip": self.kubelet.cfg.node_ip}],
            "startTime": self.start_time,
            "qosClass": (self.pod.get("status") or {}).get("qosClass", "BestEffort"),
            "containerStatuses": [c.status() for c in cs],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        return status

    # -- volumes, env, /etc ----------------------------------------------------------------

    async def get_obj(self, kind: str, name: str, reason: str = "FailedMount") -> Obj | None:
        """The object, or None when it does not exist; a 403 (the Node authorizer has not yet
        linked this node to it) is a :class:`PodError` of ``reason`` with the API server's
        message, as a kubelet reports it."""
        try:
            return await self.kubelet.api.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")  # type: ignore[no-any-return]
        except ApiError as e:
            if e.status == 404:
                return None
            if e.status == 403:
                raise PodError(reason, f'{kind[:-1]} "{name}" is forbidden: {e}') from e
            raise

    async def key_files(self, kind: str, src: Obj) -> dict[str, tuple[bytes, int | None]]:
        """The files of a Secret or ConfigMap volume source: ``{path: (data, mode)}``."""
        name = src.get("secretName") or src.get("name")
        obj = await self.get_obj("secrets" if kind == "secret" else "configmaps", name)
        if obj is None:
            if src.get("optional"):
                return {}
            raise PodError("FailedMount", f'MountVolume.SetUp failed: {kind} "{name}" not found')
        data: dict[str, bytes] = {}
        if kind == "secret":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        if not items:
            return {k: (v, None) for k, v in data.items()}
        out = {}
        for it in items:
            if it["key"] not in data:
                if src.get("optional"):
                    continue
                raise PodError("FailedMount", f'{kind} "{name}": no key {it["key"]}')
            out[it["path"]] = (data[it["key"]], it.get("mode"))
        return out

    def field(self, ref: str) -> str:
        md = self.pod["metadata"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", ref)
        if m:
            return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
        table = {
            "metadata.name": md["name"],
            "metadata.namespace": md["namespace"],
            "metadata.uid": md["uid"],
            "spec.nodeName": self.kubelet.cfg.node,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
            "status.podIP": self.ip,
            "status.podIPs": self.ip,
            "status.hostIP": self.kubelet.cfg.node_ip,
            "status.hostIPs": self.kubelet.cfg.node_ip,
        }
        if ref == "metadata.labels":
            return "\n".join(f'{k}="{v}"' for k, v in sorted((md.get("labels") or {}).items()))
        if ref == "metadata.annotations":
            return "\n".join(f'{k}="{v}"' for k, v in sorted((md.get("annotations") or {}).items()))
        if ref not in table:
            raise PodError("CreateContainerConfigError", f"unsupported fieldRef {ref}")
        return str(table[ref])

    def resource(self, ref: Obj) -> str:
        for c in self.pod["spec"]["containers"]:
            if c["name"] == ref.get("containerName", c["name"]):
                res, what = ref["resource"].split(".", 1)
                v = ((c.get("resources") or {}).get(res) or {}).get(what)
                return str(v if v is not None else ("8" if what == "cpu" else "34359738368"))
        return "0"

    async def downward_files(self, items: list[Obj]) -> dict[str, tuple[bytes, int | None]]:
        out = {}
        for it in items:
            if "fieldRef" in it:
                out[it["path"]] = (self.field(it["fieldRef"]["fieldPath"]).encode(), it.get("mode"))
            elif "resourceFieldRef" in it:
                out[it["path"]] = (self.resource(it["resourceFieldRef"]).encode(), it.get("mode"))
        return out

    async def token(self, src: Obj) -> bytes:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        spec: Obj = {
            "expirationSeconds": src.get("expirationSeconds", 3607),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid},
        }
        if src.get("audience"):
            spec["audiences"] = [src["audience"]]
        key = json.dumps([sa, spec], sort_keys=True)
        cached = self.tokens.get(key)
        if cached and time.monotonic() < cached[1]:
            return cached[0]
        try:
            tr = await self.kubelet.api.post(
                f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
        except ApiError as e:
            raise PodError("FailedMount", f"failed to fetch token: {e}") from e
        # Refreshed at 80% of its lifetime, as the kubelet's token manager does.
        token = str(tr["status"]["token"]).encode()
        self.tokens[key] = (token, time.monotonic() + spec["expirationSeconds"] * 0.8)
        return token

    async def volume_files(self, vol: Obj) -> dict[str, tuple[bytes, int | None]] | None:
        """Files of one volume, or None for a directory volume (emptyDir, hostPath)."""
        if "secret" in vol:
            return await self.key_files("secret", vol["secret"])
        if "configMap" in vol:
            return await self.key_files("configMap", vol["configMap"])
        if "downwardAPI" in vol:
            return await self.downward_files(vol["downwardAPI"].get("items", []))
        if "projected" in vol:
            files: dict[str, tuple[bytes, int | None]] = {}
            for s in vol["projected"].get("sources", []):
                if "serviceAccountToken" in s:
                    files[s["serviceAccountToken"]["path"]] = (
                        await self.token(s["serviceAccountToken"]),
                        None,
                    )
                elif "secret" in s:
                    files.update(await self.key_files("secret", s["secret"]))
                elif "configMap" in s:
                    files.update(await self.key_files("configMap", s["configMap"]))
                elif "downwardAPI" in s:
                    files.update(await self.downward_files(s["downwardAPI"].get("items", [])))
            return files
        if "emptyDir" in vol or "hostPath" in vol:
            return None
        raise PodError(
            "FailedMount", f"volume {vol['name']}: this volume type is not supported by the test bed"
        )

    def default_mode(self, vol: Obj) -> int:
        for k in ("secret", "configMap", "projected", "downwardAPI"):
            if k in vol:
                return int(vol[k].get("defaultMode", 0o644))
        return 0o644

    async def write_volumes(self) -> None:
        vdir = self.dir / "volumes"
        vdir.mkdir(parents=True, exist_ok=True)
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        for vol in self.pod["spec"].get("volumes", []):
            path = vdir / vol["name"]
            if "hostPath" in vol:
                self.volumes[vol["name"]] = Path(vol["hostPath"]["path"])
                continue
            files = await self.volume_files(vol)
            path.mkdir(exist_ok=True)
            self.volumes[vol["name"]] = path
            if files is None:
                os.chmod(path, 0o777)
                continue
            os.chmod(path, 0o755)
            for rel, (data, mode) in files.items():
                f = path / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_name(f".{f.name}.tmp")
                tmp.write_bytes(data)
                os.chmod(tmp, mode if mode is not None else self.default_mode(vol))
                if fs_group is not None:
                    os.chown(tmp, -1, fs_group)
                os.replace(tmp, f)

    async def refresh_volumes(self) -> None:
        """Rewrite Secret/ConfigMap/projected files now and then, and tokens before they expire."""
        while True:
            await asyncio.sleep(15)
            try:
                await self.write_volumes()
            except Exception as e:
                log.warning("refresh volumes %s/%s: %r", self.ns, self.name, e)

    def mounts_for(self, spec: Obj) -> list[Obj]:
        mounts = []
        for m in spec.get("volumeMounts", []):
            src = self.volumes.get(m["name"])
            if src is None:
                raise PodError("CreateContainerConfigError", f'volume "{m["name"]}" not found')
            if m.get("subPath"):
                src = src / m["subPath"]
            mounts.append({"src": str(src), "dst": m["mountPath"], "ro": bool(m.get("readOnly"))})
        mounts.append({"src": str(self.dir / "etc-hosts"), "dst": "/etc/hosts", "ro": False})
        mounts.append({"src": str(self.dir / "resolv.conf"), "dst": "/etc/resolv.conf", "ro": False})
        mounts.append({"src": str(self.dir / "etc-hostname"), "dst": "/etc/hostname", "ro": False})
        return mounts

    def hostname(self) -> str:
        return self.pod["spec"].get("hostname") or self.name

    def write_etc(self) -> None:
        spec = self.pod["spec"]
        cfg = self.kubelet.cfg
        host = self.hostname()
        lines = [
            "# Kubernetes-managed hosts file (test bed).",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost",
        ]
        if spec.get("subdomain"):
            lines.append(f"{self.ip}\t{host}.{spec['subdomain']}.{self.ns}.svc.{cfg.cluster_domain}\t{host}")
        else:
            lines.append(f"{self.ip}\t{host}")
        for a in spec.get("hostAliases", []):
            lines.append(f"{a['ip']}\t{' '.join(a.get('hostnames', []))}")
        (self.dir / "etc-hosts").write_text("\n".join(lines) + "\n")
        (self.dir / "etc-hostname").write_text(host + "\n")
        policy = spec.get("dnsPolicy", "ClusterFirst")
        if self.host_network and policy == "ClusterFirst":
            policy = "Default"
        if policy == "ClusterFirstWithHostNet":
            policy = "ClusterFirst"
        ns, search, opts = [], [], []
        if policy == "ClusterFirst":
            d = cfg.cluster_domain
            ns, search, opts = [cfg.cluster_dns], [f"{self.ns}.svc.{d}", f"svc.{d}", d], ["ndots:5"]
        dc = spec.get("dnsConfig") or {}
        ns += dc.get("nameservers", [])
        search += dc.get("searches", [])
        opts += [o["name"] + (f":{o['value']}" if o.get("value") else "") for o in dc.get("options", [])]
        text = "# test bed: no upstream resolver on a node\n" if not ns else ""
        text += "".join(f"nameserver {n}\n" for n in ns)
        if search:
            text += f"search {' '.join(search)}\n"
        if opts:
            text += f"options {' '.join(opts)}\n"
        (self.dir / "resolv.conf").write_text(text)

    def expand(self, s: str, env: dict[str, str]) -> str:
        """``$(VAR)`` expansion as Kubernetes does it; ``$$`` escapes."""

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            return env.get(m.group(1), m.group(0))

        return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, s)

    async def env_for(self, spec: Obj, image: _images.Image) -> dict[str, str]:
        cfg = self.kubelet.cfg
        path = ":".join([*image.path, DEFAULT_PATH])
        env = {
            "PATH": path,
            "HOSTNAME": self.hostname(),
            "HOME": "/"
            if (spec.get("securityContext") or self.pod["spec"].get("securityContext") or {}).get("runAsUser")
            else "/root",
            "KUBERNETES_SERVICE_HOST": cfg.kubernetes_service,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": f"tcp://{cfg.kubernetes_service}:443",
            "KUBERNETES_PORT_443_TCP": f"tcp://{cfg.kubernetes_service}:443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_ADDR": cfg.kubernetes_service,
            **image.env,
        }
        for ef in spec.get("envFrom", []):
            prefix = ef.get("prefix", "")
            kind, ref = (
                ("secrets", ef["secretRef"]) if "secretRef" in ef else ("configmaps", ef.get("configMapRef"))
            )
            obj = await self.get_obj(kind, ref["name"], "CreateContainerConfigError")
            if obj is None:
                if ref.get("optional"):
                    continue
                what = "secret" if kind == "secrets" else "configmap"
                raise PodError("CreateContainerConfigError", f'{what} "{ref["name"]}" not found')
            for k, v in (obj.get("data") or {}).items():
                env[prefix + k] = base64.b64decode(v).decode() if kind == "secrets" else v
        for e in spec.get("env", []):
            if "valueFrom" not in e:
                env[e["name"]] = self.expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[e["name"]] = self.field(vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                env[e["name"]] = self.resource(vf["resourceFieldRef"])
            elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
                secret = "secretKeyRef" in vf
                ref = vf["secretKeyRef" if secret else "configMapKeyRef"]
                obj = await self.get_obj(
                    "secrets" if secret else "configmaps", ref["name"], "CreateContainerConfigError"
                )
                what = "secret" if secret else "configmap"
                data = (obj or {}).get("data") or {}
                if obj is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    msg = (
                        f'{what} "{ref["name"]}" not found'
                        if obj is None
                        else f"couldn't find key {ref['key']} in {what.capitalize()} {self.ns}/{ref['name']}"
                    )
                    raise PodError("CreateContainerConfigError", msg)
                v = data[ref["key"]]
                env[e["name"]] = base64.b64decode(v).decode() if secret else v
        return env


def main(argv: list[str]) -> None:
    cfg = Config(**json.loads(Path(argv[0]).read_text()))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {cfg.node} %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Kubelet(cfg).main(stop)

    asyncio.run(amain())
    log.info("kubelet %s stopped", cfg.node)


if __name__ == "__main__":
    main(sys.argv[1:])
