"""The operator on the Kubernetes bed: CR applied → first byte through the new path, API writes per
object, and the operator's memory at 100 TailscaleEndpoints.

``just bench operator [--samples N] [--objects M] [--control headscale|box]
[--headscale-fast-batching] [--keep DIR]``. Starts a 2-node bed with a control plane:

- ``headscale`` (default): the bed's Headscale, on its own defaults or, with
  ``--headscale-fast-batching``, its two batching timers cut from 800/500 ms to 50/20 ms
  (``tools.tailnet.HEADSCALE_FAST_BATCHING``; with the defaults Headscale alone holds a new
  device ~1 s before answering its registration and ~1 s more before its first map, ~1.9 s of a
  ~2.1 s join, measured from tailscaled's log). tsgw is installed as a user does (``kubectl
  apply -k`` of the Headscale overlay with the bed's settings, the same overlay as
  tests/e2e/bed/test_egress.py; the operator runs as pods from its image tree). Ingress is
  served on the proxy's own address (Headscale has no Tailscale Services).
- ``box``: the tailnet in a box (tailscale's own testcontrol with Tailscale Services,
  tests/tailnet), in the bed's tailnet namespace, and the tailscale overlay pointed at its
  hosted-API fake (as tests/e2e/bed/test_tailscale_services.py installs it). Ingress goes to
  the ``svc:`` VIP the object's status gives, which the operator made through the API and the
  box routes to the proxy once it is an approved host. testcontrol pushes a change to every
  node at once, as Tailscale's hosted control plane does; the internet between a cluster and
  that control plane is not modelled. Saved as results/operator-box.json.

It joins an echo device and a client device to the tailnet, then, one object at a time:

- **egress** (N samples): a TailscaleEndpoints (1 proxy replica) targeting the echo device by
  address; the clock starts when ``kubectl apply`` returns and stops at the first byte of the
  device's own answer (``GET /`` answers with its name) through the ClusterIP Service tsgw owns.
  The client is a prober pod (``_prober``) that starts a new try every 50 ms, tries
  overlapping (each connect waits up to 1 s), once the Service has its ClusterIP (polled every
  250 ms).
- **ingress** (N samples): a TailscaleServices (1 proxy replica; Headscale has no Tailscale
  Services, so it is served on the proxy's own tailnet address) in front of a backend
  Deployment; the clock stops at the first successful answer (HTTP 200 from the backend) to a
  tailnet client's request to the proxy's address, a new try every 100 ms (tries overlap, each
  waits up to 2 s) once the address is in the replica's state Secret (polled every 250 ms).

Each object is deleted and its proxy pod gone before the next one (the machine has 2 cores).

**writes_per_object**: the kube-apiserver's audit log (level Metadata, only the operator's
ServiceAccount, only create/update/patch/delete): every write whose object is the sample's CR or
one of its owned objects or Events (by name), from the apply until the object's deletion was
requested (so: creation, key minting, registration, status — not the clean-up). Median over
the samples, with min/max and a breakdown by resource and verb of the last sample.

**operator_rss_mib_at_100**: both nodes cordoned (a 2-core bed runs no 100 proxies; the pods stay
Pending while the operator does everything else: owned objects, keys, status), M=100
TailscaleEndpoints applied at once; once every replica has its key (and its StatefulSet) and 10 s
passed, the resident memory of every process of the Lease holder's pod (VmRSS summed).

With ``TSGW_BENCH_DEBUG=1`` each ingress sample also prints the client's failed tries (start,
duration, outcome): on Headscale the first tries after the join time out. The client's
tailscaled log says why (``--keep``, 2026-12-06): Headscale sends the client the new proxy as
soon as the proxy connects, before the proxy has reported its DERP home and endpoints (its
netcheck runs after its first map), so the client's first WireGuard handshake initiation fails
("no UDP or DERP addr") and wireguard-go sends the next only after REKEY_TIMEOUT, 5 s later;
Headscale's batched update with the proxy's DERP home arrives within ~1 s, but the handshake
waits out the 5 s. That, not tsgw, is most of the ingress figure on Headscale.

``--keep DIR`` copies every log of the run to DIR when it ends: the audit log (with the bodies
of the operator's writes to tsgw's own objects, never a Secret's), the bed's (pods' containers,
kubelets, API server), tailscaled's and the control plane's.

**phases** (p50 per phase, ms after the apply, both kinds): where the time goes, from one
``kubectl get --watch`` per kind and namespace (events timed on arrival, so each phase is an upper
bound by the watch's own delay): the StatefulSet created (``sts``), its pod created (``pod``),
scheduled (``scheduled``), every container running (``started``), the device registered
(``device_id`` in the replica's state Secret: ``joined``), the pod Ready (``ready``), and for
egress the Service's EndpointSlice holding a ready endpoint (``endpoint``). A pod whose
containers started more than 0.4 s after it was scheduled has its Events printed.

The last line is one JSON object. With 20 samples "p99" is the nearest-rank 99th percentile,
which is the maximum of the 20; ``_p95_ms`` and ``_max_ms`` are given too.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.bed import Bed, BedOptions
from tools.tailnet import HEADSCALE_FAST_BATCHING
from tools.testbin import bin_path

NS_OPS = "tsgw-system"
EGRESS_NS = "bench-egress"
INGRESS_NS = "bench-ingress"
RSS_NS = "bench-rss"
OPERATOR_USER = "system:serviceaccount:tsgw-system:tsgw"

AUDIT_BODIES = f"""\
  - level: Request
    users: ["{OPERATOR_USER}"]
    verbs: [create, update, patch, delete, deletecollection]
    resources: [{{group: gateway.tailscale.com}}]
