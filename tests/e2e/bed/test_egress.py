"""Egress and ingress through tsgw, installed as a user installs it: `kubectl apply -k` of the Headscale
overlay (with the bed's Headscale URL, a real API key, and the bed's hermetic proxy settings),
the operator running as pods from its image tree; a TailscaleEndpoints names a tailnet device by
address and by name; the operator mints one key per proxy replica, the proxy StatefulSet's
containerboot joins Headscale and its Envoy takes its configuration from the operator's xDS
Service; a client pod's request to the ClusterIP Service reaches the device over the tailnet.
Then every tsgw object is deleted and the proxies' devices are gone from Headscale.

Ingress on Headscale (no Tailscale Services there): a TailscaleServices is served on each
proxy's own tailnet address; a tailnet device's request reaches a Kubernetes backend through
either proxy, and the backend sees the device's tailnet address (PROXY protocol from tailscaled
to Envoy, X-Forwarded-For from Envoy).
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import Bed
from tests.e2e.bed.helpers import (
    headscale_overlay,
    pod_processes,
    pods,
    proc_status,
    ready,
    uninstall,
    wait,
)
from tests.e2e.bed.test_bed import run_pod
from tests.support.install import OPERATOR_SELECTOR as OPERATOR
from tests.support.install import install_on_bed

pytestmark = pytest.mark.e2e

NS = "tsgw-system"
APPS = "default"
PROXIES = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=echo-tsep"

# The bed's tailnet relays through Headscale's embedded DERP over plain HTTP, and has no way to
# Tailscale's log and DERP hosts (verified.md §21): the proxies need to be told.


@pytest.fixture(scope="module")
def installed(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tree, overlay = headscale_overlay(bed, tmp_path_factory.mktemp("egress-install"), "bed-egress")
    install_on_bed(bed, tree, overlay)
    yield overlay
    # Uninstall as docs/install.md says, and wait until the namespace is gone: the next module
    # installs again into tsgw-system.
    uninstall(bed, overlay, ("tailscaleendpoints", "tailscaleservices"))


def _endpoints(address: str, name: str, *, obj: str = "echo", replicas: int = 2) -> str:
    return textwrap.dedent(
        f"""
        apiVersion: gateway.tailscale.com/v1alpha1
        kind: TailscaleEndpoints
        metadata: {{name: {obj}, namespace: {APPS}}}
        spec:
          tailnetRef: {{name: headscale}}
          proxy: {{replicas: {replicas}}}
          targets:
            - name: by-address
              address: "{address}"
              ports: [{{port: 8080, protocol: HTTP}}]
            - name: by-name
              address: "{name}"
              ports: [{{port: 9000, protocol: TCP}}]
        """
    )


def _node_names(bed: Bed) -> set[str]:
    """Every name Headscale knows its nodes by (host name and given name)."""
    assert bed.tailnet is not None
    return {
        str(n.get(k))
        for n in bed.tailnet.headscale_cli("nodes", "list") or []
        for k in ("name", "given_name", "givenName")
        if n.get(k)
    }


def test_a_pod_reaches_a_tailnet_device_through_the_proxies_the_operator_runs(
    bed: Bed, installed: Path
) -> None:
    assert bed.tailnet is not None
    device = bed.tailnet.device("echo-device", bed.tailnet.preauth_key_for())
    t0 = time.monotonic()
    bed.apply(_endpoints(device.ip4(), "echo-device"))

    # The operator mints a key per replica; containerboot joins and writes its device.
    def joined() -> list[str]:
        out = []
        for i in (0, 1):
            data = bed.get("secret", "-n", APPS, f"echo-tsep-{i}").get("data") or {}
            if "device_id" in data:
                out.append(f"echo-tsep-{i}")
        return out if len(out) == 2 else []

    wait(joined, timeout=180, what="both proxy replicas joined the tailnet", interval=1)
    wait(
        lambda: len([p for p in pods(bed, PROXIES, APPS) if ready(p)]) == 2,
        timeout=180,
        what="both proxy pods Ready (Envoy listening)",
        interval=1,
    )
    print(f"\negress: TailscaleEndpoints applied to both proxies Ready in {time.monotonic() - t0:.1f} s")

    # Every process of the proxies (containerboot, tailscaled, Envoy) runs as the StatefulSet's
    # non-root user with no capabilities, asserted from the running processes.
    for pod in pods(bed, PROXIES, APPS):
        procs = pod_processes(pod)
        assert len(procs) >= 3, procs
        for pid in procs:
            st = proc_status(pid)
            assert st["Uid"].split() == ["65532"] * 4, (pod["metadata"]["name"], pid, st["Uid"])
            assert int(st["CapEff"], 16) == 0, (pod["metadata"]["name"], pid, st["CapEff"])

    # HTTP by address, and raw TCP to the device found by name in the tailnet's facts.
    log = run_pod(
        bed,
        "egress-client",
        "for i in $(seq 1 30); do "
        f"  curl -sf --max-time 3 http://echo.{APPS}.svc:8080/ && break; sleep 1; "
        "done; echo; "
        # The by-name target has its own listener, programmed from the facts (polled every
        # 2 s): the first answer by address does not mean it is ready yet.
        "for i in $(seq 1 20); do "
        f"  python3 -c \"import socket; s=socket.create_connection(('echo.{APPS}.svc', 9000), 5); "
        "d=s.recv(100).decode().strip(); assert d, 'closed'; print(d)\" && break; sleep 1; "
        "done",
    )
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert lines[0] == "echo-device", log
    assert lines[-1] == "echo-device", log

    # The object's status: accepted, resolved, programmed on both Envoys.
    obj = bed.get("tailscaleendpoints", "-n", APPS, "echo")
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert conds["ResolvedRefs"]["status"] == "True", conds["ResolvedRefs"]

    # Programmed counts both proxies' Envoys, whichever operator replica each one reached
    # through the xDS Service (every replica reports its own Envoys to the others).
    def programmed() -> str:
        status = bed.get("tailscaleendpoints", "-n", APPS, "echo")["status"]
        c = {c["type"]: c for c in status["conditions"]}["Programmed"]
        return str(c["message"]) if c["status"] == "True" and c["message"].startswith("2 Envoy") else ""

    wait(programmed, timeout=60, what="Programmed=True with both Envoys")

    # Deleting the object removes the proxies and their devices from Headscale.
    names = {f"echo-tsep-{i}" for i in (0, 1)}
    assert names <= _node_names(bed)
    bed.kubectl("delete", "tailscaleendpoints", "-n", APPS, "echo")
    try:
        wait(
            lambda: not bed.get("secrets", "-n", APPS, "-l", "app.kubernetes.io/managed-by=tsgw")["items"],
            timeout=120,
            what="every owned Secret gone",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_clean_up_state(bed)}") from None
    left = _node_names(bed)
    assert not (names & left), f"devices left on Headscale: {json.dumps(sorted(names & left))}"


def _clean_up_state(bed: Bed) -> str:
    """What a stuck clean-up holds: the owned Secrets left (finalizers, deletion time), the
    devices Headscale still lists, and the operator's log lines about them."""
    left = [
        {
            "name": s["metadata"]["name"],
            "finalizers": s["metadata"].get("finalizers"),
            "deletionTimestamp": s["metadata"].get("deletionTimestamp"),
        }
        for s in bed.get("secrets", "-n", APPS, "-l", "app.kubernetes.io/managed-by=tsgw")["items"]
    ]
    lines = []
    for pod in pods(bed, OPERATOR, NS):
        name = pod["metadata"]["name"]
        log = bed.pod_log(NS, name)
        lines += [f"{name}: {line}" for line in log.splitlines() if "echo-tsep" in line][-40:]
    return (
        f"Secrets left: {json.dumps(left)}\ndevices on Headscale: {sorted(_node_names(bed))}\n"
        + "\n".join(lines)
    )


