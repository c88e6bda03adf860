"""Two tailnets in one cluster (issue 16): one operator, installed with `kubectl apply -k` of an
overlay that holds two TailscaleTailnets — ``headscale`` (the bed's Headscale, an API key) and
``box`` (the tailnet in a box behind the hosted-API fake, an OAuth client) — each with its own
credentials Secret, as docs/multicluster.md shows.

- Side by side: a TailscaleEndpoints on ``headscale`` carries a pod's request to a Headscale
  device, and a TailscaleServices on ``box`` serves ``svc:web`` to a box device; each tailnet's
  facts list only its own devices, its proxies joined only it, and the API metrics are labelled
  by tailnet.
- Failure stays in its tailnet: with ``headscale``'s API key replaced by a wrong one, that
  tailnet is ``Ready=False AuthFailed`` and a new proxy group on it is held
  (``AuthKeysReady=False TailnetNotReady``), while ``box`` stays Ready, its facts keep up with a
  device that joins now, and both tailnets' running proxies keep carrying traffic. The right key
  back, the held group gets its key.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed import Bed
from tests.e2e.bed.helpers import BED_PATCH, box_in_bed, get_headers, pods, ready, uninstall, wait
from tests.e2e.bed.test_bed import run_pod
from tests.support.boxed_fake import BoxedTailnet
from tests.support.install import OPERATOR_SELECTOR as OPERATOR
from tests.support.install import copy_install, install_on_bed
from tests.support.tailnet_services import auth_key
from tsgw.tailscale import NotFoundError, TailscaleService

pytestmark = pytest.mark.e2e

NS = "tsgw-system"
APPS = "default"
SVC = "svc:web"
BOX_TAGS = ("tag:k8s", "tag:client")

OVERLAY = (
    """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../headscale
  - box-tailnet.yaml
secretGenerator:
  - name: box-oauth
    namespace: tsgw-system
    type: Opaque
    files: [client_id, client_secret]
generatorOptions:
  disableNameSuffixHash: true
patches:
  - path: headscale-url.yaml
"""
    + BED_PATCH
)


@pytest.fixture(scope="module")
def box(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxedTailnet]:
    with box_in_bed(bed, tmp_path_factory.mktemp("box"), BOX_TAGS) as tn:
        yield tn


@pytest.fixture(scope="module")
def installed(bed: Bed, box: BoxedTailnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert bed.tailnet is not None
    tree = copy_install(tmp_path_factory.mktemp("two-tailnets-install"))
    (tree / "overlays" / "headscale" / "api_key").write_text(bed.tailnet.api_key())
    overlay = tree / "overlays" / "bed-two-tailnets"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(OVERLAY)
    (overlay / "client_id").write_text(box.oauth_client_id)
    (overlay / "client_secret").write_text(box.oauth_client_secret)
    (overlay / "headscale-url.yaml").write_text(
        "apiVersion: gateway.tailscale.com/v1alpha1\n"
        "kind: TailscaleTailnet\n"
        "metadata: {name: headscale}\n"
        f"spec: {{controlPlane: {{type: Headscale, apiURL: '{bed.tailnet.url}'}}}}\n"
    )
    (overlay / "box-tailnet.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: gateway.tailscale.com/v1alpha1
            kind: TailscaleTailnet
            metadata: {{name: box}}
            spec:
              controlPlane: {{type: Tailscale, apiURL: '{box.api_url_inside}', loginURL: '{box.box.url}'}}
              tailnet: "-"
              credentials:
                secretRef: {{namespace: tsgw-system, name: box-oauth}}
                oauth: {{clientIDKey: client_id, clientSecretKey: client_secret}}
              tags: [tag:k8s]
            """
        )
    )
    box.set_policy(services={SVC: ["tag:k8s"]})
    install_on_bed(bed, tree, overlay)
    yield overlay
    uninstall(bed, overlay, ("tailscaleendpoints", "tailscaleservices"))


def _tailnet_ready(bed: Bed, name: str) -> dict[str, str]:
    status = bed.get("tailscaletailnet", name).get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}.get("Ready") or {}


