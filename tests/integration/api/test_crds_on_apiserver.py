"""The generated CRDs on a real kube-apiserver: the examples are accepted, each invalid example is
rejected with its message, the server's defaults agree with tsgw.api's, printer columns print."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.support.controlplane import ControlPlane
from tsgw.api import API_VERSION, DERIVED_KINDS, KINDS, crds, load

pytestmark = pytest.mark.integration

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
VALID = sorted(EXAMPLES.glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
PLURAL = {k.kind: k.plural for k in KINDS}
NAMESPACED = {k.kind: k.namespaced for k in KINDS}


def _url(obj: dict[str, Any], name: bool = False) -> str:
    kind = obj["kind"]
    base = f"/apis/{API_VERSION}"
    if NAMESPACED[kind]:
        base += f"/namespaces/{obj['metadata']['namespace']}"
    base += f"/{PLURAL[kind]}"
    return base + (f"/{obj['metadata']['name']}" if name else "")


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=control_plane.url,
        headers={"Authorization": f"Bearer {control_plane.token}"},
        verify=control_plane.ssl_context(),
        timeout=30,
    ) as client:
        for crd in crds():
            r = client.patch(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                params={"fieldManager": "tsgw-test", "force": "true"},
                headers={"Content-Type": "application/apply-patch+yaml"},
                json=crd,
            )
            assert r.status_code in (200, 201), r.text
        deadline = time.monotonic() + 30
        for crd in crds():
            while True:
                got = client.get(
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
                )
                conds = {c["type"]: c["status"] for c in got.json().get("status", {}).get("conditions", [])}
                if conds.get("Established") == "True":
                    break
                assert time.monotonic() < deadline, f"CRD not established: {got.json().get('status')}"
                time.sleep(0.1)
        r = client.post(
            "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
        )
        assert r.status_code in (201, 409), r.text
        # Discovery of the new group can lag Established by a moment.
        while client.get(f"/apis/{API_VERSION}").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield client


def _create(api: httpx.Client, obj: dict[str, Any]) -> httpx.Response:
    for _ in range(50):
        r = api.post(_url(obj), json=obj)
        if r.status_code != 404:  # the resource's REST endpoint may appear a moment late
            return r
        time.sleep(0.1)
    return r


def test_crds_are_established_with_names_and_no_structural_problems(api: httpx.Client) -> None:
    for crd in crds():
        got = api.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        ).json()
        conds = {c["type"]: c for c in got["status"]["conditions"]}
        assert conds["NamesAccepted"]["status"] == "True"
        assert "NonStructuralSchema" not in conds
        assert got["status"]["acceptedNames"]["categories"] == ["tailscale"]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_each_example_is_accepted_and_defaulted_as_tsgw_api_defaults_it(
    api: httpx.Client, path: pathlib.Path
) -> None:
    obj = yaml.safe_load(path.read_text())
    api.delete(_url(obj, name=True))
    r = _create(api, obj)
    assert r.status_code == 201, r.text
    stored = r.json()
    # The server's defaults and tsgw.api's parser agree: both views are the same.
    assert load(stored).spec == load(obj).spec


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_each_invalid_example_is_rejected_with_its_message(api: httpx.Client, path: pathlib.Path) -> None:
    text = path.read_text()
    expected = text.splitlines()[0].removeprefix("# expect: ")
    obj = yaml.safe_load(text)
    r = _create(api, obj)
    assert r.status_code == 422, r.text
    assert expected in r.json()["message"], r.json()["message"]


def test_server_defaults_fill_the_fields_users_leave_out(api: httpx.Client) -> None:
    obj = {
        "apiVersion": API_VERSION,
        "kind": "TailscaleEndpoints",
        "metadata": {"name": "minimal", "namespace": "apps"},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "targets": [{"name": "a", "address": "100.64.0.1", "ports": [{"port": 80}]}],
        },
    }
    api.delete(_url(obj, name=True))
    r = _create(api, obj)
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert spec["targets"][0]["weight"] == 1
    assert spec["targets"][0]["priority"] == 0
    assert spec["targets"][0]["ports"][0]["protocol"] == "TCP"
    assert spec["proxy"]["replicas"] == 2


def test_printer_columns_show_status_and_spec_fields(api: httpx.Client) -> None:
    obj = yaml.safe_load((EXAMPLES / "tailscaleservices.yaml").read_text())
    api.delete(_url(obj, name=True))
    assert _create(api, obj).status_code == 201
    status = {
        "serviceName": "svc:web",
        "dnsName": "web.tail1234.ts.net",
        "addresses": ["100.100.0.1"],
        "hostingReplicas": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Hosted",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    r = api.patch(
        _url(obj, name=True) + "/status",
        params={"fieldManager": "tsgw-test", "force": "true"},
        headers={"Content-Type": "application/apply-patch+yaml"},
        json={"apiVersion": API_VERSION, "kind": obj["kind"], "metadata": obj["metadata"], "status": status},
    )
    assert r.status_code == 200, r.text
    table = api.get(
        _url(obj, name=True), headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"}
    ).json()
    names = [c["name"] for c in table["columnDefinitions"]]
    row = dict(zip(names, table["rows"][0]["cells"], strict=True))
    assert row["Tailscale Service"] == "svc:web"
    assert row["DNS Name"] == "web.tail1234.ts.net"
    assert row["Hosts"] == 2
    assert row["Ready"] == "True"


def test_the_tailscale_category_lists_every_kind(api: httpx.Client) -> None:
    resources = api.get(f"/apis/{API_VERSION}").json()["resources"]
    listed = {r["kind"] for r in resources if "tailscale" in r.get("categories", [])}
    # (`kubectl get tailscale` shows the objects tsgw derives for Envoy Gateway too.)
    assert listed == set(PLURAL) | {k.kind for k in DERIVED_KINDS}


@pytest.mark.parametrize("case", ["examples", "gateway", "routepolicy", "endpoints_tcp_failover"])
def test_translated_status_is_accepted_by_the_status_subresource(api: httpx.Client, case: str) -> None:
    from tests.unit.translate._cases import load_case
    from tsgw.translate import status_body, translate

    inputs = load_case(case)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in inputs.objects}
    result = translate(inputs)
    assert result.model.statuses
    for st in result.model.statuses:
        obj = by_name[(st.ref.kind, st.ref.name)]
        if st.ref.kind == "TailscaleTailnet":
            continue  # translation writes no tailnet status
        api.delete(_url(obj, name=True))  # start from an empty status (SSA merges set-lists)
        assert _create(api, obj).status_code == 201
        body = status_body(st, None, "2026-01-01T00:00:00Z")
        r = api.patch(
            _url(obj, name=True) + "/status",
            params={"fieldManager": "tsgw", "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            json={
                "apiVersion": API_VERSION,
                "kind": obj["kind"],
                "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace")},
                "status": body,
            },
        )
        assert r.status_code == 200, f"{st.ref.kind}: {r.text}"
        stored = r.json()["status"]
        # Nothing was pruned: what translation wrote is what the API server kept (it may add
        # schema defaults, e.g. a target's health: Unknown until the controller knows better).
        assert _contains(stored, body), (st.ref.kind, stored, body)


def _contains(big: Any, small: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _contains(big[k], v) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(_contains, big, small))
    return bool(big == small)
