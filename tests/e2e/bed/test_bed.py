"""The test bed itself: real controllers, kube-proxy and CoreDNS acting on pods that really run."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path

import pytest

from tests.bed import BACKEND_IMAGE, SHELL_IMAGE, Bed, BedOptions
from tests.bed._topology import netns_list
from tests.e2e.bed.helpers import assert_bed_gone, events, pod_phase, pods, ready, wait
from tests.support.echo import EchoServer

pytestmark = pytest.mark.e2e


def backend_deployment(name: str, replicas: int = 3, version: str = "1") -> str:
    return textwrap.dedent(
        f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {replicas}
          strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
              containers:
              - name: backend
                image: {BACKEND_IMAGE}
                env:
                - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
                - {{name: VERSION, value: "{version}"}}
                ports: [{{containerPort: 8080, name: http}}]
                readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}
                livenessProbe: {{grpc: {{port: 50051}}, initialDelaySeconds: 2, periodSeconds: 2}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}}}
        spec:
          selector: {{app: {name}}}
          ports: [{{name: http, port: 80, targetPort: http}}]
        """
    )


def available(bed: Bed, name: str, replicas: int) -> bool:
    st = bed.get("deployment", name)["status"]
    return bool(
        st.get("availableReplicas") == replicas
        and st.get("updatedReplicas") == replicas
        and st.get("replicas") == replicas
    )


def run_pod(bed: Bed, name: str, script: str | list[str], **spec: object) -> str:
    """Run a one-shot pod (a shell script, or a command) to completion; returns its log."""
    command = ["sh", "-c", script] if isinstance(script, str) else script
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": SHELL_IMAGE, "command": command}],
            **spec,
        },
    }
    bed.apply([pod])
    phase = wait(
        lambda: pod_phase(bed, name) in ("Succeeded", "Failed") and pod_phase(bed, name),
        timeout=90,
        what=f"pod {name} finished",
    )
    log = bed.pod_log("default", name)
    assert phase == "Succeeded", f"{name} {phase}; log:\n{log}"
    return log


