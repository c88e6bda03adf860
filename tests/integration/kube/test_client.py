"""The raw-JSON client against the real API server: errors, paging, patches, preconditions."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.support.controlplane import ControlPlane
from tsgw.kube import (
    CONFIGMAPS,
    AlreadyExists,
    Client,
    ClientOptions,
    Conflict,
    Forbidden,
    Informer,
    InformerOptions,
    Invalid,
    NotFound,
    ObjectList,
    Resource,
    ServerTimeout,
)

CLUSTERROLES = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False)
CLUSTERROLEBINDINGS = Resource(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def cm(ns: str, name: str, **data: str) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


async def test_api_failures_map_onto_the_exception_tree(client: Client, namespace: str) -> None:
    with pytest.raises(NotFound):
        await client.get(CONFIGMAPS, "absent", namespace)
    assert await client.get_or_none(CONFIGMAPS, "absent", namespace) is None
    await client.create(CONFIGMAPS, cm(namespace, "dup"))
    with pytest.raises(AlreadyExists) as exc:
        await client.create(CONFIGMAPS, cm(namespace, "dup"))
    assert exc.value.status == 409
    with pytest.raises(Invalid):
        await client.create(CONFIGMAPS, cm(namespace, "Not_A_Valid_Name"))


async def test_a_paged_list_follows_continue_tokens_and_returns_every_item(
    client: Client, namespace: str
) -> None:
    for i in range(7):
        await client.create(CONFIGMAPS, cm(namespace, f"p{i}"))
    result = await client.list(CONFIGMAPS, namespace, limit=2, resource_version="")
    assert result.paginated
    assert sorted(o["metadata"]["name"] for o in result.items) == [f"p{i}" for i in range(7)]
    assert all(o["kind"] == "ConfigMap" for o in result.items)
    assert int(result.resource_version) > 0


async def test_merge_and_json_patches_and_delete_preconditions(client: Client, namespace: str) -> None:
    created = await client.create(CONFIGMAPS, cm(namespace, "p", a="1"))
    merged = await client.patch(CONFIGMAPS, "p", {"data": {"b": "2"}}, namespace=namespace)
    assert merged["data"] == {"a": "1", "b": "2"}
    jsoned = await client.patch(
        CONFIGMAPS, "p", [{"op": "remove", "path": "/data/a"}], namespace=namespace, patch_type="json"
    )
    assert jsoned["data"] == {"b": "2"}
    # A stale resourceVersion precondition refuses the delete; the right uid allows it.
    with pytest.raises(Conflict):
        await client.delete(
            CONFIGMAPS, "p", namespace, resource_version=created["metadata"]["resourceVersion"]
        )
    await client.delete(CONFIGMAPS, "p", namespace, uid=created["metadata"]["uid"])
    assert await client.get_or_none(CONFIGMAPS, "p", namespace) is None
    assert client.writes() >= 4


async def test_a_status_write_leaves_the_generation_alone(
    client: Client, namespace: str, widgets: Resource
) -> None:
    w = await client.create(
        widgets,
        {
            "apiVersion": widgets.api_version,
            "kind": "Widget",
            "metadata": {"name": "g", "namespace": namespace},
        },
    )
    after = await client.replace_status(widgets, {**w, "status": {"phase": "x"}})
    assert after["metadata"]["generation"] == w["metadata"]["generation"]
    applied = await client.apply_status(
        widgets, {"metadata": {"name": "g", "namespace": namespace}, "status": {"phase": "y"}}
    )
    assert applied["status"]["phase"] == "y"
    assert applied["metadata"]["generation"] == w["metadata"]["generation"]


async def test_the_inactivity_watchdog_reconnects_a_silent_watch_without_relisting(
    client: Client, namespace: str
) -> None:
    inf = Informer(
        client, CONFIGMAPS, InformerOptions(namespace=namespace, idle_timeout=0.5, backoff_max=0.5)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        requests_before = client.requests[("GET", 200)]
        # No events: the watchdog fires every 0.5 s and each time the informer re-watches.
        # Wait for two re-watches rather than a fixed time, so a loaded machine cannot race it.
        with anyio.fail_after(30):
            while client.requests[("GET", 200)] - requests_before < 2:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await client.create(CONFIGMAPS, cm(namespace, "late"))
        with anyio.fail_after(15):
            while inf.store.get((namespace, "late")) is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert inf.relists == 1  # only the initial sync: reconnects resumed from the last RV


async def test_a_429_is_retried_after_its_retry_after(tmp_path: Path) -> None:
    # Without API priority and fairness and with one request in flight, kube-apiserver's
    # max-in-flight filter answers concurrent non-exempt requests with 429 and Retry-After: 1.
    cp = ControlPlane(
        tmp_path / "cp",
        extra_tokens=["reader-token,reader,reader-uid,readers"],
        extra_args=["--enable-priority-and-fairness=false", "--max-requests-inflight=1"],
    )
    await anyio.to_thread.run_sync(cp.start)
    try:
        async with await Client.from_kubeconfig(str(cp.kubeconfig)) as admin:
            # (the aggregated "view" role is empty here: no controller-manager fills it)
            await admin.create(
                CLUSTERROLES,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "cm-reader"},
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
                },
            )
            await admin.create(
                CLUSTERROLEBINDINGS,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "readers-view"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cm-reader",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "readers"}
                    ],
                },
            )
        config = json.loads(cp.kubeconfig.read_text())
        config["users"][0]["user"]["token"] = "reader-token"
        reader_config = tmp_path / "reader.kubeconfig"
        reader_config.write_text(json.dumps(config))
        async with await Client.from_kubeconfig(
            str(reader_config), options=ClientOptions(max_retries=30)
        ) as reader:
            with anyio.fail_after(60):
                while True:  # until RBAC caught up with the new binding
                    try:
                        await reader.list(CONFIGMAPS, "default")
                        break
                    except Forbidden:
                        await anyio.sleep(0.2)
                results: list[str] = []

                async def one() -> None:
                    results.append((await reader.list(CONFIGMAPS, "kube-system")).resource_version)

                batches = 0
                while reader.requests[("GET", 429)] == 0 and batches < 10:  # until requests overlapped
                    batches += 1
                    async with anyio.create_task_group() as tg:
                        for _ in range(6):
                            tg.start_soon(one)
        assert len(results) == 6 * batches  # every request succeeded in the end
        assert reader.requests[("GET", 429)] > 0  # and the server did push back
    finally:
        await anyio.to_thread.run_sync(cp.stop)


async def test_a_5xx_with_retry_after_is_retried(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    # A LIST at a resourceVersion the server has not reached: after waiting for it, the watch
    # cache answers 504 with cause ResourceVersionTooLarge and Retry-After: 1.
    listed = await client.list(CONFIGMAPS, namespace)
    future = str(int(listed.resource_version) + 1_000_000)
    async with await Client.from_kubeconfig(
        str(control_plane.kubeconfig), options=ClientOptions(max_retries=2)
    ) as c:
        with anyio.fail_after(60), pytest.raises(ServerTimeout) as err:
            await c.list(CONFIGMAPS, namespace, resource_version=future, limit=None)
        assert err.value.too_large_resource_version
        assert err.value.retry_after == 1
        assert c.requests[("GET", 504)] == 3  # the first answer and two retries


async def test_a_410_on_a_continue_page_falls_back_to_a_full_list(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    from tsgw.kube import PODTEMPLATES

    for i in range(6):
        await client.create(
            PODTEMPLATES,
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": f"p{i}", "namespace": namespace},
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            },
        )
    # Paced at one request per 2 s, so the test can expire the first page's continue token
    # (podtemplates are read from etcd here; compaction expires the snapshot the token pins).
    async with await Client.from_kubeconfig(
        str(control_plane.kubeconfig), options=ClientOptions(qps=0.5, burst=1)
    ) as slow:
        async with anyio.create_task_group() as tg:
            result: list[ObjectList] = []

            async def listing() -> None:
                result.append(await slow.list(PODTEMPLATES, namespace, limit=2, resource_version=""))

            tg.start_soon(listing)
            with anyio.fail_after(30):
                while slow.requests[("GET", 200)] == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await client.apply(
                PODTEMPLATES,
                {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "p0", "namespace": namespace, "labels": {"x": "y"}},
                },
            )
            await anyio.to_thread.run_sync(control_plane.compact)
        assert slow.requests[("GET", 410)] == 1
        assert sorted(o["metadata"]["name"] for o in result[0].items) == [f"p{i}" for i in range(6)]
