"""The owned objects translate produces are accepted by a real kube-apiserver as they are
(server-side apply), and the proxy Role lets a replica's ServiceAccount read and write only its
group's state Secrets (checked by the API server's own RBAC authorizer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.controlplane import ControlPlane
from tests.unit.translate._cases import load_case
from tsgw.translate import translate

pytestmark = pytest.mark.integration

_PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
}


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=control_plane.url,
        headers={"Authorization": f"Bearer {control_plane.token}"},
        verify=control_plane.ssl_context(),
        timeout=30,
    ) as client:
        r = client.post(
            "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
        )
        assert r.status_code in (201, 409), r.text
        yield client


def _apply(api: httpx.Client, obj: dict[str, Any], dry_run: bool) -> httpx.Response:
    md = obj["metadata"]
    params = {"fieldManager": "tsgw", "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    # Owner references point at objects this test does not create; the API server accepts them.
    return api.patch(
        _PATHS[obj["kind"]].format(ns=md["namespace"]) + f"/{md['name']}",
        params=params,
        headers={"Content-Type": "application/apply-patch+yaml"},
        json=obj,
    )


@pytest.mark.parametrize("case", ["examples", "services_tcp", "endpoints_http_grpc_tls", "gateway"])
def test_every_owned_object_is_accepted_by_server_side_apply(api: httpx.Client, case: str) -> None:
    result = translate(load_case(case))
    assert result.objects
    for objects in result.objects.values():
        for obj in objects:
            r = _apply(api, obj, dry_run=True)
            assert r.status_code in (200, 201), f"{obj['kind']} {obj['metadata']['name']}: {r.text}"


def _can(api: httpx.Client, user: str, verb: str, name: str | None) -> bool:
    attrs: dict[str, Any] = {"namespace": "apps", "verb": verb, "resource": "secrets"}
    if name is not None:
        attrs["name"] = name
    r = api.post(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        json={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:serviceaccounts"], "resourceAttributes": attrs},
        },
    )
    assert r.status_code == 201, r.text
    return bool(r.json()["status"]["allowed"])


def test_a_replica_may_touch_only_its_groups_state_secrets(api: httpx.Client) -> None:
    result = translate(load_case("services_tcp"))
    (objects,) = result.objects.values()
    for obj in objects:
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            r = _apply(api, obj, dry_run=False)
            assert r.status_code in (200, 201), r.text
    group = result.model.groups[0]
    sa = f"system:serviceaccount:apps:{group.name}"
    pod0, pod1 = group.replica_names()
    assert _can(api, sa, "get", pod0)
    assert _can(api, sa, "patch", pod1)
    assert _can(api, sa, "update", pod0)
    assert not _can(api, sa, "get", f"{pod0}-config")  # the config Secret (auth key) is mounted, not read
    assert not _can(api, sa, "get", "someone-elses-secret")
    assert not _can(api, sa, "list", None)
    assert not _can(api, sa, "delete", pod0)
