"""Controllers and the manager against the real API server: owned objects, conditions, SSA,
conflicts, probes, metrics and Events."""

from __future__ import annotations

import copy

import anyio
import httpx
import pytest

from tsgw.kube import (
    CONFIGMAPS,
    EVENTS,
    Client,
    Conflict,
    ControllerOptions,
    GenerationChanged,
    InformerOptions,
    Manager,
    ManagerOptions,
    RawObject,
    Request,
    Resource,
    Result,
    controller_managed_by,
    find_condition,
    is_condition_true,
    owner_reference,
    retry_on_conflict,
    set_condition,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def widget(ns: str, name: str, size: int = 1) -> RawObject:
    return {
        "apiVersion": "test.tsgw.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"size": size},
    }


class WidgetReconciler:
    """Applies one owned ConfigMap per Widget and sets Ready (writes only what changed)."""

    def __init__(self, mgr: Manager, widgets: Resource, scope: InformerOptions) -> None:
        self.client = mgr.client
        self.widgets = widgets
        self.cache = mgr.informer(widgets, scope).store
        self.configmaps = mgr.informer(CONFIGMAPS, scope).store
        self.calls = 0

    async def reconcile(self, req: Request) -> Result | None:
        self.calls += 1
        obj = self.cache.get(req)
        if obj is None:
            return None
        desired = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{req.name}-config",
                "namespace": req.namespace,
                "ownerReferences": [owner_reference(obj)],
            },
            "data": {"size": str(obj["spec"]["size"])},
        }
        have = self.configmaps.get((req.namespace, f"{req.name}-config"))
        if have is None or have.get("data") != desired["data"] or not have["metadata"].get("ownerReferences"):
            await self.client.apply(CONFIGMAPS, desired, field_manager="widget-controller")
        status = copy.deepcopy(obj.get("status") or {})
        conditions = status.setdefault("conditions", [])
        gen = obj["metadata"]["generation"]
        changed = set_condition(conditions, "Ready", "True", "ConfigApplied", observed_generation=gen)
        if changed or status.get("observedGeneration") != gen:
            status["observedGeneration"] = gen
            await self.client.replace_status(self.widgets, {**obj, "status": status})
        return None


async def wait_for(pred, within: float = 30) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(within):
        while not pred():  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def test_a_controller_applies_owned_objects_sets_ready_and_repairs_a_deleted_child(
    client: Client, namespace: str, widgets: Resource
) -> None:
    mgr = Manager(
        client, ManagerOptions(health_probe_bind_address="127.0.0.1:0", metrics_bind_address="127.0.0.1:0")
    )
    scope = InformerOptions(namespace=namespace)  # other tests' objects stay out of this one
    rec = WidgetReconciler(mgr, widgets, scope)
    ctrl = (
        controller_managed_by(mgr)
        .for_(widgets, GenerationChanged(), informer=scope)
        .owns(CONFIGMAPS, informer=scope)
        .with_options(ControllerOptions(max_concurrent_reconciles=4))
        .complete(rec)
    )
    for i in range(5):
        await client.create(widgets, widget(namespace, f"w{i}", i))
    wstore = mgr.informer(widgets, scope).store
    cstore = mgr.informer(CONFIGMAPS, scope).store
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(
            lambda: all(is_condition_true(wstore.get((namespace, f"w{i}")) or {}, "Ready") for i in range(5))
        )
        for i in range(5):
            cm = cstore.get((namespace, f"w{i}-config"))
            assert cm is not None
            assert cm["data"] == {"size": str(i)}
            assert cm["metadata"]["ownerReferences"][0]["name"] == f"w{i}"
            w = wstore.get((namespace, f"w{i}"))
            assert w is not None
            assert w["status"]["observedGeneration"] == 1
            cond = find_condition(w["status"]["conditions"], "Ready")
            assert cond is not None
            assert cond["observedGeneration"] == 1

        # A deleted child is an Owns event for its owner: the controller puts it back.
        old_uid = (await client.get(CONFIGMAPS, "w3-config", namespace))["metadata"]["uid"]
        await client.delete(CONFIGMAPS, "w3-config", namespace)
        await wait_for(
            lambda: (
                (cstore.get((namespace, "w3-config")) or {"metadata": {}})["metadata"].get("uid")
                not in (None, old_uid)
            )
        )

        # A spec change (new generation) flows through to the child.
        await client.patch(widgets, "w1", {"spec": {"size": 42}}, namespace=namespace)
        await wait_for(lambda: (cstore.get((namespace, "w1-config")) or {}).get("data") == {"size": "42"})
        await wait_for(
            lambda: (wstore.get((namespace, "w1")) or {}).get("status", {}).get("observedGeneration") == 2
        )

        # Probes and metrics, each on its own listener (controller-runtime's layout).
        assert mgr.health is not None
        assert mgr.metrics is not None
        base = f"http://127.0.0.1:{mgr.health.bound_port}"
        mbase = f"http://127.0.0.1:{mgr.metrics.bound_port}"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/healthz")).text == "ok"
            ready = await http.get(f"{base}/readyz?verbose")
            assert ready.status_code == 200
            assert "[+]informers ok" in ready.text
            assert (await http.get(f"{base}/metrics")).status_code == 404
            assert (await http.get(f"{mbase}/healthz")).status_code == 404
            metrics = (await http.get(f"{mbase}/metrics")).text
        assert f'controller_runtime_reconcile_total{{controller="{ctrl.name}",result="success"}}' in metrics
        assert "workqueue_adds_total" in metrics
        assert "rest_client_requests_total" in metrics
        mgr.stop()


