"""Envoy Gateway in Kubernetes mode routes to the tailnet through tsgw, on the bed.

tsgw installed as a user installs it (`kubectl apply -k` of the Headscale overlay plus the
``components/envoy-gateway`` component: the extension port on every operator replica, the
``tsgw-extension`` Service, Envoy Gateway's right to read TailscaleEndpoints); Envoy Gateway
v1.9.0 installed as its Helm chart installs it (tests/support/envoy_gateway_kube.py): the
Gateway API and Envoy Gateway CRDs, the certgen Job, the controller as a pod, with the
component's ``envoy-gateway-extension.yaml`` merged into its configuration. A Gateway makes
Envoy Gateway run an Envoy Deployment (the Envoy and the shutdown-manager as bed pods) behind a
ClusterIP Service (an EnvoyProxy); an HTTPRoute whose backendRef names a TailscaleEndpoints
gets, through tsgw's Cluster hook, a cluster to tsgw's egress Service, so a pod's request to the
Gateway reaches a tailnet device. A second route to a plain Service is not touched by the hook.
A TailscaleRoutePolicy on that second route: the leader writes its TailscaleRouteAccess, Envoy
Gateway watches it and calls the Route and HTTPListener hooks, and its Envoy answers 403 to a
pod the rules do not allow and 200 once they do; the route without a policy is unaffected.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bed import Bed
from tests.e2e.bed.helpers import headscale_overlay, pods, ready, uninstall, wait
from tests.e2e.bed.test_bed import backend_deployment, run_pod
from tests.support import envoy_gateway_kube as egk
from tests.support.install import install_on_bed

pytestmark = pytest.mark.e2e

NS = "tsgw-system"
APPS = "default"
PROXIES = "app.kubernetes.io/name=tsgw-proxy,app.kubernetes.io/instance=eg-echo-tsep"
COMPONENT = "components:\n  - ../../components/envoy-gateway\n"
CLIENTS = ("eg-client-tailnet", "eg-client-service", "eg-client-denied", "eg-client-allowed")


def _job_done(bed: Bed, name: str) -> bool:
    status = bed.get("job", "-n", egk.NAMESPACE, name).get("status", {})
    if status.get("failed"):
        raise AssertionError(f"job {name} failed: {status}")
    return bool(status.get("succeeded"))


def _uninstall_envoy_gateway(bed: Bed, crds: str) -> None:
    for kind in ("httproutes", "grpcroutes", "gateways"):
        bed.kubectl("delete", kind, "--all", "-A", "--ignore-not-found", check=False, timeout=120)
    bed.kubectl("delete", "gatewayclass", "eg", "--ignore-not-found", check=False, timeout=60)
    bed.kubectl("delete", "namespace", egk.NAMESPACE, "--ignore-not-found", check=False, timeout=180)
    for kind in ("clusterrolebinding", "clusterrole"):
        bed.kubectl("delete", kind, "eg-gateway-helm-envoy-gateway-role", "--ignore-not-found", check=False)
    # The CRDs too: the next modules' tsgw would otherwise watch Gateways it never saw before.
    bed.kubectl("delete", "--ignore-not-found", "-f", "-", input=crds, check=False, timeout=180)


@pytest.fixture(scope="module")
def installed(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert bed.tailnet is not None
    t0 = time.monotonic()
    # Envoy Gateway's CRDs and certgen first: the Job runs while tsgw installs.
    crds = egk.crds().read_text()
    bed.kubectl("apply", "--server-side", "-f", "-", input=crds, timeout=120)
    bed.kubectl("wait", "--for=condition=Established", "--timeout=90s", "-f", "-", input=crds, timeout=120)
    bed.apply(egk.certgen_objects())

    tree, overlay = headscale_overlay(bed, tmp_path_factory.mktemp("eg-install"), "bed-eg", COMPONENT)
    try:
        install_on_bed(bed, tree, overlay)
        # The configuration a user merges, taken from the component as they would take it.
        snippet = yaml.safe_load(
            (tree / "components" / "envoy-gateway" / "envoy-gateway-extension.yaml").read_text()
        )
        wait(lambda: _job_done(bed, "eg-gateway-helm-certgen"), timeout=90, what="certgen Job succeeded")
        bed.apply(egk.controller_objects(snippet))
        wait(
            lambda: any(ready(p) for p in pods(bed, egk.SELECTOR, egk.NAMESPACE)),
            timeout=120,
            what="Envoy Gateway's controller Ready",
            interval=0.5,
        )
        print(f"\nenvoy-gateway: tsgw and Envoy Gateway installed in {time.monotonic() - t0:.1f} s")
        yield overlay
    finally:
        bed.kubectl("delete", "deployment,service", "eg-web", "--ignore-not-found", check=False, timeout=120)
        bed.kubectl(
            "delete", "pod", *CLIENTS, "--ignore-not-found", "--grace-period=1", check=False, timeout=60
        )
        _uninstall_envoy_gateway(bed, crds)
        uninstall(bed, overlay, ("tailscaleendpoints",))


def _gateway_and_routes(device_ip: str) -> list[dict[str, Any]]:
    return [
        *egk.gateway_class(),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "eg", "namespace": APPS},
            "spec": {
                "gatewayClassName": "eg",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
            },
        },
        {
            "apiVersion": "gateway.tailscale.com/v1alpha1",
            "kind": "TailscaleEndpoints",
            "metadata": {"name": "eg-echo", "namespace": APPS},
            "spec": {
                "tailnetRef": {"name": "headscale"},
                "proxy": {"replicas": 1},
                "targets": [
                    {
                        "name": "device",
                        "address": device_ip,
                        "ports": [{"port": 8080, "protocol": "HTTP"}, {"port": 50051, "protocol": "GRPC"}],
                    }
                ],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "to-tailnet", "namespace": APPS},
            "spec": {
                "parentRefs": [{"name": "eg"}],
                "hostnames": ["tailnet.example"],
                "rules": [
                    {
                        "backendRefs": [
                            {
                                "group": "gateway.tailscale.com",
                                "kind": "TailscaleEndpoints",
                                "name": "eg-echo",
                            }
                        ]
                    }
                ],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "to-service", "namespace": APPS},
            "spec": {
                "parentRefs": [{"name": "eg"}],
                "hostnames": ["web.example"],
                "rules": [{"backendRefs": [{"name": "eg-web", "port": 80}]}],
            },
        },
    ]


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conds: dict[str, dict[str, Any]] = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    return conds.get(kind, {})


def _why(bed: Bed, selector: str, namespace: str) -> str:
    """The pods' states and their containers' last log lines, for a failure message."""
    out = []
    for pod in pods(bed, selector, namespace):
        name = pod["metadata"]["name"]
        out.append(f"{name}: {pod.get('status', {}).get('containerStatuses')}")
        for c in pod["spec"]["containers"]:
            log = bed.kubectl("logs", "-n", namespace, name, "-c", c["name"], "--tail=30", check=False)
            out.append(f"--- {name}/{c['name']}:\n{log}")
    return "\n".join(out)


def _envoy_service(bed: Bed) -> str:
    sel = f"{egk.ENVOY_SELECTOR},{egk.OWNING_GATEWAY}=eg"
    items = bed.get("services", "-n", egk.NAMESPACE, "-l", sel)["items"]
    return str(items[0]["metadata"]["name"]) if items else ""


ENVOYS = f"{egk.ENVOY_SELECTOR},{egk.OWNING_GATEWAY}=eg"


@pytest.fixture(scope="module")
def gateway(bed: Bed, installed: Path) -> str:
    """The Gateway, its routes, the TailscaleEndpoints (one proxy replica, targeting a tailnet
    device) and a plain backend applied, everything Ready; returns the Envoy Service's URL."""
    assert bed.tailnet is not None
    device = bed.tailnet.device("eg-device", bed.tailnet.preauth_key_for())
    bed.apply(backend_deployment("eg-web", replicas=1))
    t0 = time.monotonic()
    bed.apply(_gateway_and_routes(device.ip4()))

    # Envoy Gateway runs the Gateway's Envoy as a Deployment of its own namespace: Envoy and the
    # shutdown-manager, both Ready on the bed, behind a ClusterIP Service.
    service = wait(lambda: _envoy_service(bed), timeout=90, what="the Gateway's Envoy Service")
    spec = bed.get("service", "-n", egk.NAMESPACE, service)["spec"]
    assert spec["type"] == "ClusterIP"
    # A privileged listener port is served on port + 10000 by the (non-root) Envoy.
    assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [(80, 10080)], spec["ports"]
    try:
        envoys = wait(
            lambda: [p for p in pods(bed, ENVOYS, egk.NAMESPACE) if ready(p)],
            timeout=120,
            what="the Gateway's Envoy pod Ready",
            interval=1,
        )
    except AssertionError as e:
        raise AssertionError(
            f"{e}\n{_why(bed, ENVOYS, egk.NAMESPACE)}\n{_why(bed, egk.SELECTOR, egk.NAMESPACE)}"
        ) from None
    images = {c["name"]: c["image"] for c in envoys[0]["spec"]["containers"]}
    assert set(images) == {"envoy", "shutdown-manager"}, images
    assert images["shutdown-manager"] == egk.IMAGE, images
    wait(
        lambda: [p for p in pods(bed, PROXIES, APPS) if ready(p)],
        timeout=180,
        what="tsgw's proxy Ready",
        interval=1,
    )
    print(f"\nenvoy-gateway: objects applied to all Ready in {time.monotonic() - t0:.1f} s")
    return f"http://{service}.{egk.NAMESPACE}.svc"


