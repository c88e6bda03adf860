"""Model → the Kubernetes objects tsgw owns for each proxy group, as plain dicts ready for
server-side apply.

Per group: ServiceAccount, Role and RoleBinding (each replica may read and write only the
group's state Secrets, by resourceNames), one state Secret per replica (containerboot keeps
tailscaled's state and the device's id, name and addresses there), one config Secret per
replica (the versioned tailscaled config file containerboot reads), the Envoy bootstrap
ConfigMap (a Secret when the xDS server authenticates: it holds the group's token), for
ingress the serve ConfigMap, for egress the ClusterIP Service, and the StatefulSet whose pods
run tailscaled (through tailscale's containerboot) and Envoy, both unprivileged.

containerboot's inputs (environment, per-replica tailscaled config file, serve config) come from
tsgw.tailscale.ProxyConfig in config-file mode, which is tested against real containerboot.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

from tsgw.api import API_VERSION
from tsgw.model import Direction, ProxyGroup
from tsgw.tailscale import HostedService, ProxyConfig, ServePort
from tsgw.translate._identity import egress_service_name, node_cluster
from tsgw.translate._inputs import Options
from tsgw.xds import bootstrap, group_token

__all__ = ["DEVICE_FINALIZER", "envoy_bootstrap", "owned_objects", "proxy_config"]

DEVICE_FINALIZER = "gateway.tailscale.com/device-cleanup"
"""On each replica's state Secret: its device is deleted from the tailnet before it goes."""

_LABEL_NAME = "app.kubernetes.io/name"
_LABEL_INSTANCE = "app.kubernetes.io/instance"
_LABEL_MANAGED = "app.kubernetes.io/managed-by"
_LABEL_OWNER_KIND = "gateway.tailscale.com/owner-kind"
_LABEL_OWNER_NAME = "gateway.tailscale.com/owner-name"
_LABEL_TAILNET = "gateway.tailscale.com/tailnet"

_STATE_MOUNT = "/etc/tsconfig"
_SERVE_MOUNT = "/etc/tsgw/serve"
_ENVOY_MOUNT = "/etc/envoy"


def _labels(g: ProxyGroup) -> dict[str, str]:
    return {
        _LABEL_NAME: "tsgw-proxy",
        _LABEL_INSTANCE: g.name,
        _LABEL_MANAGED: "tsgw",
        _LABEL_OWNER_KIND: g.owner.kind,
        _LABEL_OWNER_NAME: g.owner.name,
        # The devices' tailnet: the auth-key controller cleans a replica up from its state
        # Secret alone, after the owner is gone.
        _LABEL_TAILNET: g.tailnet,
    }


def _selector(g: ProxyGroup) -> dict[str, str]:
    return {_LABEL_NAME: "tsgw-proxy", _LABEL_INSTANCE: g.name}


_Shared = tuple[dict[str, str], list[dict[str, Any]]]


def _meta(g: ProxyGroup, name: str, shared: _Shared | None = None) -> dict[str, Any]:
    labels, owners = shared or _shared_meta(g)
    md: dict[str, Any] = {"name": name, "namespace": g.namespace, "labels": labels}
    if owners:
        md["ownerReferences"] = owners
    return md