def test_a_tailnet_device_reaches_a_kubernetes_backend_through_each_proxy_with_its_own_address(
    bed: Bed, installed: Path
) -> None:
    assert bed.tailnet is not None
    laptop = bed.tailnet.device("ingress-client", bed.tailnet.preauth_key_for())
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: web, namespace: {APPS}}}
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
              tailnetRef: {{name: headscale}}
              proxy: {{replicas: 2}}
              ports: [{{port: 80, protocol: HTTP, targetPort: http}}]
              backends: [{{service: web}}]
            """
        )
    )

    def addresses() -> list[str]:
        out = []
        for i in (0, 1):
            data = bed.get("secret", "-n", APPS, f"web-tssvc-{i}").get("data") or {}
            if "device_ips" not in data:
                return []
            ips = json.loads(base64.b64decode(data["device_ips"]))
            out.append(next(ip for ip in ips if "." in ip))
        return out

    proxies = wait(addresses, timeout=180, what="both ingress proxies joined", interval=1)
    obj = bed.get("tailscaleservices", "-n", APPS, "web")
    accepted = {c["type"]: c for c in obj["status"]["conditions"]}["Accepted"]
    assert "no Tailscale Services" in accepted["message"], accepted
    for ip in proxies:
        # (Until the backend pod and its EndpointSlice are there, Envoy answers 503: wait for 200.)
        reply = wait(
            lambda ip=ip: (
                (r := laptop.dial(ip, 80, b"GET /headers HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"))
                and b" 200 " in r.split(b"\r\n", 1)[0]
                and r
            ),
            timeout=90,
            what=f"the laptop reaches the backend through the proxy at {ip}",
        )
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n", 1)[0], reply
        lines = body.decode().splitlines()
        assert lines[0].startswith("web-"), lines  # the backend pod's name
        forwarded = [ln for ln in lines if ln.lower().startswith("x-forwarded-for:")]
        assert forwarded, lines
        assert laptop.ip4() in forwarded[0], (forwarded, laptop.ip4())
    bed.kubectl("delete", "tailscaleservices", "-n", APPS, "web")
    names = {"web-tssvc-0", "web-tssvc-1"}
    wait(lambda: not (names & _node_names(bed)), timeout=120, what="the ingress proxies' devices deleted")


def _lease_holder(bed: Bed) -> str:
    return str(bed.get("lease", "-n", NS, "tsgw-operator")["spec"].get("holderIdentity") or "")


def test_traffic_survives_a_proxy_replica_killed_and_the_leader_operator_killed(
    bed: Bed, installed: Path
) -> None:
    """HA: a request loop through the egress Service while one proxy replica is deleted, then
    while the leader operator pod is killed: requests keep being answered (failures counted and
    bounded), the other operator replica takes the Lease, and its controllers act (a change is
    programmed)."""
    assert bed.tailnet is not None
    device = bed.tailnet.device("ha-device", bed.tailnet.preauth_key_for())
    bed.apply(_endpoints(device.ip4(), "ha-device", obj="ha"))
    proxies = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=ha-tsep"
    wait(
        lambda: len([p for p in pods(bed, proxies, APPS) if ready(p)]) == 2,
        timeout=180,
        what="both HA proxies Ready",
        interval=1,
    )
    # The client: 40 s of requests, one every 0.25 s, each on a new connection; prints a tally.
    loop = (
        "ok=0; failed=0; end=$(( $(date +%s) + 40 )); "
        "while [ $(date +%s) -lt $end ]; do "
        f"  if curl -sf --max-time 2 http://ha.{APPS}.svc:8080/ >/dev/null; then ok=$((ok+1)); "
        "  else failed=$((failed+1)); fi; sleep 0.25; "
        "done; echo ok=$ok failed=$failed"
    )
    bed.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "ha-client", "namespace": APPS},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "bed.test/shell", "command": ["sh", "-c", loop]}
                    ],
                },
            }
        ]
    )
    wait(lambda: bed.get("pod", "-n", APPS, "ha-client")["status"].get("phase") == "Running", timeout=60)
    time.sleep(5)  # (let the loop run on both replicas first; not a wait for an event)
    bed.kubectl("delete", "pod", "-n", APPS, "ha-tsep-0", "--wait=false")
    time.sleep(5)
    leader = _lease_holder(bed)
    assert leader, "no operator holds the Lease"
    operators = [p["metadata"]["name"] for p in pods(bed, OPERATOR, NS)]
    assert leader in operators, (leader, operators)
    t0 = time.monotonic()
    bed.kubectl("delete", "pod", "-n", NS, leader, "--grace-period=0", "--force", "--wait=false")
    new = wait(
        lambda: (h := _lease_holder(bed)) and h != leader and h,
        timeout=60,
        what="another operator replica took the Lease",
        interval=0.5,
    )
    print(f"\nHA: leader {leader} killed; {new} took the Lease after {time.monotonic() - t0:.1f} s")
    phase = wait(
        lambda: (
            (p := bed.get("pod", "-n", APPS, "ha-client")["status"].get("phase")) in ("Succeeded", "Failed")
            and p
        ),
        timeout=90,
        what="the request loop finished",
    )
    tally = bed.pod_log(APPS, "ha-client").strip().splitlines()[-1]
    print(f"HA: request loop across a proxy replica deleted and the leader killed: {tally}")
    ok, failed = (int(part.split("=")[1]) for part in tally.split())
    assert phase == "Succeeded"
    assert ok > 100, tally
    assert failed <= 10, tally  # a replica's connections drop while kube-proxy moves away from it

    # The new leader's controllers act: scaling to one replica is applied and programmed.
    bed.kubectl(
        "patch",
        "tailscaleendpoints",
        "-n",
        APPS,
        "ha",
        "--type=merge",
        "-p",
        '{"spec":{"proxy":{"replicas":1}}}',
    )
    wait(
        lambda: bed.get("statefulset", "-n", APPS, "ha-tsep")["spec"]["replicas"] == 1,
        timeout=60,
        what="the new leader applied the change",
    )
    bed.kubectl("delete", "tailscaleendpoints", "-n", APPS, "ha")
    bed.kubectl("delete", "pod", "-n", APPS, "ha-client", "--wait=false")


def _nodes_named(bed: Bed, name: str) -> list[dict[str, object]]:
    assert bed.tailnet is not None
    return [
        n
        for n in bed.tailnet.headscale_cli("nodes", "list") or []
        if name in (n.get("name"), n.get("given_name"), n.get("givenName"))
    ]


def _proxy_keys(bed: Bed) -> list[dict[str, object]]:
    """Headscale's pre-auth keys carrying the proxies' tag (the test devices' keys carry none)."""
    assert bed.tailnet is not None
    return [
        k
        for k in bed.tailnet.headscale_cli("preauthkeys", "list") or []
        if "tag:k8s" in (k.get("acl_tags") or k.get("aclTags") or k.get("tags") or ())
    ]


def _usable(key: dict[str, object]) -> bool:
    """A key that could still join a device: not used (single-use) and not expired."""
    expiry = (key.get("expiration") or {}) if isinstance(key.get("expiration"), dict) else {}
    expired = bool(expiry) and float(expiry.get("seconds", 0)) < time.time()  # type: ignore[arg-type]
    return not key.get("used") and not key.get("reusable") and not expired


def _state(bed: Bed, secret: str) -> dict[str, str]:
    data = bed.get("secret", "-n", APPS, secret).get("data") or {}
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def _curl_until(bed: Bed, pod: str, url: str, want: str) -> None:
    log = run_pod(
        bed,
        pod,
        f"for i in $(seq 1 40); do r=$(curl -sf --max-time 3 {url}) && "
        f'echo "$r" | grep -qx {want} && echo "$r" && exit 0; sleep 1; done; exit 1',
    )
    assert want in log.splitlines(), log


def test_a_proxy_whose_device_was_deleted_rejoins_with_exactly_one_new_key(bed: Bed, installed: Path) -> None:
    """An admin deletes the proxy's device and the pod restarts: containerboot cannot log in with
    its old node key and has no key in its config (the used one left it), so it asks for a new
    one (``reissue_authkey``); the operator mints exactly one, and the proxy is back on the
    tailnet and carrying traffic without a human."""
    assert bed.tailnet is not None
    device = bed.tailnet.device("rejoin-device", bed.tailnet.preauth_key_for())
    bed.apply(_endpoints(device.ip4(), "rejoin-device", obj="rejoin", replicas=1))
    old = wait(
        lambda: _state(bed, "rejoin-tsep-0").get("device_id"),
        timeout=180,
        what="the proxy joined",
        interval=1,
    )
    _curl_until(bed, "rejoin-before", f"http://rejoin.{APPS}.svc:8080/", "rejoin-device")
    keys_before = len(_proxy_keys(bed))
    (node,) = _nodes_named(bed, "rejoin-tsep-0")
    bed.tailnet.headscale_cli("nodes", "delete", "-i", str(node["id"]), "--force")
    bed.kubectl("delete", "pod", "-n", APPS, "rejoin-tsep-0", "--wait=false")
    t0 = time.monotonic()
    try:
        new = wait(
            lambda: (d := _state(bed, "rejoin-tsep-0").get("device_id")) and d != old and d,
            timeout=300,
            what="the proxy re-joined as a new device",
            interval=1,
        )
    except AssertionError as e:
        state = {k: (v if k != "authkey" else "<set>") for k, v in _state(bed, "rejoin-tsep-0").items()}
        log = bed.kubectl("logs", "-n", APPS, "rejoin-tsep-0", "-c", "tailscale", "--tail=40", check=False)
        raise AssertionError(f"{e}\nstate Secret: {sorted(state)}\ntailscale log:\n{log}") from None
    print(
        f"\nre-issue: device {old} deleted, pod restarted; "
        f"re-joined as {new} after {time.monotonic() - t0:.1f} s"
    )
    _curl_until(bed, "rejoin-after", f"http://rejoin.{APPS}.svc:8080/", "rejoin-device")
    assert len(_proxy_keys(bed)) == keys_before + 1, "exactly one new key"
    assert len(_nodes_named(bed, "rejoin-tsep-0")) == 1
    assert (
        "reissue_authkey" not in _state(bed, "rejoin-tsep-0")
        or not _state(bed, "rejoin-tsep-0")["reissue_authkey"]
    )
    bed.kubectl("delete", "tailscaleendpoints", "-n", APPS, "rejoin")
    wait(lambda: not _nodes_named(bed, "rejoin-tsep-0"), timeout=120, what="the proxy's device deleted")


def test_keys_and_devices_across_a_leader_restart_a_scale_down_and_a_deletion(
    bed: Bed, installed: Path
) -> None:
    """The leader operator is killed right after the object is applied (mid-reconcile): the
    other replica takes over and no key is minted twice (exactly one per replica). Scaling 2→1
    deletes one device; deleting the object leaves no device, no usable key and no Secret."""
    assert bed.tailnet is not None
    device = bed.tailnet.device("keys-device", bed.tailnet.preauth_key_for())
    keys_before = len(_proxy_keys(bed))
    leader = _lease_holder(bed)
    bed.apply(_endpoints(device.ip4(), "keys-device", obj="keys", replicas=2))
    bed.kubectl("delete", "pod", "-n", NS, leader, "--grace-period=0", "--force", "--wait=false")
    wait(
        lambda: all(_state(bed, f"keys-tsep-{i}").get("device_id") for i in (0, 1)),
        timeout=240,
        what="both proxies joined under the new leader",
        interval=1,
    )
    assert _lease_holder(bed) != leader
    assert len(_proxy_keys(bed)) == keys_before + 2, "one key per replica, none twice"
    assert all(len(_nodes_named(bed, f"keys-tsep-{i}")) == 1 for i in (0, 1))

    bed.kubectl(
        "patch",
        "tailscaleendpoints",
        "-n",
        APPS,
        "keys",
        "--type=merge",
        "-p",
        '{"spec":{"proxy":{"replicas":1}}}',
    )
    wait(lambda: not _nodes_named(bed, "keys-tsep-1"), timeout=120, what="replica 1's device deleted")
    assert len(_nodes_named(bed, "keys-tsep-0")) == 1

    bed.kubectl("delete", "tailscaleendpoints", "-n", APPS, "keys")
    wait(lambda: not _nodes_named(bed, "keys-tsep-0"), timeout=120, what="replica 0's device deleted")
    wait(
        lambda: (
            not [
                s
                for s in bed.get("secrets", "-n", APPS, "-l", "app.kubernetes.io/managed-by=tsgw")["items"]
                if s["metadata"]["name"].startswith("keys-tsep")
            ]
        ),
        timeout=120,
        what="every Secret of the object gone",
    )
    usable = [k for k in _proxy_keys(bed) if _usable(k)]
    assert not usable, f"keys that could still join a device: {usable}"


def test_egress_fails_over_to_the_next_priority_when_the_primary_device_stops_answering(
    bed: Bed, installed: Path
) -> None:
    assert bed.tailnet is not None
    primary = bed.tailnet.device("fo-primary", bed.tailnet.preauth_key_for())
    standby = bed.tailnet.device("fo-standby", bed.tailnet.preauth_key_for())
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleEndpoints
            metadata: {{name: fo, namespace: {APPS}}}
            spec:
              tailnetRef: {{name: headscale}}
              proxy: {{replicas: 1}}
              failover: {{consecutiveFailures: 1, ejectionTime: 60s, interval: 1s, retries: 1}}
              targets:
                - {{name: primary, address: "{primary.ip4()}", ports: [{{port: 8080, protocol: HTTP}}]}}
                - {{name: standby, address: fo-standby, priority: 1, ports: [{{port: 8080, protocol: HTTP}}]}}
            """
        )
    )
    _curl_until(bed, "fo-before", f"http://fo.{APPS}.svc:8080/", "fo-primary")
    assert primary.server is not None
    primary.server.stop()
    # Every request after the stop is answered: the first one's retry goes to the next tier,
    # and the primary is ejected.
    log = run_pod(
        bed,
        "fo-after",
        f"ok=0; for i in $(seq 1 10); do   curl -sf --max-time 5 http://fo.{APPS}.svc:8080/ | head -1; done",
    )
    answers = [ln for ln in log.splitlines() if ln.strip()]
    assert answers == ["fo-standby"] * 10, log
    assert standby.ip4()
    bed.kubectl("delete", "tailscaleendpoints", "-n", APPS, "fo")


def test_a_tailnet_with_wrong_credentials_gets_a_condition_and_breaks_nothing_else(
    bed: Bed, installed: Path
) -> None:
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: Secret
            metadata: {{name: wrong-key, namespace: {NS}}}
            stringData: {{api_key: not-a-key}}
            ---
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleTailnet
            metadata: {{name: wrong}}
            spec:
              controlPlane: {{type: Headscale, apiURL: "{bed.tailnet.url if bed.tailnet else ""}"}}
              credentials: {{secretRef: {{namespace: {NS}, name: wrong-key}}, apiKey: {{key: api_key}}}}
              tags: ["tag:k8s"]
            """
        )
    )
    restarts = {
        p["metadata"]["name"]: sum(
            c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or ()
        )
        for p in pods(bed, OPERATOR, NS)
    }

    def condition(name: str) -> dict[str, str]:
        status = bed.get("tailscaletailnet", name).get("status") or {}
        return {c["type"]: c for c in status.get("conditions") or ()}.get("Ready") or {}

    ready_ = wait(
        lambda: condition("wrong").get("reason") == "AuthFailed" and condition("wrong"),
        timeout=60,
        what="AuthFailed",
    )
    assert ready_["status"] == "False"
    assert condition("headscale").get("status") == "True"
    # The operator keeps running: no restart, both replicas still Ready.
    time.sleep(3)  # (a window for a crash loop to show, not a wait for an event)
    for p in pods(bed, OPERATOR, NS):
        n = sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or ())
        assert n == restarts.get(p["metadata"]["name"], n), p["metadata"]["name"]
        assert ready(p)
    bed.kubectl("delete", "tailscaletailnet", "wrong")
    bed.kubectl("delete", "secret", "-n", NS, "wrong-key")