def _request(bed: Bed, pod: str, url: str, host: str) -> str:
    """What a pod gets from the Gateway for ``host``: the first answer within 60 tries."""
    log = run_pod(
        bed,
        pod,
        f"for i in $(seq 1 60); do   curl -sS --max-time 3 -H 'Host: {host}' {url}/ && exit 0; sleep 1; done",
    )
    answers = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("curl:")]
    assert answers, f"{log}\n{_why(bed, ENVOYS, egk.NAMESPACE)}"
    return answers[0]


def test_a_pod_reaches_a_tailnet_device_through_envoy_gateway_and_tsgw(bed: Bed, gateway: str) -> None:
    # Envoy Gateway -> tsgw's Cluster hook -> a cluster to tsgw's egress Service -> the proxy's
    # Envoy -> tailscaled -> the device, whose test server answers with its name.
    assert _request(bed, CLIENTS[0], gateway, "tailnet.example") == "eg-device"


def test_the_gateway_is_programmed_and_a_route_to_a_service_is_unaffected(bed: Bed, gateway: str) -> None:
    gw = wait(
        lambda: (
            (g := bed.get("gateway", "-n", APPS, "eg"))
            and _condition(g, "Programmed").get("status") == "True"
            and g
        ),
        timeout=60,
        what="Gateway Programmed",
    )
    assert _condition(gw, "Accepted")["status"] == "True", gw["status"]
    # Envoy Gateway writes each route's status apart from the Gateway's: wait for it too.
    for route in ("to-tailnet", "to-service"):

        def route_conditions(route: str = route) -> dict[str, str] | None:
            parents = bed.get("httproute", "-n", APPS, route).get("status", {}).get("parents") or []
            conds = {c["type"]: c["status"] for c in (parents[0]["conditions"] if parents else ())}
            return conds if {"Accepted", "ResolvedRefs"} <= conds.keys() else None

        conds = wait(route_conditions, timeout=60, what=f"HTTPRoute {route}'s Accepted and ResolvedRefs")
        assert conds["Accepted"] == "True", (route, conds)
        assert conds["ResolvedRefs"] == "True", (route, conds)
    # The hook leaves every cluster that is not a TailscaleEndpoints' alone: the Service's
    # route still reaches its Kubernetes backend (the test server answers with its pod name).
    assert _request(bed, CLIENTS[1], gateway, "web.example").startswith("eg-web-")