"""
"""With ``--keep``: the bodies of the operator's writes to tsgw's own objects (their status,
finalizers) go to the audit log too, to tell one status write from another; never a Secret's."""

AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
{{bodies}}  - level: Metadata
    users: ["{OPERATOR_USER}"]
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def _poll(check: Any, timeout: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # a probe that fails is retried
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout} s; last: {last!r}")


def _json(bed: Bed, *args: str) -> Any:
    out = bed.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out) if out.strip() else None


def _endpoints(name: str, address: str, port: int = 8080, tailnet: str = "headscale") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.tailscale.com/v1alpha1",
        "kind": "TailscaleEndpoints",
        "metadata": {"name": name},
        "spec": {
            "tailnetRef": {"name": tailnet},
            "proxy": {"replicas": 1},
            "targets": [
                {
                    "name": "echo",
                    "address": address,
                    "ports": [{"port": 8080, "protocol": "HTTP", "targetPort": port}],  # the prober's port
                }
            ],
        },
    }


def _services(name: str, tailnet: str = "headscale") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.tailscale.com/v1alpha1",
        "kind": "TailscaleServices",
        "metadata": {"name": name, "namespace": INGRESS_NS},
        "spec": {
            "tailnetRef": {"name": tailnet},
            "proxy": {"replicas": 1},
            "ports": [{"port": 80, "protocol": "HTTP", "targetPort": "http"}],
            "backends": [{"service": "web"}],
        },
    }


def _apply(bed: Bed, objs: list[dict[str, Any]], namespace: str) -> None:
    bed.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
    )


PROBER = """
import json, os, socket, ssl, sys, threading, time, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read().strip()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
api = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
GET = b"GET / HTTP/1.1\\r\\nHost: echo\\r\\nConnection: close\\r\\n\\r\\n"
for name in sys.argv[1:]:
    ip = None
    while ip is None:
        try:
            req = urllib.request.Request(
                api + "/api/v1/namespaces/%s/services/%s" % (os.environ["NS"], name),
                headers={"Authorization": "Bearer " + token},
            )
            ip = json.load(urllib.request.urlopen(req, context=ctx, timeout=2))["spec"]["clusterIP"]
        except Exception:
            time.sleep(0.25)
    first = []
    lock = threading.Lock()
    done = threading.Event()

    def attempt():
        try:
            with socket.create_connection((ip, 8080), 1.0) as s:
                s.settimeout(2)
                s.sendall(GET)
                reply = s.recv(65536)
                t = time.time()
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return
        if b" 200 " in reply.split(b"\\r\\n", 1)[0] and b"bench-echo" in reply:
            with lock:
                first.append(t)
            done.set()

    while not done.wait(0.05):
        threading.Thread(target=attempt, daemon=True).start()
    time.sleep(0.1)  # attempts already answering: the earliest first byte counts
    with lock:
        print("%s %.3f" % (name, min(first)), flush=True)
"""