def _facts(bed: Bed, tailnet: str) -> str:
    data = bed.get("configmap", "-n", NS, f"tsgw-tailnet-{tailnet}").get("data") or {}
    return str(data.get("facts.json", ""))


def _endpoints(name: str, address: str) -> str:
    return textwrap.dedent(
        f"""
        apiVersion: gateway.tailscale.com/v1alpha1
        kind: TailscaleEndpoints
        metadata: {{name: {name}, namespace: {APPS}}}
        spec:
          tailnetRef: {{name: headscale}}
          proxy: {{replicas: 1}}
          targets:
            - name: device
              address: "{address}"
              ports: [{{port: 8080, protocol: HTTP}}]
        """
    )


def _service(box: BoxedTailnet) -> TailscaleService | None:
    try:
        return box.call(box.ts.get_service, SVC)
    except NotFoundError:
        return None


def _metric_tailnets(bed: Bed) -> set[str]:
    """The ``tailnet`` labels of ``tsgw_tailscale_api_requests_total`` across the operator's
    replicas (only the leader polls), scraped from the node as Prometheus would."""
    seen: set[str] = set()
    for p in pods(bed, OPERATOR, NS):
        ip = p.get("status", {}).get("podIP")
        if not ip:
            continue
        try:
            text = bed.node0.run(["curl", "-s", "--max-time", "5", f"http://{ip}:8080/metrics"]).stdout
        except subprocess.CalledProcessError:
            continue
        for line in text.splitlines():
            if line.startswith("tsgw_tailscale_api_requests_total{"):
                labels = line.split("{", 1)[1].split("}", 1)[0]
                for pair in labels.split(","):
                    key, _, value = pair.partition("=")
                    if key == "tailnet":
                        seen.add(value.strip('"'))
    return seen


def _egress_answer(bed: Bed, name: str, service: str) -> str:
    log = run_pod(
        bed,
        name,
        "for i in $(seq 1 30); do "
        f"  curl -sf --max-time 3 http://{service}.{APPS}.svc:8080/ && break; sleep 1; "
        "done; echo",
    )
    return log.strip().splitlines()[0] if log.strip() else ""