def _status_until(bed: Bed, pod: str, url: str, host: str, want: str) -> None:
    """A pod asks the Gateway for ``host`` once a second until the answer's status is ``want``
    (60 tries: the policy travels leader → TailscaleRouteAccess → Envoy Gateway → its Envoy)."""
    log = run_pod(
        bed,
        pod,
        "for i in $(seq 1 60); do "
        f"  c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 -H 'Host: {host}' {url}/); "
        f'  echo "$c"; [ "$c" = {want} ] && exit 0; sleep 1; '
        "done; exit 1",
    )
    assert log.splitlines()[-1] == want, log


def test_a_route_policy_on_an_httproute_denies_and_then_allows_a_pod_in_envoy_gateways_envoy(
    bed: Bed, gateway: str
) -> None:
    policy = {
        "apiVersion": "gateway.tailscale.com/v1alpha1",
        "kind": "TailscaleRoutePolicy",
        "metadata": {"name": "web-access", "namespace": APPS},
        "spec": {
            "tailnetRef": {"name": "headscale"},
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "to-service"}],
            # Only a documentation range is allowed: every pod is denied.
            "access": {"defaultAction": "Deny", "rules": [{"action": "Allow", "cidrs": ["192.0.2.0/24"]}]},
        },
    }
    bed.apply([policy])
    try:
        access = wait(
            lambda: bed.get("tailscalerouteaccess", "-n", APPS, "web-access"),
            timeout=60,
            what="the leader wrote the TailscaleRouteAccess",
        )
        assert access["metadata"]["ownerReferences"][0]["name"] == "web-access", access["metadata"]
        _status_until(bed, CLIENTS[2], gateway, "web.example", "403")
        # The route without a policy still reaches the tailnet.
        assert _request(bed, CLIENTS[0] + "-2", gateway, "tailnet.example") == "eg-device"
        # Rewritten to allow every address (a pod's connection may reach Envoy Gateway's Envoy
        # from its own address or, masqueraded by kube-proxy, from its node's): the rewrite
        # travels the same way, and the route answers again.
        policy["spec"]["access"]["rules"] = [{"action": "Allow", "cidrs": ["0.0.0.0/0"]}]  # type: ignore[index]
        bed.apply([policy])
        _status_until(bed, CLIENTS[3], gateway, "web.example", "200")
        conds = {
            c["type"]: c["status"]
            for c in bed.get("tailscaleroutepolicy", "-n", APPS, "web-access")["status"]["ancestors"][0][
                "conditions"
            ]
        }
        assert conds.get("Accepted") == "True", conds
    finally:
        bed.kubectl(
            "delete", "tailscaleroutepolicy", "-n", APPS, "web-access", "--ignore-not-found", check=False
        )
        bed.kubectl(
            "delete",
            "pod",
            *CLIENTS[2:],
            CLIENTS[0] + "-2",
            "--ignore-not-found",
            "--grace-period=1",
            check=False,
        )
    wait(
        lambda: not bed.get("tailscalerouteaccesses", "-n", APPS)["items"],
        timeout=60,
        what="the TailscaleRouteAccess removed with its policy",
    )