def test_deployment_of_three_backends_becomes_available(bed: Bed) -> None:
    bed.apply(backend_deployment("web"))
    wait(lambda: available(bed, "web", 3), timeout=90, what="web available")
    items = pods(bed, "app=web")
    assert len(items) == 3
    assert all(ready(p) for p in items)
    # Spread by the real scheduler over both nodes' pod CIDRs; each IP in its node's range.
    for p in items:
        node = p["spec"]["nodeName"]
        k = int(node.rsplit("node", 1)[1])
        assert p["status"]["podIP"].startswith(bed.plan.pod_cidr(k).rsplit(".", 1)[0] + ".")
        assert p["status"]["hostIP"] == bed.plan.node_ip(k)
    # The EndpointSlice controller sees them Ready. It follows the pods' status through its own
    # informer and batches its writes (kube-controller-manager's endpointslice sync), so a
    # Deployment can be Available a moment before the slice lists its last pod: wait for it.
    want = {p["status"]["podIP"] for p in items}

    def slices_list_every_pod() -> bool:
        slices = bed.get("endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
        seen = {
            a
            for s in slices
            for e in s.get("endpoints") or []
            if e["conditions"].get("ready")
            for a in e["addresses"]
        }
        assert seen == want, f"ready in the slices: {sorted(seen)}"  # wait() reports the last one
        return True

    wait(slices_list_every_pod, timeout=30, what=f"EndpointSlices listing {sorted(want)} ready")


def test_pod_reaches_deployment_by_service_name_through_kube_proxy(bed: Bed) -> None:
    bed.apply(backend_deployment("web"))
    wait(lambda: available(bed, "web", 3), timeout=90, what="web available")
    names = {p["metadata"]["name"] for p in pods(bed, "app=web")}
    log = run_pod(
        bed,
        "client",
        "for i in $(seq 1 12); do curl -sf --max-time 2 http://web/ && curl -sf --max-time 2 "
        "http://web.default.svc.cluster.local/ && exit 0; sleep 1; done; exit 1",
        securityContext={"runAsUser": 2000},
    )
    answered = {line.strip() for line in log.splitlines() if line.strip() in names}
    assert answered, f"no backend answered by Service name; log:\n{log}"


def test_statefulset_pods_get_stable_names(bed: Bed) -> None:
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: Service
            metadata: {{name: db}}
            spec: {{clusterIP: None, selector: {{app: db}}, ports: [{{port: 8080}}]}}
            ---
            apiVersion: apps/v1
            kind: StatefulSet
            metadata: {{name: db}}
            spec:
              serviceName: db
              replicas: 2
              selector: {{matchLabels: {{app: db}}}}
              template:
                metadata: {{labels: {{app: db}}}}
                spec:
                  containers:
                  - name: backend
                    image: {BACKEND_IMAGE}
                    readinessProbe: {{tcpSocket: {{port: 9000}}, periodSeconds: 1}}
            """
        )
    )
    wait(
        lambda: bed.get("statefulset", "db")["status"].get("readyReplicas") == 2, timeout=90, what="db ready"
    )
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(bed, "app=db")}
    assert set(before) == {"db-0", "db-1"}
    bed.kubectl("delete", "pod", "db-0", "--wait=true")

    def back() -> bool:
        p = bed.get("pod", "db-0")
        return p["metadata"]["uid"] != before["db-0"] and ready(p)

    wait(back, timeout=90, what="db-0 recreated")
    # The pod answers with its stable name, and its hosts file knows its stable DNS name.
    # The name follows the new pod's IP once the EndpointSlice controller and CoreDNS have seen
    # it, a moment after the pod is Ready: retry inside the probe, with a bound.
    log = run_pod(
        bed,
        "db-probe",
        "for i in $(seq 1 15); do curl -sf --max-time 3 http://db-0.db.default.svc.cluster.local:8080/ "
        "&& exit 0; sleep 1; done; exit 1",
    )
    assert "db-0" in log


def test_failing_liveness_probe_restarts_the_container(bed: Bed) -> None:
    bed.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "flaky"},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": SHELL_IMAGE,
                            "command": ["sh", "-c", "touch /tmp/alive; sleep 3; rm /tmp/alive; sleep 600"],
                            "livenessProbe": {
                                "exec": {"command": ["test", "-f", "/tmp/alive"]},
                                "periodSeconds": 1,
                                "failureThreshold": 2,
                            },
                        }
                    ]
                },
            }
        ]
    )

    def restarted() -> dict[str, object] | None:
        cs = bed.get("pod", "flaky")["status"]["containerStatuses"][0]
        return cs if cs["restartCount"] >= 1 and "terminated" in cs.get("lastState", {}) else None

    cs = wait(restarted, timeout=60, what="flaky restarted")
    assert cs["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM from the kubelet
    reasons = {e["reason"] for e in events(bed, "flaky")}
    assert {"Unhealthy", "Killing"} <= reasons
    bed.kubectl("delete", "pod", "flaky", "--grace-period=1", "--wait=true")


def test_rolling_update_replaces_every_pod(bed: Bed) -> None:
    bed.apply(backend_deployment("roll", replicas=2))
    wait(lambda: available(bed, "roll", 2), timeout=90, what="roll available")
    old = {p["metadata"]["name"] for p in pods(bed, "app=roll")}
    bed.apply(backend_deployment("roll", replicas=2, version="2"))

    def rolled() -> bool:
        items = pods(bed, "app=roll")
        names = {p["metadata"]["name"] for p in items}
        return available(bed, "roll", 2) and len(items) == 2 and not (names & old)

    wait(rolled, timeout=120, what="roll updated")
    for p in pods(bed, "app=roll"):
        env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
        assert env["VERSION"] == "2"
        assert ready(p)


def test_pod_reads_the_api_with_in_cluster_config_and_its_projected_token(bed: Bed) -> None:
    bed.apply(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: ServiceAccount
            metadata: {name: reader}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: greeting}
            data: {text: hello-from-the-api}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: Role
            metadata: {name: reader}
            rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: RoleBinding
            metadata: {name: reader}
            roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
            subjects: [{kind: ServiceAccount, name: reader, namespace: default}]
            """
        )
    )
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        "import json, os, ssl, urllib.request\n"
        f"sa = '{sa}'\n"
        "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "ns = open(sa + '/namespace').read()\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "for server in (f'https://{host}:{port}', 'https://kubernetes.default.svc'):\n"
        "    req = urllib.request.Request(server + f'/api/v1/namespaces/{ns}/configmaps/greeting')\n"
        "    req.add_header('Authorization', 'Bearer ' + open(sa + '/token').read())\n"
        "    print(server, json.load(urllib.request.urlopen(req, context=ctx))['data']['text'])\n"
        "print('uid', os.getuid())\n"
    )
    log = run_pod(
        bed,
        "in-cluster",
        ["python3", "-c", script],
        serviceAccountName="reader",
        securityContext={"runAsUser": 1234, "runAsGroup": 1234},
    )
    assert "https://10.96.0.1:443 hello-from-the-api" in log
    assert "https://kubernetes.default.svc hello-from-the-api" in log
    assert "uid 1234" in log
    # The token was issued by the TokenRequest API for this pod: bound to it, for its SA.
    pod = bed.get("pod", "in-cluster")
    vols = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access")]
    assert vols
    assert any("serviceAccountToken" in s for s in vols[0]["projected"]["sources"])


