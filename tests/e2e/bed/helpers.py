"""Waiting on the bed's API objects, and checking that a stopped bed left nothing behind."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.bed import Bed
from tests.bed._topology import netns_list
from tests.support.boxed_fake import BoxedTailnet, boxed_tailnet
from tests.support.install import copy_install, install_on_bed
from tests.support.tailnet import Node


def wait(
    check: Callable[[], Any], timeout: float = 60, what: str = "condition", interval: float = 0.3
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value or error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout} s; last: {last!r}")


def pods(bed: Bed, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
    return bed.get("pods", "-n", namespace, "-l", selector)["items"]  # type: ignore[no-any-return]


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def pod_phase(bed: Bed, name: str, namespace: str = "default") -> str:
    return str(bed.get("pod", "-n", namespace, name).get("status", {}).get("phase", ""))


def events(bed: Bed, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    sel = f"involvedObject.name={name}"
    return bed.get("events", "-n", namespace, "--field-selector", sel)["items"]  # type: ignore[no-any-return]


def bed_pids(bed: Bed) -> list[int]:
    """Processes of the bed: anything whose command line or working files mention its directory,
    or that runs in one of its namespaces."""
    prefix = f"/run/netns/{bed.plan.prefix}-"
    own_mnt = os.readlink("/proc/self/ns/mnt")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(bed.dir) in cmd or prefix in cmd:
            found.append(int(proc.name))
            continue
        # A container: its private mount namespace holds bind mounts out of the bed's directory.
        try:
            if (
                os.readlink(proc / "ns" / "mnt") != own_mnt
                and str(bed.dir) in (proc / "mountinfo").read_text()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def assert_bed_gone(bed: Bed) -> None:
    """No process, no mount and no namespace of the bed is left."""
    left_ns = [n for n in netns_list() if n.startswith(f"{bed.plan.prefix}-")]
    assert not left_ns, f"namespaces left: {left_ns}"
    devices = bed.tailnet.nodes if bed.tailnet is not None else []
    left_procs = [p for p in [*bed.processes, *(q for d in devices for q in d.processes)] if p.alive()]
    assert not left_procs, f"processes left: {left_procs}"
    stray = bed_pids(bed)
    assert not stray, f"processes of the bed still running: {stray}"
    mounts = Path("/proc/self/mountinfo").read_text()
    leaked = [line for line in mounts.splitlines() if str(bed.dir) in line or f"/{bed.plan.prefix}-" in line]
    assert not leaked, f"mounts left: {leaked}"
    assert not (Path("/run/tsgw-bed") / str(bed.index)).exists(), "bed index still claimed"


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as fields (Uid, Gid, CapEff, ...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def pod_processes(pod: dict[str, Any]) -> list[int]:
    """Every process of the pod: those in its network namespace. The bed's kubelet names each
    container's process in its containerID (``bed://<uid>-<name>-<pid>``)."""
    cs = pod["status"]["containerStatuses"][0]
    pid = int(cs["containerID"].rsplit("-", 1)[1])
    netns = os.readlink(f"/proc/{pid}/ns/net")
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "ns" / "net") == netns:
                    found.append(int(proc.name))
            except OSError:
                continue
    assert pid in found
    return found


@contextlib.contextmanager
def box_in_bed(bed: Bed, workdir: Path, tags: tuple[str, ...]) -> Iterator[BoxedTailnet]:
    """The tailnet box and its hosted-API fake in the bed's tailnet namespace, on a second
    address there (Headscale holds the first's ports), where the bed's pods reach both."""
    ns = bed.ns["tailnet"]
    address = bed.plan.tailnet_ip.rsplit(".", 1)[0] + ".3"
    ns.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    try:
        with boxed_tailnet(workdir, ns, address, api_in_namespace=True, tags=tags) as tn:
            yield tn
    finally:
        ns.run(["ip", "addr", "del", f"{address}/24", "dev", "eth0"])


def get_headers(client: Node, host: str, port: int = 80) -> tuple[str, list[str]]:
    """GET /headers from the bed's backend through ``client``: (status line, body lines).

    The status line is ``""`` when the connection was opened and then closed with no answer (what
    the access policy's network RBAC filter does to a denied client), and ``"dial failed: ..."``
    when the tailnet did not carry the connection at all (a timeout on a loaded machine) — which
    says nothing about the policy either way.
    """
    try:
        reply = client.dial(
            host, port, b"GET /headers HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n", timeout=5
        )
    except OSError as e:
        return f"dial failed: {e!r}", []
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), body.decode(errors="replace").splitlines()


OPERATOR_NS = "tsgw-system"

BED_PATCH = """\
  - target: {kind: Deployment, name: tsgw}
    patch: |
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --proxy-env=TS_DEBUG_USE_DERP_HTTP=1
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --proxy-env=TS_NO_LOGS_NO_SUPPORT=1
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --proxy-env=TS_DISABLE_PORTMAPPER=1
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --tailnet-poll-interval=2
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --cluster-id=bed
"""
"""The operator's arguments on the bed: tailscaled's traffic over DERP's HTTP (the bed's pods
have no UDP path to each other's tailscaled), no log upload or port mapping, the facts polled
every 2 s, and the cluster id ``bed``."""