def _state_ip(bed: Bed, secret: str) -> str | None:
    data = bed.get("secret", "-n", APPS, secret).get("data") or {}
    if "device_ips" not in data:
        return None
    return next(a for a in json.loads(base64.b64decode(data["device_ips"])) if "." in a)


def _get(client: Any, ip: str) -> tuple[str, list[str]]:
    """GET /headers for web.tailnet through the TailscaleGateway's proxy at ``ip``:80, from a
    tailnet device: (status line, body lines); ("dial failed: ...", []) when the tailnet did not
    carry the connection."""
    try:
        reply = client.dial(
            ip, 80, b"GET /headers HTTP/1.1\r\nHost: web.tailnet\r\nConnection: close\r\n\r\n", timeout=5
        )
    except OSError as e:
        return f"dial failed: {e!r}", []
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), body.decode(errors="replace").splitlines()


def test_a_tailscale_gateway_publishes_a_gateway_whose_route_policy_sees_the_tailnet_caller(
    bed: Bed, gateway: str
) -> None:
    """A TailscaleGateway publishes a second Gateway (PROXY protocol required by its
    ClientTrafficPolicy) on the tailnet (Headscale: on the proxy's own address). A tailnet
    device's request reaches the HTTPRoute's Kubernetes backend, which sees the device's tailnet
    address; a TailscaleRoutePolicy on that route allowing one tailnet user lets that user's
    device through and answers 403 to another user's."""
    assert bed.tailnet is not None
    alice = bed.tailnet.device("eg-alice", bed.tailnet.preauth_key_for("alice"))
    bob = bed.tailnet.device("eg-bob", bed.tailnet.preauth_key_for("bob"))
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "eg-tailnet", "namespace": APPS},
            "spec": {
                "gatewayClassName": "eg",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
            },
        },
        {
            # Every connection to this Gateway comes from tsgw's proxy, with the PROXY protocol
            # header carrying the tailnet caller's address (required: not optional).
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "ClientTrafficPolicy",
            "metadata": {"name": "eg-tailnet", "namespace": APPS},
            "spec": {
                "targetRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg-tailnet"}
                ],
                "proxyProtocol": {},
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "tailnet-web", "namespace": APPS},
            "spec": {
                "parentRefs": [{"name": "eg-tailnet"}],
                "hostnames": ["web.tailnet"],
                "rules": [{"backendRefs": [{"name": "eg-web", "port": 80}]}],
            },
        },
        {
            "apiVersion": "gateway.tailscale.com/v1alpha1",
            "kind": "TailscaleGateway",
            "metadata": {"name": "eg-tailnet", "namespace": APPS},
            "spec": {"gatewayRef": {"name": "eg-tailnet"}, "tailnetRef": {"name": "headscale"}},
        },
    ]
    bed.apply(objs)
    policy = {
        "apiVersion": "gateway.tailscale.com/v1alpha1",
        "kind": "TailscaleRoutePolicy",
        "metadata": {"name": "tailnet-web", "namespace": APPS},
        "spec": {
            "tailnetRef": {"name": "headscale"},
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "tailnet-web"}
            ],
            "access": {"defaultAction": "Deny", "rules": [{"action": "Allow", "users": ["alice"]}]},
        },
    }
    try:
        ip = wait(
            lambda: _state_ip(bed, "eg-tailnet-tsgw-0"),
            timeout=180,
            what="the TailscaleGateway's proxy joined the tailnet",
            interval=1,
        )
        seen: dict[str, Any] = {}

        def through() -> list[str] | None:
            seen["alice"] = r = _get(alice, ip)
            return r[1] if " 200 " in f"{r[0]} " else None

        try:
            lines = wait(
                through, timeout=180, what="alice reaches the backend through the Gateway", interval=1
            )
        except AssertionError as e:
            tg = bed.get("tailscalegateway", "-n", APPS, "eg-tailnet").get("status")
            raise AssertionError(f"{e}\nlast: {seen}\nTailscaleGateway status: {tg}") from None
        assert lines[0].startswith("eg-web-"), lines  # the Kubernetes backend's pod name
        forwarded = [ln for ln in lines if ln.lower().startswith("x-forwarded-for:")]
        assert forwarded, lines
        assert alice.ip4() in forwarded[0], (forwarded, alice.ip4())

        bed.apply([policy])

        def decided() -> bool:
            seen["alice"], seen["bob"] = _get(alice, ip)[0], _get(bob, ip)[0]
            return " 200 " in f"{seen['alice']} " and " 403 " in f"{seen['bob']} "

        try:
            wait(decided, timeout=120, what="alice allowed and bob denied by their tailnet users", interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}; last answers {seen}") from None
    finally:
        bed.kubectl(
            "delete", "tailscaleroutepolicy", "-n", APPS, "tailnet-web", "--ignore-not-found", check=False
        )
        bed.kubectl("delete", "tailscalegateway", "-n", APPS, "eg-tailnet", "--ignore-not-found", check=False)
        for kind in ("httproute", "clienttrafficpolicy", "gateway"):
            bed.kubectl(
                "delete",
                kind,
                "-n",
                APPS,
                "tailnet-web" if kind == "httproute" else "eg-tailnet",
                "--ignore-not-found",
                check=False,
            )