def _shared_meta(g: ProxyGroup) -> _Shared:
    """The labels and owner references every object of ``g`` carries, built once per group:
    the objects share these values (owned objects are read-only by convention: they are
    serialized for server-side apply and compared, never changed)."""
    owners = []
    if g.owner.uid:
        owners.append(
            {
                "apiVersion": API_VERSION,
                "kind": g.owner.kind,
                "name": g.owner.name,
                "uid": g.owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        )
    return _labels(g), owners


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def proxy_config(g: ProxyGroup, options: Options, pod: str = "$(POD_NAME)") -> ProxyConfig:
    """containerboot's settings for a replica of `g` (`pod` = its name; the default is the
    downward-API reference the shared pod template uses)."""
    hosted: tuple[HostedService, ...] = ()
    on_device: tuple[ServePort, ...] = ()
    if g.tailscale_service is not None:
        ports = tuple(ServePort(port, local) for port, local in g.tailscale_service.ports)
        if g.pod.serve_on_device:
            on_device = ports  # no Tailscale Services here (Headscale): the proxy's own name
        else:
            hosted = (HostedService(g.tailscale_service.name, ports),)
    return ProxyConfig(
        hostname=pod,
        state_secret=pod,
        tags=g.pod.tags,
        login_server=g.pod.login_url,
        services=hosted,
        device_ports=on_device,
        serve_config_path=f"{_SERVE_MOUNT}/serve-config.json",
        outbound_http_proxy=f"127.0.0.1:{options.connect_proxy_port}"
        if g.direction is Direction.EGRESS
        else "",
        # The kubelet probes the pod IP, so the health endpoint cannot stay on loopback.
        local_addr_port=f"0.0.0.0:{options.health_port}",
        config_dir=f"{_STATE_MOUNT}/{pod}",
        extra_env=dict(options.proxy_env),
    )


def envoy_bootstrap(options: Options, token: str | None = None) -> dict[str, Any]:
    """Envoy's bootstrap, shared by every replica of every group (but for ``token``, the
    group's xDS token when the server authenticates): xds's one builder pointed at tsgw's xDS
    Service; node id and cluster come from the command line (pod name, node cluster)."""
    host = f"[{options.xds_host}]" if ":" in options.xds_host else options.xds_host
    return bootstrap(
        None,
        None,
        f"{host}:{options.xds_port}",
        admin_port=options.envoy_admin_port,
        stats_port=options.envoy_stats_port,
        token=token,
    )


@functools.lru_cache(maxsize=8)
def _bootstrap_json(options: Options) -> tuple[str, str]:
    """The bootstrap depends only on the options (node identity comes from the command line):
    render it once, with its hash."""
    text = _json(envoy_bootstrap(options))
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


def _group_bootstrap(g: ProxyGroup, options: Options) -> tuple[str, str]:
    """The group's bootstrap and its hash: the shared one, or with the group's xDS token."""
    if not options.xds_auth_key:
        return _bootstrap_json(options)
    token = group_token(options.xds_auth_key, node_cluster(g.namespace, g.name))
    text = _json(envoy_bootstrap(options, token))
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


_WAIT_MS = 1500
"""How long one startup probe waits for the join (its timeoutSeconds is the next whole second)."""


def _restricted() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _resources(g: ProxyGroup) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if g.pod.requests:
        out["requests"] = dict(g.pod.requests)
    if g.pod.limits:
        out["limits"] = dict(g.pod.limits)
    return out


def _statefulset(g: ProxyGroup, options: Options, config_hash: str, cfg: ProxyConfig) -> dict[str, Any]:
    """The proxies' StatefulSet; `cfg` is the group's shared :func:`proxy_config`."""
    replicas = g.replica_names()
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    env.extend({"name": k, "value": v} for k, v in sorted(cfg.env().items()))
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "envoy-bootstrap", "configMap": {"name": f"{g.name}-envoy"}}
        if not options.xds_auth_key
        # It holds the group's xDS token: a Secret, which only this group's pods mount.
        else {"name": "envoy-bootstrap", "secret": {"secretName": f"{g.name}-envoy"}},
    ]
    ts_mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    for pod in replicas:
        volumes.append({"name": f"config-{pod}", "secret": {"secretName": f"{pod}-config"}})
        ts_mounts.append({"name": f"config-{pod}", "mountPath": f"{_STATE_MOUNT}/{pod}", "readOnly": True})
    if g.tailscale_service is not None:
        volumes.append({"name": "serve", "configMap": {"name": f"{g.name}-serve"}})
        ts_mounts.append({"name": "serve", "mountPath": _SERVE_MOUNT, "readOnly": True})
    tailscale: dict[str, Any] = {
        "name": "tailscale",
        "image": g.pod.tailscale_image,
        "env": env,
        "ports": [{"name": "health", "containerPort": options.health_port}],
        "securityContext": _restricted(),
        "volumeMounts": ts_mounts,
    }
    wait = cfg.wait_command(g.pod.tailscale_image, _WAIT_MS)
    if wait is None:
        # Every second (the API's floor), not the default 10: an egress replica takes Service
        # traffic only once both containers are Ready, and the first probe after the join
        # decides how soon that is (on average half a period after it).
        tailscale["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": options.health_port},
            "periodSeconds": 1,
        }
    else:
        # Ready within milliseconds of the join instead. Until it succeeds, a startup probe
        # long-polls tailscaled's state (`tailscale wait`: Running with an address); a kubelet
        # runs the readiness probe as soon as startup succeeds (a status sync triggers a
        # not-yet-Ready container's probe: pkg/kubelet/prober/prober_manager.go,
        # UpdatePodStatus), and readiness asks the same question, so it passes at once.
        # (containerboot's /healthz turns healthy only after it wrote the device's id and
        # addresses to the state Secret, tens of ms later: a readiness probe on it right after
        # the join failed and waited out its period, measured on the bed.) A slow join costs one
        # exec per ~1.5 s, and only until the join; a day of tries before a restart, so a tailnet
        # down when the pod starts leaves it unready rather than restarting it. Afterwards one
        # exec every 10 s (the API's default period) watches that tailscaled stays Running.
        probe: dict[str, Any] = {"exec": {"command": list(wait)}, "timeoutSeconds": _WAIT_MS // 1000 + 1}
        tailscale["startupProbe"] = {**probe, "periodSeconds": 1, "failureThreshold": 86400}
        tailscale["readinessProbe"] = {**probe, "periodSeconds": 10}
    exposed = [li.port for li in g.listeners if li.bind != "127.0.0.1"]
    envoy: dict[str, Any] = {
        "name": "envoy",
        "image": g.pod.envoy_image,
        "args": [
            "--config-path",
            f"{_ENVOY_MOUNT}/envoy.json",
            "--service-node",
            "$(POD_NAME)",
            "--service-cluster",
            node_cluster(g.namespace, g.name),
            # Pods share no IPC namespace guarantee: hot restart's shared memory region collides
            # between replicas on one node and with a root-owned leftover (verified.md §21).
            "--disable-hot-restart",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            *({"name": f"l-{port}", "containerPort": port} for port in exposed),
            # Envoy's /stats/prometheus alone (admin itself stays on loopback).
            {"name": "envoy-metrics", "containerPort": options.envoy_stats_port},
        ],
        "securityContext": _restricted(),
        "volumeMounts": [
            {"name": "envoy-bootstrap", "mountPath": _ENVOY_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if exposed:
        # Ready once Envoy listens (it has its configuration): a replica restarted while tsgw is
        # away must not get Service traffic. Ingress listeners are on loopback, where the
        # kubelet cannot probe; tailscaled's own health covers those.
        envoy["readinessProbe"] = {
            "tcpSocket": {"port": exposed[0]},
            "periodSeconds": 1,
        }
    res = _resources(g)
    if res:
        tailscale["resources"] = res
        envoy["resources"] = res
    pod_spec: dict[str, Any] = {
        "serviceAccountName": g.name,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [tailscale, envoy],
        "volumes": volumes,
    }
    if g.pod.node_selector:
        pod_spec["nodeSelector"] = dict(g.pod.node_selector)
    if g.pod.tolerations:
        pod_spec["tolerations"] = list(g.pod.tolerations)
    if g.pod.affinity is not None:
        pod_spec["affinity"] = g.pod.affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(g, g.name),
        "spec": {
            "replicas": g.pod.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": _selector(g)},
            "template": {
                "metadata": {
                    "labels": _labels(g),
                    # Envoy reads its bootstrap once: a new bootstrap rolls the pods.
                    "annotations": {"gateway.tailscale.com/config-hash": config_hash},
                },
                "spec": pod_spec,
            },
        },
    }


def owned_objects(
    g: ProxyGroup, options: Options, auth_keys: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every object tsgw applies for one proxy group, in a stable order (kind, then name)."""
    keys = auth_keys or {}
    replicas = g.replica_names()
    shared = proxy_config(g, options)
    md = _shared_meta(g)
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(g, g.name, md)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(g, g.name, md),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": list(replicas),
                    "verbs": ["get", "update", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(g, g.name, md),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": g.name},
            "subjects": [{"kind": "ServiceAccount", "name": g.name, "namespace": g.namespace}],
        },
    ]
    for pod in replicas:
        # The state Secret exists before the pod so the Role can name it; containerboot fills it.
        # Its finalizer lets the auth-key controller delete the replica's device (by the
        # device_id in it) before the Secret goes: on scale-down, owner deletion or uninstall.
        state_md = _meta(g, pod, md)
        state_md["finalizers"] = [DEVICE_FINALIZER]
        objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": state_md, "type": "Opaque"})
        replica = proxy_config(g, options, pod)
        files = replica.config_files(keys.get(pod) or "")
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(g, f"{pod}-config", md),
                "type": "Opaque",
                "stringData": files,
            }
        )
    bootstrap, config_hash = _group_bootstrap(g, options)
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(g, f"{g.name}-envoy", md),
            "data": {"envoy.json": bootstrap},
        }
        if not options.xds_auth_key
        else {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(g, f"{g.name}-envoy", md),
            "type": "Opaque",
            "stringData": {"envoy.json": bootstrap},
        }
    )
    if g.tailscale_service is not None:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(g, f"{g.name}-serve", md),
                "data": {"serve-config.json": shared.serve_config_json()},
            }
        )
    if g.direction is Direction.EGRESS:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(g, egress_service_name(g.owner.name), md),
                "spec": {
                    "type": "ClusterIP",
                    "selector": _selector(g),
                    "ports": [
                        {"name": p.name, "port": p.port, "targetPort": p.target_port, "protocol": "TCP"}
                        for p in g.service_ports
                    ],
                },
            }
        )
    objs.append(_statefulset(g, options, config_hash, shared))
    order = {
        "ServiceAccount": 0,
        "Role": 1,
        "RoleBinding": 2,
        "Secret": 3,
        "ConfigMap": 4,
        "Service": 5,
        "StatefulSet": 6,
    }
    objs.sort(key=lambda o: (order[o["kind"]], o["metadata"]["name"]))
    return objs