def test_pods_the_kubelet_cannot_run_get_a_kubelets_status_and_an_event(bed: Bed) -> None:
    bed.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad-image"},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/nope:1"}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad-secret"},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": SHELL_IMAGE,
                            "env": [
                                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}
                            ],
                        }
                    ]
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad-command"},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": SHELL_IMAGE, "command": ["/no/such/program"]}],
                },
            },
        ]
    )

    def waiting_reason(name: str) -> str:
        cs = bed.get("pod", name)["status"].get("containerStatuses") or [{}]
        return str(cs[0].get("state", {}).get("waiting", {}).get("reason", ""))

    wait(
        lambda: waiting_reason("bad-image") in ("ErrImagePull", "ImagePullBackOff"), what="bad-image waiting"
    )
    assert pod_phase(bed, "bad-image") == "Pending"
    wait(lambda: waiting_reason("bad-secret") == "CreateContainerConfigError", what="bad-secret waiting")
    waiting = bed.get("pod", "bad-secret")["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"] == 'secret "missing" not found'
    assert pod_phase(bed, "bad-secret") == "Pending"
    wait(lambda: pod_phase(bed, "bad-command") == "Failed", what="bad-command failed")
    term = bed.get("pod", "bad-command")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError"
    assert term["exitCode"] == 128
    # The kubelet posts a StartError's Event beside (not before) the status write waited on above.
    for name in ("bad-image", "bad-secret", "bad-command"):
        wait(
            lambda name=name: any(e["type"] == "Warning" for e in events(bed, name)),
            timeout=30,
            what=f"a Warning Event for {name}",
        )
    # The kubelets are still fine: their nodes stay Ready and a new pod still runs.
    assert all(kl.alive() for kl in bed.kubelets)
    assert "ok" in run_pod(bed, "after-bad", "echo ok")
    bed.kubectl("delete", "pod", "bad-image", "bad-secret", "bad-command", "--grace-period=1")