def _prober(names: list[str]) -> list[dict[str, Any]]:
    """A client pod: for each name in turn, finds the Service (the API, every 250 ms: DNS would
    cache the name's absence), then retries GET / through its ClusterIP every 50 ms until the
    echo device answers; prints the name and the wall-clock time of that answer's first byte.

    Until the Service has a ready endpoint kube-proxy rejects
    its SYNs with an ICMP error, and the kernel sends at most one such error per second to a
    peer once a burst of six is spent (``net.ipv4.icmp_ratelimit``), so most of the prober's SYNs
    are dropped instead; a dropped SYN is sent again only after the 1 s initial RTO. With a 1 s
    connect timeout (this prober's first version) an attempt that began just before the endpoint
    was programmed lost up to a whole second. With Headscale's fast batching that took the
    egress p50 from 2,658 to 2,325 ms (2026-12-05); the first byte still comes 0.2-1.1 s after
    the ready endpoint there (23-338 ms on Headscale's defaults), which the prober does not
    explain: the tailnet path's first use, not yet measured apart.

    So attempts now overlap: a new one starts every 50 ms whatever the earlier ones are doing
    (each connect waits up to 1 s, so a dropped SYN's attempt lives on instead of being cut
    short), and the earliest first byte of any attempt counts. The path's first working moment
    is seen within ~50 ms, not within a connect timeout."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "prober", "namespace": EGRESS_NS},
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "prober", "namespace": EGRESS_NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prober"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": EGRESS_NS}],
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "prober", "namespace": EGRESS_NS},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "bed.test/shell",
                        "command": ["python3", "-c", PROBER, *names],
                        "env": [{"name": "NS", "value": EGRESS_NS}],
                    }
                ],
            },
        },
    ]


class _Phases:
    """First-seen wall-clock times of a sample's milestones, from ``kubectl get --watch`` streams
    (one per kind) read by threads; :meth:`of` gives them relative to the apply."""

    KINDS = ("statefulsets", "pods", "secrets", "endpointslices")

    def __init__(self, bed: Bed, namespace: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._procs = [
            subprocess.Popen(
                [
                    str(bin_path("kubectl")),
                    f"--kubeconfig={bed.kubeconfig}",
                    "get",
                    kind,
                    "-n",
                    namespace,
                    "--watch",
                    "--output-watch-events",
                    "-o",
                    "json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for kind in self.KINDS
        ]
        for proc in self._procs:
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        dec = json.JSONDecoder()
        buf = ""
        for line in proc.stdout:
            buf += line
            while True:
                buf = buf.lstrip()
                try:
                    ev, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                self._note(ev.get("object") or {}, time.time())

    def _note(self, obj: dict[str, Any], t: float) -> None:
        kind = obj.get("kind")
        name = (obj.get("metadata") or {}).get("name", "")
        marks: list[tuple[str, str]] = []
        if kind == "StatefulSet":
            marks.append(("sts", name))
        elif kind == "Pod":
            marks.append(("pod", name))
            status = obj.get("status") or {}
            if (obj.get("spec") or {}).get("nodeName"):
                marks.append(("scheduled", name))
            cs = status.get("containerStatuses") or []
            if cs and all("running" in (c.get("state") or {}) for c in cs):
                marks.append(("started", name))
            if any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
            ):
                marks.append(("ready", name))
        elif kind == "Secret":
            if "device_id" in (obj.get("data") or {}):
                marks.append(("joined", name))
        elif kind == "EndpointSlice":
            svc = ((obj.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name", "")
            if any((e.get("conditions") or {}).get("ready") for e in obj.get("endpoints") or ()):
                marks.append(("endpoint", svc))
        with self._lock:
            for m in marks:
                self.seen.setdefault(m, t)

    def of(self, pod: str, service: str, t0: float) -> dict[str, float]:
        """Milliseconds from ``t0`` to each milestone of the sample whose first replica is
        ``pod`` (its StatefulSet is the pod's name without ``-0``)."""
        names = {"sts": pod.rsplit("-", 1)[0], "endpoint": service, "joined": pod}
        out: dict[str, float] = {}
        with self._lock:
            for phase in ("sts", "pod", "scheduled", "started", "joined", "ready", "endpoint"):
                t = self.seen.get((phase, names.get(phase, pod)))
                if t is not None:
                    out[phase] = round((t - t0) * 1000, 1)
        return out

    def close(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.wait(timeout=10)


SLOW_START_MS = 400


def _explain_slow_start(bed: Bed, namespace: str, pod: str, phases: dict[str, float]) -> None:
    """Print the pod's Events when its containers started more than :data:`SLOW_START_MS`
    after it was scheduled (what held it: a mount, a container's start)."""
    if phases.get("started", 0) - phases.get("scheduled", 0) <= SLOW_START_MS:
        return
    events = _json(bed, "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}") or {}
    for ev in sorted(events.get("items") or (), key=lambda e: e.get("lastTimestamp") or ""):
        say(f"  {pod}: {ev.get('lastTimestamp')} {ev.get('type')} {ev.get('reason')}: {ev.get('message')}")


def _phase_p50(samples: list[dict[str, float]]) -> dict[str, float]:
    phases = {k for s in samples for k in s}
    return {k: statistics.median([s[k] for s in samples if k in s]) for k in sorted(phases)}


def _egress_byte(bed: Bed, name: str, timeout: float = 180) -> float:
    """The prober's time for ``name``."""

    def seen() -> float | None:
        for line in bed.pod_log(EGRESS_NS, "prober").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return float(parts[1])
        return None

    return float(_poll(seen, timeout, 0.25, f"the prober's answer through {name}"))


def _ingress_byte(client: Any, ip: str, timeout: float = 120) -> float:
    """The wall-clock time of the first HTTP 200 from the backend through ``ip``:80, from the
    tailnet ``client``.

    Tries overlap, as the egress prober's do: a new one starts every 100 ms whatever the earlier
    ones are doing (each waits up to 2 s), and the earliest answer counts. Sequential tries (this
    prober's first version) saw the path's first working moment only once the try in flight
    ended: up to its 2 s timeout late, as a try that began before the client knew the new
    proxy waited out its whole timeout."""
    deadline = time.monotonic() + timeout
    lock = threading.Lock()
    first: list[float] = []
    tries: list[str] = []
    done = threading.Event()

    def one() -> None:
        t_try = time.time()
        try:
            reply = client.dial(
                ip, 80, b"GET /headers HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n", timeout=2
            )
            t = time.time()
            if b" 200 " in reply.split(b"\r\n", 1)[0]:
                with lock:
                    first.append(t)
                done.set()
                return
            outcome = reply.split(b"\r\n", 1)[0].decode(errors="replace")[:40] or "closed"
        except (OSError, RuntimeError) as e:
            outcome = type(e).__name__ + ":" + str(e)[:40]
        with lock:
            tries.append(f"{t_try % 100:.1f}+{time.time() - t_try:.1f}s {outcome}")

    threads: list[threading.Thread] = []
    while not done.is_set() and time.monotonic() < deadline:
        th = threading.Thread(target=one, daemon=True)
        th.start()
        threads.append(th)
        done.wait(0.1)
    for th in threads:
        th.join(3)
    if not first:
        raise TimeoutError(f"no 200 from the backend through {ip}:80 in {timeout} s")
    if os.environ.get("TSGW_BENCH_DEBUG"):
        say(f"  ingress tries before the answer: {sorted(tries)}")
    return min(first)


def _pods_gone(bed: Bed, namespace: str, instance: str) -> None:
    sel = f"app.kubernetes.io/instance={instance}"
    try:
        _poll(
            lambda: not (_json(bed, "pods", "-n", namespace, "-l", sel) or {"items": [1]})["items"],
            60,
            0.5,
            "pods gone",
        )
    except TimeoutError as e:
        say(f"  (not waiting longer: {e})")


# --- the audit log ------------------------------------------------------------------------------


def _audit(path: Path) -> list[dict[str, Any]]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("stage") == "ResponseComplete" and (ev.get("user") or {}).get("username") == OPERATOR_USER:
            out.append(ev)
    return out


def _ts(ev: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()


def _of(ev: dict[str, Any], namespace: str, name: str) -> bool:
    ref = ev.get("objectRef") or {}
    if ref.get("namespace") != namespace:
        return False
    n = str(ref.get("name") or "")
    return n == name or n.startswith((f"{name}-", f"{name}."))


def _writes(
    events: list[dict[str, Any]], namespace: str, name: str, until: float
) -> tuple[int, Counter[str]]:
    mine = [e for e in events if _of(e, namespace, name) and _ts(e) < until]
    kinds: Counter[str] = Counter()
    for e in mine:
        ref = e.get("objectRef") or {}
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        kinds[f"{e['verb']} {ref.get('resource')}{sub}"] += 1
    return len(mine), kinds


# --- the operator's memory --------------------------------------------------------------------


def _rss_mib(pod: dict[str, Any]) -> float:
    from tests.e2e.bed.helpers import pod_processes

    total = 0
    for pid in pod_processes(pod):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def _operator_rss(bed: Bed) -> dict[str, float]:
    from tests.support.install import OPERATOR_SELECTOR

    leader = (_json(bed, "lease", "-n", NS_OPS, "tsgw-operator") or {}).get("spec", {}).get("holderIdentity")
    out = {}
    for pod in (_json(bed, "pods", "-n", NS_OPS, "-l", OPERATOR_SELECTOR) or {"items": []})["items"]:
        name = pod["metadata"]["name"]
        out["leader" if name == leader else "standby"] = _rss_mib(pod)
    return out


# --- the run ----------------------------------------------------------------------------------


def _on_headscale(bed: Bed, tmp: Path, stack: contextlib.ExitStack, n: int) -> _Tailnet:
    """The bed's Headscale: an echo and a client device, each in its own namespace, and tsgw
    installed with the Headscale overlay (the same as tests/e2e/bed/test_egress.py)."""
    from tests.e2e.bed.helpers import headscale_overlay
    from tests.support.install import install_on_bed

    assert bed.tailnet is not None
    key = bed.tailnet.preauth_key_for()
    echo = bed.tailnet.device("bench-echo", key)
    client = bed.tailnet.device("bench-client", key)
    say(f"tailnet devices: bench-echo {echo.ip4()}, bench-client {client.ip4()}")
    tree, overlay = headscale_overlay(bed, tmp / "install", "bed-bench")
    took = install_on_bed(bed, tree, overlay)
    say(f"operator installed (kubectl apply -k), both pods Ready in {took:.1f} s")
    return _Tailnet("headscale", "headscale", echo.ip4(), 8080, client)


BOX_ECHO_PORT = 18080
"""The echo device's HTTP port on the box (its nodes share the bed's tailnet namespace, where
Headscale and the box hold the usual ones)."""


def _on_box(bed: Bed, tmp: Path, stack: contextlib.ExitStack, n: int) -> _Tailnet:
    """The tailnet in a box (tailscale's testcontrol with Tailscale Services, in the bed's tailnet
    namespace): an echo device answering ``bench-echo`` on :data:`BOX_ECHO_PORT`, a client, and
    tsgw installed with the tailscale overlay pointed at the box's hosted-API fake, the policy
    approving ``tag:k8s`` hosts for the samples' ``svc:i00`` … (as tests/e2e/bed/
    test_tailscale_services.py installs it)."""
    from tests.e2e.bed.helpers import box_in_bed, operator_on_box
    from tests.support.process import Process
    from tests.support.tailnet_services import auth_key

    box = stack.enter_context(box_in_bed(bed, tmp / "box", ("tag:k8s", "tag:client", "tag:echo")))
    server = Process(
        "bench-echo-server",
        [sys.executable, "-m", "tests.bed.backend"],
        tmp / "bed" / "logs" / "bench-echo-server.log",
        env={
            "POD_NAME": "bench-echo",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "HTTP_PORT": str(BOX_ECHO_PORT),
            "TCP_PORT": str(BOX_ECHO_PORT + 1),
            "PROXY_PORT": str(BOX_ECHO_PORT + 2),
            "GRPC_PORT": str(BOX_ECHO_PORT + 3),
        },
        netns=bed.ns["tailnet"].name,
    )
    stack.callback(server.stop, timeout=5)
    echo = box.box.join("bench-echo", auth_key(box, ("tag:echo",)))
    client = box.box.join("bench-client", auth_key(box, ("tag:client",)), socks5=True)
    say(f"tailnet devices (box): bench-echo {echo.ip4()}, bench-client {client.ip4()}")
    t0 = time.monotonic()
    stack.enter_context(
        operator_on_box(
            bed,
            box,
            tmp / "install",
            services=tuple(f"svc:i{i:02d}" for i in range(n)),
            kinds=("tailscaleendpoints", "tailscaleservices"),
            remove=False,  # the bed goes with everything on it, as on Headscale
        )
    )
    say(f"operator installed on the box (kubectl apply -k) in {time.monotonic() - t0:.1f} s")
    return _Tailnet("box", "tailscale", echo.ip4(), BOX_ECHO_PORT, client)


def _namespace(bed: Bed, name: str) -> None:
    bed.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values)),
        "p95": round(pct(values, 95)),
        "p99": round(pct(values, 99)),
        "max": round(max(values)),
        "min": round(min(values)),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="just bench operator")
    p.add_argument("--samples", type=int, default=20, help="applies of each kind (default 20)")
    p.add_argument("--objects", type=int, default=100, help="TailscaleEndpoints for the RSS figure")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="when the run ends, copy the API server's audit log (with the bodies of the operator's"
        " writes to tsgw's objects) and every log of the bed and the tailnet to DIR, to look into a"
        " figure",
    )
    p.add_argument(
        "--control",
        choices=("headscale", "box"),
        default="headscale",
        help="the control plane: the bed's Headscale (default; ingress on the proxy's own address)"
        " or the tailnet in a box (tailscale's testcontrol; ingress through a Tailscale Service's"
        " VIP); a box run is saved as results/operator-box.json",
    )
    p.add_argument(
        "--headscale-fast-batching",
        action="store_true",
        help="Headscale's batching timers at 50/20 ms instead of its defaults (800/500 ms)",
    )
    args = p.parse_args(argv)
    if args.control == "box" and args.headscale_fast_batching:
        p.error("--headscale-fast-batching is for --control headscale")
    load_before = os.getloadavg()
    result: dict[str, Any] = {"bench": "operator"}
    if args.control == "box":
        result["variant"] = "box"
        result["control_plane"] = "tailnet in a box (tailscale's testcontrol, Tailscale Services)"
    else:
        result["headscale_tuning"] = (
            dict(HEADSCALE_FAST_BATCHING) if args.headscale_fast_batching else "defaults"
        )
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-operator-") as tmpdir:
        tmp = Path(tmpdir)
        policy = tmp / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY.format(bodies=AUDIT_BODIES if args.keep is not None else ""))
        audit_log = tmp / "audit.log"
        bed = Bed(
            tmp / "bed",
            BedOptions(
                nodes=2,
                backoff_base=2.0,
                tailnet=True,
                headscale_tuning=HEADSCALE_FAST_BATCHING if args.headscale_fast_batching else None,
                apiserver_args=(
                    f"--audit-policy-file={policy}",
                    f"--audit-log-path={audit_log}",
                    "--audit-log-format=json",
                    "--audit-log-maxsize=0",
                ),
            ),
        )
        try:
            t0 = time.monotonic()
            bed.start()
            say(f"bed up in {time.monotonic() - t0:.1f} s")
            with contextlib.ExitStack() as stack:
                tailnet = (_on_box if args.control == "box" else _on_headscale)(bed, tmp, stack, args.samples)
                for ns in (EGRESS_NS, INGRESS_NS, RSS_NS):
                    _namespace(bed, ns)
                bed.apply(_backend())
                result.update(_run_samples(bed, tailnet, audit_log, args.samples))
                if not args.skip_rss:
                    result.update(_run_rss(bed, tailnet, audit_log, args.objects))
        finally:
            bed.stop()
            if args.keep is not None:
                _keep(tmp, args.keep)
    load_after = os.getloadavg()
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in load_after]
    result["cpus"] = os.cpu_count()
    result["note"] = (
        f"p99 is nearest-rank: with {args.samples} samples per kind it is the max of "
        f"{args.samples}; times are CR "
        "applied (kubectl apply returned) to the first byte of a successful answer through the new "
        "proxy; writes_per_object from the API server's audit log (operator ServiceAccount, "
        "create/update/patch/delete of the CR, its owned objects and Events, until deletion)"
    )
    print(json.dumps(result))
    return 0


