"""The install manifests (deploy/kustomize): every overlay renders what docs/install.md promises,
a real API server accepts them, and the RBAC they grant covers what the operator does (including
creating the Roles it owns past RBAC's escalation check) and little else."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.install import (
    OVERLAYS,
    SERVICE_ACCOUNT,
    as_json,
    can_i,
    copy_install,
    find,
    kubectl,
    render,
)
from tsgw import api

pytestmark = pytest.mark.integration

GROUP = "gateway.tailscale.com"
OWNING = ("tailscaleendpoints", "tailscaleservices", "tailscalegateways")
KINDS = ("tailscaletailnets", *OWNING, "tailscaleroutepolicies")
TS = [f"{k}.{GROUP}" for k in KINDS]
DERIVED = ("tailscalerouteaccesses",)
"""Kinds tsgw writes for Envoy Gateway to read (a CRD of the base, not an informer of its input)."""


def _container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(objs, "Deployment", "tsgw")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["tsgw"]
    return pod["containers"][0]  # type: ignore[no-any-return]


def test_each_overlay_renders_the_operator_its_tailnet_and_credentials(tmp_path: Path) -> None:
    tree = copy_install(tmp_path)
    base = render(tree / "base")
    crds = {o["spec"]["names"]["plural"] for o in base if o["kind"] == "CustomResourceDefinition"}
    assert crds == {*KINDS, *DERIVED}
    dep = find(base, "Deployment", "tsgw")
    assert dep["metadata"]["namespace"] == "tsgw-system"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tsgw"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    c = _container(base)
    assert c["image"].startswith("ghcr.io/tsgw/tsgw:")
    assert c["args"][0] == "run"
    assert "--leader-elect" in c["args"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "xds": 18000,
        "metrics": 8080,
        "health": 8081,
    }
    assert {e["name"] for e in c["env"]} == {"POD_NAME", "POD_NAMESPACE", "POD_UID"}
    assert c["resources"]["requests"]
    assert find(base, "Service", "tsgw")["spec"]["ports"][0]["port"] == 18000
    assert find(base, "Service", "tsgw-metrics")["spec"]["ports"][0]["port"] == 8080
    # Nothing of the install wears the label of the objects the operator owns (its informers and
    # pruning select on it).
    assert not [o for o in base if "managed-by" in str(o["metadata"].get("labels"))]

    out = {name: render(tree / "overlays" / name) for name in OVERLAYS}
    ts = find(out["tailscale"], "TailscaleTailnet", "tailscale")
    assert "namespace" not in ts["metadata"]  # cluster-scoped
    assert api.load(ts).spec.credentials.oauth is not None
    secret = find(out["tailscale"], "Secret", "tailscale-oauth")
    assert secret["metadata"]["namespace"] == "tsgw-system"
    assert set(secret["data"]) == {"client_id", "client_secret"}

    hs = find(out["headscale"], "TailscaleTailnet", "headscale")
    spec = api.load(hs).spec
    assert spec.control_plane.type is api.ControlPlaneType.HEADSCALE
    assert spec.credentials.secret_ref.name == "headscale-api-key"
    assert set(find(out["headscale"], "Secret", "headscale-api-key")["data"]) == {"api_key"}

    cluster = out["example-cluster"]
    assert find(cluster, "Deployment", "tsgw")["spec"]["replicas"] == 3
    assert _container(cluster)["image"] == "ghcr.io/tsgw/tsgw:v0.1.0"
    assert all(o["metadata"]["labels"]["example.com/cluster"] == "eu-west-1" for o in cluster)
    assert "--cluster-id=eu-west-1" in _container(cluster)["args"]
    # The selector a running Deployment has is immutable: the overlay must not touch it.
    assert find(cluster, "Deployment", "tsgw")["spec"]["selector"] == dep["spec"]["selector"]


def test_the_api_server_accepts_the_install_and_its_rbac_covers_the_operator(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kc = control_plane.kubeconfig
    tree = copy_install(tmp_path)
    objs = render(tree / "overlays" / "headscale")
    # Namespace and CRDs first (their kinds must exist before the rest can even be dry-run);
    # forced: other tests of the session applied the same CRDs under another field manager.
    first = [o for o in objs if o["kind"] in ("Namespace", "CustomResourceDefinition")]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", kubeconfig=kc, input=as_json(first))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{o['metadata']['name']}" for o in first if o["kind"] != "Namespace"],
        kubeconfig=kc,
    )
    for name in OVERLAYS:
        kubectl(
            "apply", "--server-side", "--dry-run=server", "-k", str(tree / "overlays" / name), kubeconfig=kc
        )
    rest = [o for o in objs if o not in first]
    kubectl("apply", "--server-side", "-f", "-", kubeconfig=kc, input=as_json(rest))
    try:
        ns = f"team-{uuid.uuid4().hex[:6]}"  # a user's namespace: it needs not exist for can-i
        allowed = {
            # informers (cluster-wide) and status writes
            **{("list", k, None): True for k in TS},
            **{("watch", k, None): True for k in TS},
            **{("patch", f"{k}.{GROUP}/status", ns): True for k in OWNING},
            ("patch", f"tailscaletailnets.{GROUP}/status", None): True,
            **{("update", f"{k}.{GROUP}/finalizers", ns): True for k in OWNING},
            ("list", "services", None): True,
            ("watch", "endpointslices.discovery.k8s.io", None): True,
            ("watch", "gateways.gateway.networking.k8s.io", None): True,
            # owned objects in users' namespaces
            **{
                (v, r, ns): True
                for r in ("statefulsets.apps", "roles.rbac.authorization.k8s.io", "secrets", "configmaps")
                for v in ("create", "patch", "delete", "watch")
            },
            ("create", "events.events.k8s.io", ns): True,
            # TailscaleRouteAccess objects, for Envoy Gateway; their status is Envoy Gateway's
            **{
                (v, f"tailscalerouteaccesses.{GROUP}", ns): True
                for v in ("create", "patch", "delete", "watch")
            },
            ("patch", f"tailscalerouteaccesses.{GROUP}/status", ns): False,
            ("update", f"tailscaleroutepolicies.{GROUP}/finalizers", ns): True,
            # leader election, only in its namespace and only its Lease once it exists
            ("create", "leases.coordination.k8s.io", "tsgw-system"): True,
            ("update", "leases.coordination.k8s.io/tsgw-operator", "tsgw-system"): True,
            ("update", "leases.coordination.k8s.io/other", "tsgw-system"): False,
            ("create", "leases.coordination.k8s.io", "kube-system"): False,
            ("get", "secrets", "tsgw-system"): True,
            # nothing beyond it
            ("create", "pods", ns): False,
            ("update", "deployments.apps", "tsgw-system"): False,
            ("delete", "customresourcedefinitions.apiextensions.k8s.io", None): False,
            ("delete", "namespaces", None): False,
            ("escalate", "roles.rbac.authorization.k8s.io", ns): False,
            ("bind", "roles.rbac.authorization.k8s.io", ns): False,
            ("create", "clusterroles.rbac.authorization.k8s.io", None): False,
            ("update", f"tailscaleendpoints.{GROUP}", ns): False,
            ("delete", f"tailscaletailnets.{GROUP}", None): False,
            ("update", f"tailscaletailnets.{GROUP}/status", None): False,
        }
        got = {key: can_i(kc, key[0], key[1], namespace=key[2]) for key in allowed}
        assert got == allowed, {k: v for k, v in got.items() if v != allowed[k]}

        # RBAC's escalation check: the operator may create the Role a proxy group's pods get
        # (get/update/patch on their state Secrets by name) and bind it, because it holds those
        # verbs itself. Dry-run as the ServiceAccount in a real namespace.
        kubectl("create", "namespace", ns, kubeconfig=kc)
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {
                "name": "web-tssvc",
                "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "tsgw"},
            },
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["web-tssvc-0"],
                    "verbs": ["get", "update", "patch"],
                }
            ],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "web-tssvc", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web-tssvc"},
            "subjects": [{"kind": "ServiceAccount", "name": "web-tssvc", "namespace": ns}],
        }
        as_sa = [f"--as={SERVICE_ACCOUNT}", "--field-manager=tsgw"]
        kubectl(
            "apply",
            "--server-side",
            "--dry-run=server",
            *as_sa,
            "-f",
            "-",
            kubeconfig=kc,
            input=as_json([role]),
        )
        kubectl("apply", "--server-side", *as_sa, "-f", "-", kubeconfig=kc, input=as_json([role]))
        kubectl(
            "apply",
            "--server-side",
            "--dry-run=server",
            *as_sa,
            "-f",
            "-",
            kubeconfig=kc,
            input=as_json([binding]),
        )
        # ...and nothing more: a Role granting what it does not hold (pods) is refused.
        role["rules"].append({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]})
        with pytest.raises(RuntimeError, match="forbidden"):
            kubectl(
                "apply",
                "--server-side",
                "--dry-run=server",
                *as_sa,
                "-f",
                "-",
                kubeconfig=kc,
                input=as_json([role]),
            )
    finally:
        kubectl(
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            kubeconfig=kc,
            input=as_json(rest),
            check=False,
        )
        kubectl(
            "delete",
            "namespace",
            "--ignore-not-found",
            "--wait=false",
            "tsgw-system",
            ns,
            kubeconfig=kc,
            check=False,
        )


def test_the_envoy_gateway_component_serves_the_hook_behind_a_service_envoy_gateway_is_told_of(
    tmp_path: Path,
) -> None:
    """components/envoy-gateway added to an overlay (docs/envoy-gateway.md): every replica serves
    the extension on a named port, a Service selects the operator pods, Envoy Gateway's
    ServiceAccount may read TailscaleEndpoints and nothing else, and the configuration snippet a
    user merges into Envoy Gateway's names that Service."""
    import yaml

    tree = copy_install(tmp_path)
    overlay = tree / "overlays" / "with-eg"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../headscale]\ncomponents: [../../components/envoy-gateway]\n"
    )
    plain, objs = render(tree / "overlays" / "headscale"), render(overlay)
    c = _container(objs)
    assert c["args"] == [*_container(plain)["args"], "--extension=0.0.0.0:5005"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["extension"] == 5005
    svc = find(objs, "Service", "tsgw-extension")
    assert svc["metadata"]["namespace"] == "tsgw-system"
    assert svc["spec"]["selector"] == find(objs, "Deployment", "tsgw")["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "extension", "port": 5005, "targetPort": "extension", "appProtocol": "kubernetes.io/h2c"}
    ]
    role = find(objs, "ClusterRole", "tsgw-envoy-gateway")
    assert role["rules"] == [
        {
            "apiGroups": [GROUP],
            "resources": ["tailscaleendpoints", "tailscalerouteaccesses"],
            "verbs": ["get", "list", "watch"],
        },
        # Envoy Gateway writes its own Accepted (per Gateway) into a policy resource's status.
        {"apiGroups": [GROUP], "resources": ["tailscalerouteaccesses/status"], "verbs": ["update", "patch"]},
    ]
    binding = find(objs, "ClusterRoleBinding", "tsgw-envoy-gateway")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "envoy-gateway", "namespace": "envoy-gateway-system"}
    ]
    # Everything else is the overlay's own.
    assert len(objs) == len(plain) + 3

    snippet = yaml.safe_load(
        (tree / "components" / "envoy-gateway" / "envoy-gateway-extension.yaml").read_text()
    )
    manager = snippet["extensionManager"]
    assert manager["service"]["fqdn"] == {
        "hostname": "tsgw-extension.tsgw-system.svc.cluster.local",
        "port": 5005,
    }
    assert manager["backendResources"] == [
        {"group": GROUP, "version": "v1alpha1", "kind": "TailscaleEndpoints"}
    ]
    assert manager["policyResources"] == [
        {"group": GROUP, "version": "v1alpha1", "kind": "TailscaleRouteAccess"}
    ]
    # Route puts a policy's rules on its route; HTTPListener the filter that reads them.
    assert manager["hooks"] == {"xdsTranslator": {"post": ["Cluster", "Route", "HTTPListener"]}}