def test_containerboot_pod_joins_the_tailnet_and_a_device_reaches_it(bed: Bed) -> None:
    assert bed.tailnet is not None
    key = bed.tailnet.preauth_key_for()
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: ServiceAccount
            metadata: {{name: proxy}}
            ---
            apiVersion: v1
            kind: Secret
            metadata: {{name: proxy-0}}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: Role
            metadata: {{name: proxy}}
            rules:
            - {{apiGroups: [""], resources: [secrets], resourceNames: [proxy-0], verbs: [get, update, patch]}}
            - {{apiGroups: [""], resources: [events], verbs: [create, patch, get]}}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: RoleBinding
            metadata: {{name: proxy}}
            roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: proxy}}
            subjects: [{{kind: ServiceAccount, name: proxy, namespace: default}}]
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: proxy-0}}
            spec:
              serviceAccountName: proxy
              securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
              containers:
              - name: tailscale
                image: ghcr.io/tailscale/tailscale:v1.102.3
                env:
                - {{name: TS_USERSPACE, value: "true"}}
                - {{name: TS_AUTHKEY, value: "{key}"}}
                - {{name: TS_KUBE_SECRET, value: proxy-0}}
                - {{name: TS_HOSTNAME, value: proxy-0}}
                - {{name: TS_EXTRA_ARGS, value: "--login-server={bed.tailnet.url}"}}
                - {{name: TS_AUTH_ONCE, value: "true"}}
                - {{name: TS_STATE_DIR, value: /tmp/ts}}
                - {{name: TS_SOCKET, value: /tmp/ts/tailscaled.sock}}
                - {{name: TS_DEBUG_USE_DERP_HTTP, value: "1"}}
                - {{name: TS_NO_LOGS_NO_SUPPORT, value: "1"}}
                - {{name: TS_DISABLE_PORTMAPPER, value: "1"}}
              - name: backend
                image: {BACKEND_IMAGE}
                env: [{{name: POD_NAME, value: proxy-0}}]
            """
        )
    )

    def device_ips() -> list[str]:
        data = bed.get("secret", "proxy-0").get("data") or {}
        if "device_ips" not in data:
            return []
        return json.loads(base64.b64decode(data["device_ips"]))  # type: ignore[no-any-return]

    ips = wait(device_ips, timeout=90, what="device_ips in Secret proxy-0")
    ip4 = next(ip for ip in ips if "." in ip)
    data = bed.get("secret", "proxy-0")["data"]
    assert "authkey" not in data  # containerboot removed the one-time key
    assert base64.b64decode(data["device_fqdn"]).decode().startswith("proxy-0.")
    # A tailnet device in the tailnet namespace reaches the pod's backend over the tailnet.
    device = bed.tailnet.device("laptop", key)
    out = wait(lambda: device.dial(ip4, 9000), timeout=60, what="device reaches proxy-0 over the tailnet")
    assert out == b"proxy-0\n"
    http = device.dial(ip4, 8080, b"GET / HTTP/1.0\r\n\r\n")
    assert b"X-Pod-Name: proxy-0" in http


def test_a_second_bed_runs_beside_and_leaves_nothing_behind(bed: Bed, tmp_path: Path) -> None:
    other = Bed(tmp_path / "bed2", BedOptions(nodes=1, dns=False))
    try:
        other.start()
        assert other.index != bed.index
        assert other.plan.cluster_cidr != bed.plan.cluster_cidr
        other.apply(backend_deployment("solo", replicas=2))
        wait(lambda: available(other, "solo", 2), timeout=90, what="solo available")
        # Sandboxes, container processes and their mounts exist while it runs...
        assert any(n.startswith(f"{other.plan.prefix}-n0p") for n in netns_list())
    finally:
        swept = other.stop()
    # ...and the kubelet removed its pods' namespaces itself; nothing is left at all.
    assert not [n for n in swept if n.startswith(f"{other.plan.prefix}-n0p")]
    assert_bed_gone(other)
    # The first bed did not notice.
    assert all(kl.alive() for kl in bed.kubelets)


def test_init_containers_volumes_env_and_identity_reach_the_container(bed: Bed) -> None:
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: ConfigMap
            metadata: {{name: app-config}}
            data: {{app.conf: alpha, GREETING: hello}}
            ---
            apiVersion: v1
            kind: Secret
            metadata: {{name: app-secret}}
            stringData: {{password: s3cret}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: features, labels: {{tier: web}}}}
            spec:
              restartPolicy: Never
              securityContext: {{runAsUser: 1500, runAsGroup: 1500, fsGroup: 2500}}
              initContainers:
              - name: first
                image: {SHELL_IMAGE}
                command: [sh, -c, 'echo one > /var/shared/order']
                volumeMounts: [{{name: shared, mountPath: /var/shared}}]
              - name: second
                image: {SHELL_IMAGE}
                command: [sh, -c, 'echo two >> /var/shared/order']
                volumeMounts: [{{name: shared, mountPath: /var/shared}}]
              containers:
              - name: main
                image: {SHELL_IMAGE}
                workingDir: /etc/app
                command:
                - sh
                - -c
                - >-
                  echo "id=$(id -u):$(id -g)"; echo "groups=$(id -G)"; echo "cwd=$(pwd)";
                  echo "order=$(cat /var/shared/order | tr '\\n' ,)"; echo "conf=$(cat app.conf)";
                  echo "labels=$(cat /etc/podinfo/labels)"; echo "secret=$(cat /etc/secret/password)";
                  echo "mode=$(stat -c %a:%g /etc/secret/password)"; echo "env=$GREETING/$PASSWORD/$ME";
                  echo "hostname=$(hostname -f 2>/dev/null || cat /etc/hostname)"
                envFrom: [{{configMapRef: {{name: app-config}}}}]
                env:
                - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: app-secret, key: password}}}}}}
                - {{name: ME, value: "$(GREETING)-from-$(HOSTNAME)"}}
                volumeMounts:
                - {{name: shared, mountPath: /var/shared}}
                - {{name: config, mountPath: /etc/app}}
                - {{name: info, mountPath: /etc/podinfo}}
                - {{name: secret, mountPath: /etc/secret, readOnly: true}}
              volumes:
              - {{name: shared, emptyDir: {{}}}}
              - {{name: config, configMap: {{name: app-config}}}}
              - {{name: secret, secret: {{secretName: app-secret, defaultMode: 0440}}}}
              - name: info
                downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}
            """
        )
    )
    wait(lambda: pod_phase(bed, "features") in ("Succeeded", "Failed"), timeout=60, what="features finished")
    log = bed.pod_log("default", "features", "main")
    assert pod_phase(bed, "features") == "Succeeded", log
    lines = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    assert lines["id"] == "1500:1500"
    assert "2500" in lines["groups"].split()
    assert lines["cwd"] == "/etc/app"
    assert lines["order"] == "one,two,"
    assert lines["conf"] == "alpha"
    assert lines["labels"] == 'tier="web"'
    assert lines["secret"] == "s3cret"
    assert lines["mode"] == "440:2500"
    assert lines["env"] == "hello/s3cret/hello-from-features"
    init = bed.get("pod", "features")["status"]["initContainerStatuses"]
    assert [c["state"]["terminated"]["reason"] for c in init] == ["Completed", "Completed"]
    # Nothing of it touched the host's files.
    assert not Path("/var/shared").exists()
    assert not Path("/etc/app").exists()