def _keep(tmp: Path, dest: Path) -> None:
    """Copies every ``*.log`` of the run (the audit log, the bed's, the box's) to ``dest``, keeping
    their paths (the bed stopped first, so every log is complete)."""
    n = 0
    for f in sorted(tmp.rglob("*.log")):
        if f.is_file() and not f.is_symlink():
            target = dest / f.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            n += 1
    say(f"kept {n} logs in {dest}")


def _backend() -> list[dict[str, Any]]:
    labels = {"app": "web"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": INGRESS_NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "bed.test/backend"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": INGRESS_NS},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    ]


@dataclasses.dataclass(frozen=True)
class _Tailnet:
    """What the samples need of the control plane they run on."""

    control: str
    """``headscale`` (the bed's Headscale) or ``box`` (the tailnet in a box)."""
    name: str
    """The TailscaleTailnet's name in the install."""
    echo_ip: str
    echo_port: int
    client: Any
    """The tailnet client of the ingress samples (a node with SOCKS5)."""


def _ingress_address(bed: Bed, tailnet: _Tailnet, name: str) -> str | None:
    """Where the client dials a TailscaleServices ``name``: on Headscale, the proxy's own address
    once its replica has joined (the state Secret's ``device_ips``); on the box, the Tailscale
    Service's VIP as the object's status gives it (``status.addresses``, known before any proxy
    runs: the operator made ``svc:NAME`` through the API)."""
    if tailnet.control == "box":
        status = (_json(bed, "tailscaleservices", "-n", INGRESS_NS, name) or {}).get("status") or {}
        return next((a for a in status.get("addresses") or () if "." in a), None)
    data = (_json(bed, "secret", "-n", INGRESS_NS, f"{name}-tssvc-0") or {}).get("data") or {}
    if "device_ips" not in data:
        return None
    return next(a for a in json.loads(base64.b64decode(data["device_ips"])) if "." in a)