def test_a_route_to_a_tailscale_endpoints_fails_over_to_the_next_priority_through_envoy_gateway(
    bed: Bed, gateway: str
) -> None:
    """The TailscaleEndpoints' priorities hold behind Envoy Gateway: the hook's cluster goes to
    tsgw's egress Service, whose proxies move to the standby once the primary stops answering."""
    assert bed.tailnet is not None
    primary = bed.tailnet.device("eg-fo-primary", bed.tailnet.preauth_key_for())
    bed.tailnet.device("eg-fo-standby", bed.tailnet.preauth_key_for())
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.tailscale.com/v1alpha1",
            "kind": "TailscaleEndpoints",
            "metadata": {"name": "eg-fo", "namespace": APPS},
            "spec": {
                "tailnetRef": {"name": "headscale"},
                "proxy": {"replicas": 1},
                "failover": {"consecutiveFailures": 1, "ejectionTime": "60s", "interval": "1s", "retries": 1},
                "targets": [
                    {
                        "name": "primary",
                        "address": primary.ip4(),
                        "ports": [{"port": 8080, "protocol": "HTTP"}],
                    },
                    {
                        "name": "standby",
                        "address": "eg-fo-standby",
                        "priority": 1,
                        "ports": [{"port": 8080, "protocol": "HTTP"}],
                    },
                ],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "to-failover", "namespace": APPS},
            "spec": {
                "parentRefs": [{"name": "eg"}],
                "hostnames": ["fo.example"],
                "rules": [
                    {
                        "backendRefs": [
                            {"group": "gateway.tailscale.com", "kind": "TailscaleEndpoints", "name": "eg-fo"}
                        ]
                    }
                ],
            },
        },
    ]
    bed.apply(objs)
    try:
        log = run_pod(
            bed,
            "eg-fo-before",
            "for i in $(seq 1 120); do "
            "  r=$(curl -sf --max-time 3 -H 'Host: fo.example' " + gateway + "/) && "
            '  [ "$r" = eg-fo-primary ] && echo "$r" && exit 0; sleep 1; '
            "done; exit 1",
        )
        assert "eg-fo-primary" in log.splitlines(), log
        assert primary.server is not None
        primary.server.stop()
        # Every request after the stop is answered: the first one's retry goes to the next tier.
        log = run_pod(
            bed,
            "eg-fo-after",
            "for i in $(seq 1 10); do curl -sf --max-time 5 -H 'Host: fo.example' "
            + gateway
            + "/ | head -1; done",
        )
        assert [ln for ln in log.splitlines() if ln.strip()] == ["eg-fo-standby"] * 10, log
    finally:
        bed.kubectl("delete", "httproute", "-n", APPS, "to-failover", "--ignore-not-found", check=False)
        bed.kubectl("delete", "tailscaleendpoints", "-n", APPS, "eg-fo", "--ignore-not-found", check=False)
        bed.kubectl(
            "delete",
            "pod",
            "eg-fo-before",
            "eg-fo-after",
            "--ignore-not-found",
            "--grace-period=1",
            check=False,
        )