BOX_OVERLAY = (
    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\n"
    "resources:\n"
    "  - ../tailscale\n"
    "patches:\n"
    "  - path: api-url.yaml\n" + BED_PATCH
)
"""The tailscale overlay pointed at the tailnet in a box (``api-url.yaml``), with :data:`BED_PATCH`."""

HEADSCALE_OVERLAY = (
    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\n"
    "resources:\n"
    "  - ../headscale\n"
    "patches:\n"
    "  - path: headscale-url.yaml\n" + BED_PATCH
)
"""The headscale overlay pointed at the bed's Headscale (``headscale-url.yaml``), with
:data:`BED_PATCH`."""


def headscale_overlay(bed: Bed, dst: Path, name: str, extra: str = "") -> tuple[Path, Path]:
    """``deploy/kustomize`` copied under ``dst`` with an overlay ``overlays/<name>`` that installs
    the operator on the bed's Headscale (its API key and URL, :data:`BED_PATCH`), ``extra``
    appended to the overlay's kustomization; returns (the copy, the overlay)."""
    assert bed.tailnet is not None
    tree = copy_install(dst)
    (tree / "overlays" / "headscale" / "api_key").write_text(bed.tailnet.api_key())
    overlay = tree / "overlays" / name
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(HEADSCALE_OVERLAY + extra)
    (overlay / "headscale-url.yaml").write_text(
        "apiVersion: gateway.tailscale.com/v1alpha1\n"
        "kind: TailscaleTailnet\n"
        "metadata: {name: headscale}\n"
        f"spec: {{controlPlane: {{type: Headscale, apiURL: '{bed.tailnet.url}'}}}}\n"
    )
    return tree, overlay


def box_tailnet_yaml(box: BoxedTailnet, name: str = "tailscale", extra: str = "") -> str:
    """A TailscaleTailnet (or the patch of the overlay's) whose API and login are the box's."""
    return (
        "apiVersion: gateway.tailscale.com/v1alpha1\n"
        "kind: TailscaleTailnet\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  controlPlane: {{type: Tailscale, apiURL: '{box.api_url_inside}', loginURL: '{box.box.url}'}}\n"
        + extra
    )


def uninstall(bed: Bed, overlay: Path, kinds: tuple[str, ...]) -> None:
    """Delete the objects of ``kinds`` first, as docs/install.md says (foreground: each waits
    for its proxies' state Secrets, whose finalizers delete the devices and need the operator
    and the tailnet), then the install, and wait until its namespace is gone."""
    for kind in kinds:
        bed.kubectl(
            "delete",
            kind,
            "--all",
            "-A",
            "--ignore-not-found",
            "--cascade=foreground",
            check=False,
            timeout=120,
        )
    wait(
        lambda: not bed.get("secrets", "-A", "-l", "app.kubernetes.io/managed-by=tsgw")["items"],
        timeout=120,
        what="every proxy's state Secret gone (devices deleted) before the operator goes",
    )
    bed.kubectl("delete", "--ignore-not-found", "-k", str(overlay), check=False, timeout=180)
    wait(
        lambda: OPERATOR_NS not in {n["metadata"]["name"] for n in bed.get("namespaces")["items"]},
        timeout=120,
        what=f"namespace {OPERATOR_NS} gone",
    )


@contextlib.contextmanager
def operator_on_box(
    bed: Bed,
    box: BoxedTailnet,
    workdir: Path,
    *,
    services: tuple[str, ...],
    kinds: tuple[str, ...],
    credentials: tuple[str, str] | None = None,
    remove: bool = True,
) -> Iterator[Path]:
    """tsgw installed with ``kubectl apply -k`` of the tailscale overlay pointed at the box
    (:data:`BOX_OVERLAY`), with the box's OAuth client (or ``credentials``), the hosts of
    ``services`` approved by the tailnet's policy as an admin would set it; yields the overlay
    and, unless ``remove`` is False (the bed is stopped next anyway), removes the install
    (objects of ``kinds`` first) afterwards."""
    tree = copy_install(workdir)
    cid, secret = credentials or (box.oauth_client_id, box.oauth_client_secret)
    (tree / "overlays" / "tailscale" / "client_id").write_text(cid)
    (tree / "overlays" / "tailscale" / "client_secret").write_text(secret)
    overlay = tree / "overlays" / "bed-box"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(BOX_OVERLAY)
    (overlay / "api-url.yaml").write_text(box_tailnet_yaml(box))
    box.set_policy(services={s: ["tag:k8s"] for s in services})
    install_on_bed(bed, tree, overlay)
    try:
        yield overlay
    finally:
        if remove:
            uninstall(bed, overlay, kinds)