def _run_samples(bed: Bed, tailnet: _Tailnet, audit_log: Path, n: int) -> dict[str, Any]:
    egress: list[float] = []
    ingress: list[float] = []
    writes: list[int] = []
    last_kinds: dict[str, Counter[str]] = {}
    deleted: list[tuple[str, str, float]] = []
    bed.apply(_prober([f"e{i:02d}" for i in range(n)]))
    _poll(
        lambda: (
            (_json(bed, "pod", "-n", EGRESS_NS, "prober") or {}).get("status", {}).get("phase") == "Running"
        ),
        120,
        0.5,
        "the prober running",
    )
    watch_e, watch_i = _Phases(bed, EGRESS_NS), _Phases(bed, INGRESS_NS)
    phases_e: list[dict[str, float]] = []
    phases_i: list[dict[str, float]] = []
    for i in range(n):
        name = f"e{i:02d}"
        _apply(bed, [_endpoints(name, tailnet.echo_ip, tailnet.echo_port, tailnet.name)], EGRESS_NS)
        t0 = time.time()
        t1 = _egress_byte(bed, name)
        egress.append((t1 - t0) * 1000)
        phases_e.append(watch_e.of(f"{name}-tsep-0", name, t0))
        _explain_slow_start(bed, EGRESS_NS, f"{name}-tsep-0", phases_e[-1])
        time.sleep(3)  # (registration's own writes: the used key leaves the config)
        deleted.append((EGRESS_NS, name, time.time()))
        bed.kubectl("delete", "tailscaleendpoints", "-n", EGRESS_NS, name, "--wait=false")
        say(f"egress {i + 1}/{n}: {egress[-1] / 1000:.2f} s  {phases_e[-1]}  (load {os.getloadavg()[0]:.2f})")
        _pods_gone(bed, EGRESS_NS, f"{name}-tsep")
    for i in range(n):
        name = f"i{i:02d}"
        _apply(bed, [_services(name, tailnet.name)], INGRESS_NS)
        t0 = time.time()
        ip = _poll(
            lambda name=name: _ingress_address(bed, tailnet, name), 120, 0.25, f"{name}'s tailnet address"
        )
        t1 = _ingress_byte(tailnet.client, ip)
        ingress.append((t1 - t0) * 1000)
        phases_i.append(watch_i.of(f"{name}-tssvc-0", "", t0))
        _explain_slow_start(bed, INGRESS_NS, f"{name}-tssvc-0", phases_i[-1])
        time.sleep(3)
        deleted.append((INGRESS_NS, name, time.time()))
        bed.kubectl("delete", "tailscaleservices", "-n", INGRESS_NS, name, "--wait=false")
        say(
            f"ingress {i + 1}/{n}: {ingress[-1] / 1000:.2f} s  {phases_i[-1]}"
            f"  (load {os.getloadavg()[0]:.2f})"
        )
        _pods_gone(bed, INGRESS_NS, f"{name}-tssvc")
    watch_e.close()
    watch_i.close()
    events = _audit(audit_log)
    for ns, name, until in deleted:
        count, kinds = _writes(events, ns, name, until)
        writes.append(count)
        last_kinds["egress" if ns == EGRESS_NS else "ingress"] = kinds
    e, g = _stats(egress), _stats(ingress)
    return {
        "apply_to_egress_byte_p50_ms": e["p50"],
        "apply_to_egress_byte_p99_ms": e["p99"],
        "apply_to_egress_byte_p95_ms": e["p95"],
        "apply_to_egress_byte_max_ms": e["max"],
        "apply_to_egress_byte_min_ms": e["min"],
        "apply_to_ingress_byte_p50_ms": g["p50"],
        "apply_to_ingress_byte_p99_ms": g["p99"],
        "apply_to_ingress_byte_p95_ms": g["p95"],
        "apply_to_ingress_byte_max_ms": g["max"],
        "apply_to_ingress_byte_min_ms": g["min"],
        "egress_samples": len(egress),
        "ingress_samples": len(ingress),
        "phases_egress_p50_ms": _phase_p50(phases_e),
        "phases_ingress_p50_ms": _phase_p50(phases_i),
        "writes_per_object": statistics.median(writes) if writes else None,
        "writes_per_object_min": min(writes) if writes else None,
        "writes_per_object_max": max(writes) if writes else None,
        "writes_samples": len(writes),
        "writes_last_egress": dict(last_kinds.get("egress") or {}),
        "writes_last_ingress": dict(last_kinds.get("ingress") or {}),
    }