def test_failed_init_container_fails_a_never_pod_and_is_retried_under_on_failure(bed: Bed) -> None:
    bed.apply(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: Pod
            metadata: {{name: init-never}}
            spec:
              restartPolicy: Never
              initContainers:
              - {{name: setup, image: {SHELL_IMAGE}, command: [sh, -c, 'echo setting up; exit 3']}}
              containers:
              - {{name: main, image: {SHELL_IMAGE}, command: [sh, -c, 'echo main ran']}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {{name: init-onfailure}}
            spec:
              restartPolicy: OnFailure
              initContainers:
              - name: setup
                image: {SHELL_IMAGE}
                command: [sh, -c, 'test -e /work/tried && exit 0; touch /work/tried; exit 4']
                volumeMounts: [{{name: work, mountPath: /work}}]
              containers:
              - {{name: main, image: {SHELL_IMAGE}, command: [sh, -c, 'echo main ran']}}
              volumes: [{{name: work, emptyDir: {{}}}}]
            """
        )
    )
    # restartPolicy Never: the failed init container fails the pod; the app container never runs.
    wait(lambda: pod_phase(bed, "init-never") == "Failed", timeout=60, what="init-never Failed")
    st = bed.get("pod", "init-never")["status"]
    init = st["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 3
    assert init["state"]["terminated"]["reason"] == "Error"
    assert init["restartCount"] == 0
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    initialized = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False"
    assert "setting up" in bed.pod_log("default", "init-never", "setup")
    assert bed.pod_log("default", "init-never", "main") == ""
    assert "Init:Error" in bed.kubectl("get", "pod", "init-never", "--no-headers")
    # restartPolicy OnFailure: the init container is run again until it succeeds, then the app.
    wait(lambda: pod_phase(bed, "init-onfailure") == "Succeeded", timeout=60, what="init-onfailure done")
    st = bed.get("pod", "init-onfailure")["status"]
    init = st["initContainerStatuses"][0]
    assert init["restartCount"] == 1
    assert init["lastState"]["terminated"]["exitCode"] == 4
    assert init["state"]["terminated"]["reason"] == "Completed"
    assert "main ran" in bed.pod_log("default", "init-onfailure", "main")
    # The failed pod stays failed: its init container was not restarted meanwhile.
    assert bed.get("pod", "init-never")["status"]["initContainerStatuses"][0]["restartCount"] == 0
    bed.kubectl("delete", "pod", "init-never", "init-onfailure", "--grace-period=1")


def test_a_pods_containers_share_a_dev_shm_of_their_own(bed: Bed) -> None:
    # POSIX shared memory (shm_open) lives in /dev/shm: a pod's containers share one, as they
    # share an IPC namespace in Kubernetes, and no other pod or the host sees it. Two Envoys of
    # one --base-id (Envoy Gateway's Envoys, every tsgw proxy) otherwise collide on the host's.
    name = "bed-shm-probe"
    log = run_pod(
        bed,
        "shm-a",
        f"cat /dev/shm/{name}",
        securityContext={"runAsUser": 1000, "runAsGroup": 1000},
        initContainers=[
            {
                "name": "writer",
                "image": SHELL_IMAGE,
                "command": ["sh", "-c", f"echo shared > /dev/shm/{name}"],
            }
        ],
    )
    assert log.strip() == "shared"
    assert not Path(f"/dev/shm/{name}").exists()
    assert run_pod(bed, "shm-b", f"test ! -e /dev/shm/{name} && echo alone").strip() == "alone"
    bed.kubectl("delete", "pod", "shm-a", "shm-b", "--grace-period=1")


def test_a_non_root_container_reopens_its_own_stdout(bed: Bed) -> None:
    # Envoy's access log writes to the path /dev/stdout (a fresh open of fd 1): the container's
    # user must own its output, as runc makes it own its stdio. The bed's stdout is the log file,
    # not a pipe: a reopen must append (Envoy's does), or it writes over the log.
    log = run_pod(
        bed,
        "stdout-reopen",
        "echo reopened >> /dev/stdout; echo reopened-err >> /dev/stderr",
        securityContext={"runAsUser": 1000, "runAsGroup": 1000},
    )
    assert log.split() == ["reopened", "reopened-err"], log
    bed.kubectl("delete", "pod", "stdout-reopen", "--grace-period=1")


def test_tailnet_devices_are_independent_and_their_servers_answer_with_their_names(bed: Bed) -> None:
    assert bed.tailnet is not None
    key = bed.tailnet.preauth_key_for()
    alpha = bed.tailnet.device("alpha", key)
    beta = bed.tailnet.device("beta", key)
    assert alpha.ns is not None
    assert beta.ns is not None
    assert alpha.ns.name != beta.ns.name
    ip_a, ip_b = alpha.ip4(), beta.ip4()
    # Each device's test server answers, over the tailnet, with that device's name.
    assert wait(lambda: beta.dial(ip_a, 9000), timeout=60, what="beta reaches alpha") == b"alpha\n"
    assert wait(lambda: alpha.dial(ip_b, 9000), timeout=60, what="alpha reaches beta") == b"beta\n"
    assert b"X-Pod-Name: beta" in alpha.dial(ip_b, 8080, b"GET / HTTP/1.0\r\n\r\n")
    # Independent: a server only alpha runs answers through alpha's tailnet address, not beta's.
    with alpha.ns.entered():
        only_alpha = EchoServer("127.0.0.1")
    try:
        assert beta.exchange(ip_a, only_alpha.port, b"ping") == b"ping"
        assert alpha.exchange(ip_b, only_alpha.port, b"ping") == b""
    finally:
        only_alpha.close()
    # A pod on the bed reaches each device's server through its node.
    script = (
        "import socket,sys\n"
        "for a in sys.argv[1:]:\n"
        "    with socket.create_connection((a, 9000), timeout=5) as s: print(s.recv(64).decode().strip())\n"
    )
    log = run_pod(bed, "to-devices", ["python3", "-c", script, alpha.address, beta.address])
    assert log.split() == ["alpha", "beta"]
    # A pod on the tailnet (containerboot with its SOCKS5 server) reaches a device over the tailnet.
    bed.apply(tailnet_client_pod("ts-client", key, bed.tailnet.url, ip_b))
    got = wait(
        lambda: (
            "got " in bed.pod_log("default", "ts-client", "client")
            and bed.pod_log("default", "ts-client", "client")
        ),
        timeout=90,
        what="ts-client reaches beta over the tailnet",
    )
    assert "got beta" in got
    bed.kubectl("delete", "pod", "ts-client", "to-devices", "--grace-period=1")


SOCKS_CLIENT = """
import socket, struct, sys, time
deadline = time.monotonic() + 80
while True:
    try:
        with socket.create_connection(("127.0.0.1", 1055), timeout=5) as s:
            s.sendall(b"\\x05\\x01\\x00")
            assert s.recv(2) == b"\\x05\\x00"
            s.sendall(b"\\x05\\x01\\x00\\x01" + socket.inet_aton(sys.argv[1]) + struct.pack(">H", 9000))
            reply = b""
            while len(reply) < 10:
                chunk = s.recv(10 - len(reply))
                if not chunk:
                    raise OSError("closed")
                reply += chunk
            assert reply[1] == 0, reply
            print("got", s.recv(64).decode().strip(), flush=True)
            break
    except (OSError, AssertionError) as e:
        print("retry:", e, flush=True)
        if time.monotonic() > deadline:
            raise
        time.sleep(1)
"""


def tailnet_client_pod(name: str, key: str, login_server: str, target: str) -> str:
    """A pod whose containerboot joins the tailnet with a SOCKS5 server, and a container that
    dials ``target``:9000 over the tailnet through it."""
    script = json.dumps(SOCKS_CLIENT)
    return textwrap.dedent(
        f"""
        apiVersion: v1
        kind: ServiceAccount
        metadata: {{name: {name}}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: {name}}}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {{name: {name}}}
        rules:
        - {{apiGroups: [""], resources: [secrets], resourceNames: [{name}], verbs: [get, update, patch]}}
        - {{apiGroups: [""], resources: [events], verbs: [create, patch, get]}}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {{name: {name}}}
        roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
        subjects: [{{kind: ServiceAccount, name: {name}, namespace: default}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          serviceAccountName: {name}
          restartPolicy: OnFailure
          securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
          containers:
          - name: tailscale
            image: ghcr.io/tailscale/tailscale:v1.102.3
            env:
            - {{name: TS_USERSPACE, value: "true"}}
            - {{name: TS_AUTHKEY, value: "{key}"}}
            - {{name: TS_KUBE_SECRET, value: {name}}}
            - {{name: TS_HOSTNAME, value: {name}}}
            - {{name: TS_EXTRA_ARGS, value: "--login-server={login_server}"}}
            - {{name: TS_SOCKS5_SERVER, value: "127.0.0.1:1055"}}
            - {{name: TS_STATE_DIR, value: /tmp/ts}}
            - {{name: TS_SOCKET, value: /tmp/ts/tailscaled.sock}}
            - {{name: TS_DEBUG_USE_DERP_HTTP, value: "1"}}
            - {{name: TS_NO_LOGS_NO_SUPPORT, value: "1"}}
            - {{name: TS_DISABLE_PORTMAPPER, value: "1"}}
          - name: client
            image: {SHELL_IMAGE}
            command: [python3, -c, {script}, "{target}"]
        """
    )