async def test_reapplying_an_unchanged_object_by_ssa_makes_no_write(client: Client, namespace: str) -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "same", "namespace": namespace},
        "data": {"a": "1"},
    }
    first = await client.apply(CONFIGMAPS, cm)
    listed = await client.list(CONFIGMAPS, namespace)
    async with client.watch(CONFIGMAPS, namespace, resource_version=listed.resource_version) as events:
        again = await client.apply(CONFIGMAPS, cm)
        changed = await client.apply(CONFIGMAPS, {**cm, "data": {"a": "2"}})
        with anyio.fail_after(10):
            ev = await events.__anext__()
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    # The first event the watch sees is the real change, not the no-op re-apply.
    assert ev.type == "MODIFIED"
    assert ev.object["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


async def test_a_status_write_conflict_is_retried_by_the_controller(
    client: Client, namespace: str, widgets: Resource
) -> None:
    mgr = Manager(client)
    scope = InformerOptions(namespace=namespace)
    cache = mgr.informer(widgets, scope).store
    attempts: list[str] = []

    class Racy:
        async def reconcile(self, req: Request) -> Result | None:
            obj = cache.get(req)
            assert obj is not None
            if not attempts:  # someone else writes between our read and our write
                await client.patch(
                    widgets, req.name, {"metadata": {"labels": {"raced": "yes"}}}, namespace=req.namespace
                )
            try:
                await client.replace_status(widgets, {**obj, "status": {"phase": "done"}})
                attempts.append("ok")
            except Conflict:
                attempts.append("conflict")
                raise
            return None

    controller_managed_by(mgr).for_(widgets, informer=scope).complete(Racy())
    await client.create(widgets, widget(namespace, "racy"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(
            lambda: (cache.get((namespace, "racy")) or {}).get("status", {}).get("phase") == "done"
        )
        mgr.stop()
    assert attempts[0] == "conflict"
    assert "ok" in attempts
    final = await client.get(widgets, "racy", namespace)
    assert final["metadata"]["labels"] == {"raced": "yes"}
    assert final["status"] == {"phase": "done"}


async def test_retry_on_conflict_rereads_and_succeeds(
    client: Client, namespace: str, widgets: Resource
) -> None:
    await client.create(widgets, widget(namespace, "counter"))
    tries = 0

    async def bump() -> RawObject:
        nonlocal tries
        tries += 1
        obj = await client.get(widgets, "counter", namespace)
        if tries == 1:
            await client.patch(
                widgets, "counter", {"status": {"n": 100}}, namespace=namespace, subresource="status"
            )
        n = int((obj.get("status") or {}).get("n", 0))
        return await client.replace_status(widgets, {**obj, "status": {"n": n + 1}})

    result = await retry_on_conflict(bump)
    assert tries == 2
    assert result["status"] == {"n": 101}


async def test_repeated_events_are_aggregated_into_one_event_series(client: Client, namespace: str) -> None:
    cm = await client.apply(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "noisy", "namespace": namespace}},
    )
    mgr = Manager(client)
    recorder = mgr.event_recorder()
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        for _ in range(5):
            recorder.event(cm, "Warning", "BackendDown", "backend 10.0.0.7 refused")
            await anyio.sleep(0.01)
        recorder.event(cm, "Normal", "Synced", "all good")

        async def events() -> list[RawObject]:
            return (await client.list(EVENTS, namespace)).items

        with anyio.fail_after(20):
            while True:
                evs = await events()
                warn = [e for e in evs if e["reason"] == "BackendDown"]
                if len(warn) == 1 and (warn[0].get("series") or {}).get("count") == 5 and len(evs) == 2:
                    break
                await anyio.sleep(0.1)
        mgr.stop()
    assert warn[0]["regarding"]["name"] == "noisy"
    assert warn[0]["type"] == "Warning"


async def test_the_manager_gives_its_informers_a_10_hour_resync_unless_they_set_their_own(
    client: Client, namespace: str
) -> None:
    mgr = Manager(client)
    assert mgr.informer(CONFIGMAPS, InformerOptions(namespace=namespace)).options.resync_period == 36_000.0
    own = mgr.informer(
        CONFIGMAPS, InformerOptions(namespace=namespace, label_selector="a=b", resync_period=5)
    )
    assert own.options.resync_period == 5
    off = Manager(client, ManagerOptions(sync_period=None))
    assert off.informer(CONFIGMAPS, InformerOptions(namespace=namespace)).options.resync_period is None


async def test_the_managers_metrics_endpoint_serves_the_registry_it_was_given(client: Client) -> None:
    import prometheus_client

    own = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("one_registry_probe", "a series only `own` has", registry=own).inc()
    mgr = Manager(client, ManagerOptions(metrics_bind_address="127.0.0.1:0", registry=own))
    default = Manager(client, ManagerOptions(metrics_bind_address="127.0.0.1:0"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        tg.start_soon(default.run)
        with anyio.fail_after(30):
            while mgr.metrics is None or mgr.metrics.bound_port is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            while default.metrics is None or default.metrics.bound_port is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        async with httpx.AsyncClient() as http:
            mine = (await http.get(f"http://127.0.0.1:{mgr.metrics.bound_port}/metrics")).text
            process = (await http.get(f"http://127.0.0.1:{default.metrics.bound_port}/metrics")).text
        mgr.stop()
        default.stop()
    assert "one_registry_probe_total 1.0" in mine
    assert "rest_client_requests_total" not in mine
    # The default: the process registry, with kube's series and the process collector's.
    assert "rest_client_requests_total" in process
    assert "process_cpu_seconds_total" in process


async def test_owns_enqueues_a_cluster_scoped_owner_by_name_alone(client: Client, namespace: str) -> None:
    from tsgw.kube import NAMESPACES

    seen: list[Request] = []

    async def record(req: Request) -> Result | None:
        seen.append(req)
        return None

    from tsgw.kube import ReconcilerFunc

    ns_obj = await client.get(NAMESPACES, namespace)
    mgr = Manager(client)
    (
        controller_managed_by(mgr)
        .for_(NAMESPACES, informer=InformerOptions(field_selector=f"metadata.name={namespace}"))
        .owns(CONFIGMAPS, informer=InformerOptions(namespace=namespace))
        .complete(ReconcilerFunc(record))
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(lambda: Request("", namespace) in seen)
        seen.clear()
        await client.create(
            CONFIGMAPS,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "owned",
                    "namespace": namespace,
                    "ownerReferences": [owner_reference(ns_obj)],
                },
            },
        )
        await wait_for(lambda: bool(seen))
        mgr.stop()
    # controller-runtime leaves the namespace empty for a cluster-scoped owner.
    assert set(seen) == {Request("", namespace)}


async def test_a_second_request_for_an_informer_merges_indexers_and_refuses_other_differences(
    client: Client, namespace: str
) -> None:
    from tsgw.kube import strip_managed_fields

    mgr = Manager(client, ManagerOptions(sync_period=None))
    first = mgr.informer(
        CONFIGMAPS, InformerOptions(namespace=namespace, indexers={"a": lambda o: ["a"]}, resync_period=60)
    )
    second = mgr.informer(
        CONFIGMAPS, InformerOptions(namespace=namespace, indexers={"b": lambda o: ["b"]}, resync_period=5)
    )
    assert second is first
    assert {"a", "b"} <= set(first.options.indexers)
    await client.create(
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": namespace}},
    )
    assert first.options.resync_period == 5  # the most frequent asked for, as client-go's per-handler resync
    # The same index name with another function, another transform: refused, loudly.
    with pytest.raises(ValueError, match="indexer"):
        mgr.informer(CONFIGMAPS, InformerOptions(namespace=namespace, indexers={"a": lambda o: ["z"]}))
    with pytest.raises(ValueError, match="transform"):
        mgr.informer(CONFIGMAPS, InformerOptions(namespace=namespace, transform=None))
    with pytest.raises(ValueError, match="watch_list"):
        mgr.informer(CONFIGMAPS, InformerOptions(namespace=namespace, watch_list=False))
    # Options equal to the first's (the default transform included) are fine.
    assert (
        mgr.informer(CONFIGMAPS, InformerOptions(namespace=namespace, transform=strip_managed_fields))
        is first
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        with anyio.fail_after(30):
            await first.wait_for_sync()
        assert [o["metadata"]["name"] for o in first.store.by_index("b", "b")] == ["x"]
        mgr.stop()


async def test_informers_controllers_and_runnables_added_after_run_are_started(
    client: Client, namespace: str, widgets: Resource
) -> None:
    from tsgw.kube import ReconcilerFunc

    mgr = Manager(client)
    scope = InformerOptions(namespace=namespace)
    early = mgr.informer(CONFIGMAPS, scope)
    seen: list[Request] = []
    late_ran = anyio.Event()

    async def record(req: Request) -> Result | None:
        seen.append(req)
        return None

    async def late_runnable() -> None:
        late_ran.set()

    await client.create(widgets, widget(namespace, "late"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        with anyio.fail_after(30):
            await early.wait_for_sync()
            await mgr.elected.wait()
        # After run(): a new informer, a controller on it and an always-on runnable.
        late = mgr.informer(widgets, scope)
        controller_managed_by(mgr).for_(widgets, informer=scope).complete(ReconcilerFunc(record))
        mgr.add(late_runnable, need_leader_election=False)
        with anyio.fail_after(30):
            await late.wait_for_sync()
            await late_ran.wait()
        await wait_for(lambda: Request(namespace, "late") in seen)
        mgr.stop()