def _run_rss(bed: Bed, tailnet: _Tailnet, audit_log: Path, m: int) -> dict[str, Any]:
    base = _operator_rss(bed)
    say(f"operator RSS before the {m} objects: {base}")
    nodes = [n["metadata"]["name"] for n in bed.get("nodes")["items"]]
    for node in nodes:
        bed.kubectl("cordon", node)
    try:
        t0 = time.monotonic()
        _apply(
            bed,
            [_endpoints(f"r{i:03d}", tailnet.echo_ip, tailnet.echo_port, tailnet.name) for i in range(m)],
            RSS_NS,
        )

        def keyed() -> int:
            secrets = (_json(bed, "secrets", "-n", RSS_NS) or {"items": []})["items"]
            have = sum(1 for s in secrets if "tsgw-authkey" in (s.get("data") or {}))
            sts = len((_json(bed, "statefulsets", "-n", RSS_NS) or {"items": []})["items"])
            return m if have >= m and sts >= m else 0

        _poll(keyed, 600, 2.0, f"{m} replicas keyed with their StatefulSets")
        ready_s = time.monotonic() - t0
        say(f"{m} TailscaleEndpoints keyed with their StatefulSets in {ready_s:.1f} s; settling 10 s")
        time.sleep(10)
        rss = _operator_rss(bed)
        say(f"operator RSS at {m}: {rss}")
        until = time.time()
        events = _audit(audit_log)
        per = [_writes(events, RSS_NS, f"r{i:03d}", until)[0] for i in range(m)]
    except BaseException:
        for node in nodes:  # (the nodes stay cordoned after a measurement: nothing runs after it,
            bed.kubectl("uncordon", node, check=False)  # and 100 proxies starting at once would
        raise  # slow the bed's teardown to minutes)
    return {
        "operator_rss_mib_at_100" if m == 100 else f"operator_rss_mib_at_{m}": rss.get("leader"),
        "operator_rss_mib_standby": rss.get("standby"),
        "operator_rss_mib_before": base.get("leader"),
        "rss_objects": m,
        "rss_objects_keyed_s": round(ready_s, 1),
        "writes_per_object_at_rss_pods_pending": statistics.median(per) if per else None,
    }


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