def test_a_route_to_a_missing_tailscale_endpoints_says_so_and_breaks_no_other_route(
    bed: Bed, gateway: str
) -> None:
    """Envoy Gateway checks a custom backend exists before it calls the hook: the route gets
    ResolvedRefs=False, BackendNotFound, naming the TailscaleEndpoints; the others still answer."""
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "to-missing", "namespace": APPS},
        "spec": {
            "parentRefs": [{"name": "eg"}],
            "hostnames": ["missing.example"],
            "rules": [
                {
                    "backendRefs": [
                        {"group": "gateway.tailscale.com", "kind": "TailscaleEndpoints", "name": "nope"}
                    ]
                }
            ],
        },
    }
    bed.apply([route])
    try:

        def resolved() -> dict[str, Any] | None:
            parents = bed.get("httproute", "-n", APPS, "to-missing").get("status", {}).get("parents") or []
            conds = {c["type"]: c for c in (parents[0]["conditions"] if parents else ())}
            return conds.get("ResolvedRefs")

        cond = wait(resolved, timeout=60, what="the route's ResolvedRefs condition")
        assert cond["status"] == "False", cond
        assert cond["reason"] == "BackendNotFound", cond
        assert "TailscaleEndpoints" in cond["message"], cond
        assert "nope" in cond["message"], cond
        assert _request(bed, "eg-client-after-missing", gateway, "tailnet.example") == "eg-device"
    finally:
        bed.kubectl("delete", "httproute", "-n", APPS, "to-missing", "--ignore-not-found", check=False)
        bed.kubectl(
            "delete", "pod", "eg-client-after-missing", "--ignore-not-found", "--grace-period=1", check=False
        )