def test_two_tailnets_serve_side_by_side_each_with_its_own_facts_devices_and_metrics(
    bed: Bed, box: BoxedTailnet, installed: Path
) -> None:
    assert bed.tailnet is not None
    for name in ("headscale", "box"):
        wait(
            lambda name=name: _tailnet_ready(bed, name).get("status") == "True",
            timeout=120,
            what=f"TailscaleTailnet {name} Ready",
        )
    hs_device = bed.tailnet.device("hs-device", bed.tailnet.preauth_key_for())
    box_client = box.box.join("box-client", auth_key(box, ("tag:client",)), socks5=True)
    bed.apply(_endpoints("hs-echo", hs_device.ip4()))
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
              tailnetRef: {{name: box}}
              proxy: {{replicas: 1}}
              ports: [{{port: 80, protocol: HTTP, targetPort: http}}]
              backends: [{{service: web}}]
              tags: [tag:k8s]
            """
        )
    )
    # Headscale: a pod → tsgw's Service → the egress proxy (on Headscale) → the device.
    assert _egress_answer(bed, "hs-client", "hs-echo") == "hs-device"
    # The box: a box device → svc:web → the ingress proxy (on the box) → the backend pod.
    svc = wait(lambda: _service(box), timeout=60, what=f"{SVC} created on the box")
    vip = next(a for a in svc.addrs if "." in a)
    _, lines = wait(
        lambda: r if " 200 " in (r := get_headers(box_client, vip))[0] else None,
        timeout=120,
        what=f"the box client reaches the backend through {SVC}",
    )
    assert lines[0].startswith("web-"), lines

    # Each proxy joined its own tailnet only.
    hs_nodes = json.dumps(bed.tailnet.headscale_cli("nodes", "list"))
    box_nodes = json.dumps(box.box.admin.nodes())
    assert "hs-echo-tsep-0" in hs_nodes
    assert "hs-echo-tsep-0" not in box_nodes
    assert "web-tssvc-0" in box_nodes
    assert "web-tssvc-0" not in hs_nodes
    # Each tailnet's facts hold its own devices only (polled every 2 s).
    wait(lambda: "box-client" in _facts(bed, "box"), timeout=30, what="box-client in the box's facts")
    wait(lambda: "hs-device" in _facts(bed, "headscale"), timeout=30, what="hs-device in Headscale's facts")
    assert "hs-device" not in _facts(bed, "box")
    assert "box-client" not in _facts(bed, "headscale")
    # The API metrics are told apart by tailnet.
    wait(
        lambda: {"headscale", "box"} <= _metric_tailnets(bed),
        timeout=30,
        what="tsgw_tailscale_api_requests_total for both tailnets",
    )


def test_a_tailnet_whose_credentials_fail_affects_only_its_own_objects(
    bed: Bed, box: BoxedTailnet, installed: Path
) -> None:
    assert bed.tailnet is not None
    good_key = bed.tailnet.api_key()

    def set_api_key(value: str) -> None:
        manifest = bed.kubectl(
            "create", "secret", "generic", "headscale-api-key", "-n", NS,
            f"--from-literal=api_key={value}", "--dry-run=client", "-o", "yaml",
        )  # fmt: skip
        bed.kubectl("apply", "-f", "-", input=manifest)

    # Headscale's own key format, a secret it never issued.
    set_api_key(good_key[:-4] + ("aaaa" if not good_key.endswith("aaaa") else "bbbb"))
    try:
        failed = wait(
            lambda: c if (c := _tailnet_ready(bed, "headscale")).get("status") == "False" else None,
            timeout=60,
            what="TailscaleTailnet headscale Ready=False",
        )
        assert failed["reason"] == "AuthFailed", failed
        # The other tailnet is untouched, and its facts keep up: a device that joins now appears.
        assert _tailnet_ready(bed, "box").get("status") == "True", _tailnet_ready(bed, "box")
        late = box.box.join("box-late", auth_key(box, ("tag:client",)), socks5=True)
        wait(lambda: "box-late" in _facts(bed, "box"), timeout=30, what="box-late in the box's facts")
        svc = _service(box)
        assert svc is not None
        vip = next(a for a in svc.addrs if "." in a)
        wait(
            lambda: " 200 " in get_headers(late, vip)[0],
            timeout=120,
            what=f"a device that joined the box after the failure reaches {SVC}",
        )
        # Headscale's running proxy keeps carrying traffic: its device key does not depend on
        # the API key.
        assert _egress_answer(bed, "hs-client-2", "hs-echo") == "hs-device"
        # A new group on the failing tailnet is held, and says why.
        device = bed.tailnet.device("hs-device-2", bed.tailnet.preauth_key_for())
        bed.apply(_endpoints("hs-new", device.ip4()))

        def held() -> dict[str, str] | None:
            status = bed.get("tailscaleendpoints", "-n", APPS, "hs-new").get("status") or {}
            c = {c["type"]: c for c in status.get("conditions") or []}.get("AuthKeysReady")
            return c if c is not None and c["status"] == "False" else None

        cond = wait(held, timeout=60, what="hs-new AuthKeysReady=False")
        assert cond["reason"] == "TailnetNotReady", cond
    finally:
        set_api_key(good_key)
    wait(
        lambda: _tailnet_ready(bed, "headscale").get("status") == "True",
        timeout=60,
        what="TailscaleTailnet headscale Ready again with the right key",
    )

    def minted() -> bool:
        status = bed.get("tailscaleendpoints", "-n", APPS, "hs-new").get("status") or {}
        c = {c["type"]: c for c in status.get("conditions") or []}.get("AuthKeysReady") or {}
        return c.get("status") == "True"

    wait(minted, timeout=90, what="hs-new AuthKeysReady=True once the tailnet works again")
    wait(
        lambda: len([p for p in pods(bed, "app.kubernetes.io/instance=hs-new-tsep", APPS) if ready(p)]) == 1,
        timeout=180,
        what="the held proxy Ready once its key was minted",
        interval=1,
    )
    assert _egress_answer(bed, "hs-client-3", "hs-new") == "hs-device-2"