def test_routes_to_tsgws_service_reach_the_device_over_http_and_grpc_with_no_hook_call(
    bed: Bed, gateway: str
) -> None:
    """The path docs/envoy-gateway.md recommends at scale, and the one for GRPCRoute (Envoy
    Gateway v1.9.0 drops a GRPCRoute's custom backends before it calls any hook): a route whose
    backendRef is the Service tsgw owns for the TailscaleEndpoints (its name, the target's port).
    Envoy Gateway builds that cluster itself from the Service's endpoints (the egress proxies);
    the proxy's Envoy carries it to the device: HTTP to its test server, and a unary gRPC call
    (``/bed.Echo/Name``, answered with the device's name) over cleartext HTTP/2."""
    routes: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "to-tsgw-service", "namespace": APPS},
            "spec": {
                "parentRefs": [{"name": "eg"}],
                "hostnames": ["service-path.example"],
                "rules": [{"backendRefs": [{"name": "eg-echo", "port": 8080}]}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": "grpc-to-tsgw-service", "namespace": APPS},
            "spec": {
                "parentRefs": [{"name": "eg"}],
                "hostnames": ["grpc.example"],
                "rules": [{"backendRefs": [{"name": "eg-echo", "port": 50051}]}],
            },
        },
    ]
    bed.apply(routes)
    try:
        assert _request(bed, "eg-client-service-path", gateway, "service-path.example") == "eg-device"
        # A gRPC frame with an empty message (flag 0, length 0); the answer's frame carries the
        # device's name (non-printable framing bytes shown as dots).
        log = run_pod(
            bed,
            "eg-client-grpc",
            "for i in $(seq 1 60); do "
            "  out=$(printf '\\0\\0\\0\\0\\0' | curl -sS --max-time 3 --http2-prior-knowledge "
            "    -H 'Host: grpc.example' -H 'content-type: application/grpc' -H 'te: trailers' "
            f"    --data-binary @- {gateway}/bed.Echo/Name | tr -c '[:print:]' '.'); "
            '  echo "answer: $out"; case "$out" in *eg-device*) exit 0;; esac; sleep 1; '
            "done; exit 1",
        )
        answers = [ln for ln in log.splitlines() if ln.startswith("answer: ")]
        assert answers, log
        assert answers[-1].endswith("eg-device"), log
    finally:
        bed.kubectl("delete", "httproute", "-n", APPS, "to-tsgw-service", "--ignore-not-found", check=False)
        bed.kubectl(
            "delete", "grpcroute", "-n", APPS, "grpc-to-tsgw-service", "--ignore-not-found", check=False
        )
        bed.kubectl(
            "delete",
            "pod",
            "eg-client-service-path",
            "eg-client-grpc",
            "--ignore-not-found",
            "--grace-period=1",
            check=False,
        )
