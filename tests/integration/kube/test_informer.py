"""The informer against the real API server: churn, 410 Gone, an API server restart."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.integration.kube.conftest import retrying
from tests.support.controlplane import ControlPlane
from tsgw.kube import (
    CONFIGMAPS,
    PODTEMPLATES,
    AlreadyExists,
    Client,
    HandlerFuncs,
    Informer,
    InformerOptions,
    NotFound,
    ObjectKey,
    RawObject,
    Resource,
    add_finalizer,
    has_finalizer,
    object_key,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Mirror:
    """What handlers were told, replayed into a dict: it must equal the store."""

    def __init__(self) -> None:
        self.objects: dict[Any, str] = {}
        self.deletes: list[str] = []
        self.unchanged: list[str] = []  # updates that carried the same resourceVersion
        self.initial_adds = 0

    def handler(self) -> HandlerFuncs:
        return HandlerFuncs(add=self.add, update=self.update, delete=self.delete)

    def add(self, obj: RawObject, initial: bool) -> None:
        self.initial_adds += initial
        self.objects[object_key(obj)] = obj["metadata"]["resourceVersion"]

    def update(self, old: RawObject, new: RawObject) -> None:
        assert object_key(old) == object_key(new)
        if old["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]:
            self.unchanged.append(new["metadata"]["name"])
        self.objects[object_key(new)] = new["metadata"]["resourceVersion"]

    def delete(self, obj: RawObject) -> None:
        self.deletes.append(obj["metadata"]["name"])
        self.objects.pop(object_key(obj), None)


def configmap(ns: str, name: str, value: str) -> RawObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"v": value},
    }


def podtemplate(ns: str, name: str, value: str) -> RawObject:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name, "namespace": ns, "labels": {"v": value}},
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    }


async def churn(client: Client, res: Resource, make: Any, ns: str, ops: int, names: int, seed: int) -> None:
    """``ops`` random creates/updates/deletes over ``names`` names, 16 at a time."""
    rng = random.Random(seed)
    limiter = anyio.CapacityLimiter(16)

    async def one(i: int) -> None:
        async with limiter:
            name = f"o{rng.randrange(names)}"
            op = rng.random()
            try:
                if op < 0.45:
                    await client.create(res, make(ns, name, str(i)))
                elif op < 0.8:
                    await client.apply(res, make(ns, name, str(i)))
                else:
                    await client.delete(res, name, ns)
            except (AlreadyExists, NotFound):
                pass

    async with anyio.create_task_group() as tg:
        for i in range(ops):
            tg.start_soon(one, i)


async def converged(
    client: Client, inf: Informer, res: Resource, ns: str, mirror: Mirror | None = None
) -> None:
    """Wait until the store equals a fresh LIST taken now (keys and resourceVersions)."""
    fresh = await retrying(lambda: client.list(res, ns, resource_version=""))
    want = {object_key(o): o["metadata"]["resourceVersion"] for o in fresh.items}
    with anyio.fail_after(60):
        while True:
            have = {object_key(o): o["metadata"]["resourceVersion"] for o in inf.store.list()}
            if have == want and (mirror is None or mirror.objects == want):
                return
            await anyio.sleep(0.05)


@pytest.mark.parametrize("watch_list", [True, False], ids=["watchlist", "list"])
async def test_under_churn_the_store_ends_identical_to_a_fresh_list(
    client: Client, namespace: str, watch_list: bool
) -> None:
    await churn(client, CONFIGMAPS, configmap, namespace, 300, 100, seed=1)  # state before the informer
    inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=namespace, watch_list=watch_list))
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        assert mirror.initial_adds == len(inf.store)
        await churn(client, CONFIGMAPS, configmap, namespace, 3000, 300, seed=2)
        await converged(client, inf, CONFIGMAPS, namespace, mirror)
        tg.cancel_scope.cancel()
    assert all("managedFields" not in o["metadata"] for o in inf.store.list())  # default transform
    cached = inf.store.list()[0]
    with pytest.raises(TypeError):  # read-only: a reconciler changes a deep_copy()
        add_finalizer(cached, "x")
    assert not has_finalizer(cached, "x")


async def test_a_410_gone_makes_the_informer_relist_without_losing_an_update(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    # podtemplates have no watch cache here: their watches read etcd, so compaction expires RVs.
    for i in range(20):
        await client.create(PODTEMPLATES, podtemplate(namespace, f"o{i}", "a"))
    inf = Informer(client, PODTEMPLATES, InformerOptions(namespace=namespace))
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        tg.cancel_scope.cancel()
    stale_rv = inf.last_sync_resource_version
    relists = inf.relists

    # While it is stopped: delete some, change some, add some; then compact them out of history.
    for i in range(5):
        await client.delete(PODTEMPLATES, f"o{i}", namespace)
    for i in range(5, 10):
        await client.apply(PODTEMPLATES, podtemplate(namespace, f"o{i}", "b"))
    for i in range(20, 25):
        await client.create(PODTEMPLATES, podtemplate(namespace, f"o{i}", "c"))
    await anyio.to_thread.run_sync(control_plane.compact)

    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)  # resumes watching from stale_rv → 410 → relist
        await converged(client, inf, PODTEMPLATES, namespace, mirror)
        tg.cancel_scope.cancel()
    assert inf.relists == relists + 1
    assert int(inf.last_sync_resource_version) > int(stale_rv)
    assert sorted(mirror.deletes) == [f"o{i}" for i in range(5)]
    labels = {o["metadata"]["name"]: o["metadata"]["labels"]["v"] for o in inf.store.list()}
    assert [labels[f"o{i}"] for i in range(5, 10)] == ["b"] * 5
    # As client-go's Replace: the objects nobody touched are re-announced (same resourceVersion).
    assert sorted(mirror.unchanged) == sorted(f"o{i}" for i in range(10, 20))


async def test_a_resync_redelivers_every_cached_object_as_an_unchanged_update(
    client: Client, namespace: str
) -> None:
    for i in range(3):
        await client.create(CONFIGMAPS, configmap(namespace, f"r{i}", "a"))
    inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=namespace, resync_period=0.2))
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            while len(mirror.unchanged) < 6:  # two resyncs  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert mirror.initial_adds == 3
    assert sorted(set(mirror.unchanged)) == ["r0", "r1", "r2"]
    assert inf.relists == 1  # a resync reads the cache, not the API server


async def test_the_informer_recovers_when_the_api_server_restarts_mid_watch(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=namespace, backoff_max=2.0))
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        await churn(client, CONFIGMAPS, configmap, namespace, 200, 50, seed=3)
        await anyio.to_thread.run_sync(control_plane.restart_apiserver)
        await retrying(lambda: churn(client, CONFIGMAPS, configmap, namespace, 200, 50, seed=4))
        await converged(client, inf, CONFIGMAPS, namespace, mirror)
        tg.cancel_scope.cancel()


async def test_the_informer_falls_back_to_list_when_the_server_has_watchlist_off(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path / "cp", extra_args=["--feature-gates=WatchList=false"])
    await anyio.to_thread.run_sync(cp.start)
    try:
        async with await Client.from_kubeconfig(str(cp.kubeconfig)) as client:
            for i in range(5):
                await client.create(CONFIGMAPS, configmap("default", f"f{i}", "x"))
            inf = Informer(client, CONFIGMAPS, InformerOptions(namespace="default", watch_list=True))
            async with anyio.create_task_group() as tg:
                tg.start_soon(inf.run)
                with anyio.fail_after(30):
                    await inf.wait_for_sync()
                await client.create(CONFIGMAPS, configmap("default", "after", "y"))
                await converged(client, inf, CONFIGMAPS, "default")
                tg.cancel_scope.cancel()
        assert not inf.uses_watch_list  # the 422 switched it to LIST for good
        assert {f"f{i}" for i in range(5)} | {"after"} <= {o["metadata"]["name"] for o in inf.store.list()}
    finally:
        await anyio.to_thread.run_sync(cp.stop)


@pytest.mark.parametrize("watch_list", [True, False], ids=["watchlist", "list"])
async def test_a_watch_event_larger_than_4_mib_is_read_and_later_events_still_arrive(
    client: Client, namespace: str, watch_list: bool
) -> None:
    # 780 KiB of characters JSON escapes as \u003c etc.: a ~4.7 MB watch line.
    big = "<>&" * (780 * 1024 // 3)
    await client.create(CONFIGMAPS, configmap(namespace, "big", big))
    inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=namespace, watch_list=watch_list))
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(60):
            await inf.wait_for_sync()
        await client.apply(CONFIGMAPS, configmap(namespace, "big", big + "!"))  # its next event
        await client.create(CONFIGMAPS, configmap(namespace, "after", "small"))
        await converged(client, inf, CONFIGMAPS, namespace, mirror)
        tg.cancel_scope.cancel()
    cached = inf.store.get((namespace, "big"))
    assert cached is not None
    assert cached["data"]["v"] == big + "!"


async def test_an_unexpected_exception_in_the_reflector_is_retried_not_fatal(
    client: Client, namespace: str
) -> None:
    failures = 0

    def flaky(obj: RawObject) -> RawObject:
        nonlocal failures
        if obj["metadata"]["name"] == "boom" and failures < 2:
            failures += 1
            raise RuntimeError("a transform bug")
        return obj

    inf = Informer(
        client, CONFIGMAPS, InformerOptions(namespace=namespace, transform=flaky, backoff_initial=0.05)
    )
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        await client.create(CONFIGMAPS, configmap(namespace, "boom", "x"))
        await client.create(CONFIGMAPS, configmap(namespace, "later", "y"))
        await converged(client, inf, CONFIGMAPS, namespace, mirror)
        tg.cancel_scope.cancel()
    assert failures == 2


@pytest.mark.parametrize("watch_list", [True, False], ids=["watchlist", "list"])
async def test_the_collector_stays_enabled_while_the_informer_waits_on_the_api_server(
    client: Client, namespace: str, watch_list: bool
) -> None:
    import gc

    for i in range(200):
        await client.create(CONFIGMAPS, configmap(namespace, f"g{i}", "x" * 1000))
    inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=namespace, watch_list=watch_list))
    seen_disabled = 0
    polls = 0
    assert gc.isenabled()
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            while not inf.has_synced:
                polls += 1
                seen_disabled += not gc.isenabled()
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert polls > 0
    assert seen_disabled == 0  # other tasks never run with the collector paused
    assert gc.isenabled()


async def test_twenty_forced_relists_do_not_grow_what_the_collector_tracks_or_froze(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    import gc

    for i in range(50):
        await client.create(PODTEMPLATES, podtemplate(namespace, f"o{i}", "a"))
    inf = Informer(client, PODTEMPLATES, InformerOptions(namespace=namespace))
    sizes: list[int] = []
    for round_ in range(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(inf.run)
            with anyio.fail_after(60):
                while inf.relists <= round_:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        # Expire the resumed watch's RV: the next run relists (podtemplates have no watch cache).
        await client.apply(PODTEMPLATES, podtemplate(namespace, "o0", str(round_)))
        await anyio.to_thread.run_sync(control_plane.compact)
        gc.collect()
        sizes.append(len(gc.get_objects()) + gc.get_freeze_count())
    assert inf.relists == 20
    # Steady state: a relist replaces the cache, it does not add to the heap (a leak of even one
    # object per cached item would show as 50 per round).
    assert sizes[-1] - sizes[4] < 15 * 50 // 2, sizes


async def test_deletes_inferred_on_a_relist_are_marked_final_state_unknown(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    from tsgw.kube import DeletedFinalStateUnknown

    for i in range(3):
        await client.create(PODTEMPLATES, podtemplate(namespace, f"d{i}", "a"))
    inf = Informer(client, PODTEMPLATES, InformerOptions(namespace=namespace))
    deleted: list[RawObject] = []
    inf.add_handler(HandlerFuncs(delete=deleted.append))
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        tg.cancel_scope.cancel()
    await client.delete(PODTEMPLATES, "d0", namespace)  # missed while stopped
    await anyio.to_thread.run_sync(control_plane.compact)
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)  # 410 → relist: d0's delete is inferred
        with anyio.fail_after(30):
            while not deleted:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        await client.delete(PODTEMPLATES, "d1", namespace)  # seen by the watch
        with anyio.fail_after(30):
            while len(deleted) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    inferred, watched = deleted
    assert isinstance(inferred, DeletedFinalStateUnknown)
    assert inferred.key == ObjectKey(namespace, "d0")
    assert inferred["metadata"]["name"] == "d0"  # the last state known, readable as usual
    assert not isinstance(watched, DeletedFinalStateUnknown)
    assert watched["metadata"]["name"] == "d1"


async def test_an_idle_watch_is_reopened_at_once_not_after_a_backoff(client: Client, namespace: str) -> None:
    # The watchdog closes the quiet watch after 1.5 s; a 60 s backoff would hold the next event.
    inf = Informer(
        client,
        CONFIGMAPS,
        InformerOptions(namespace=namespace, idle_timeout=1.5, backoff_initial=60, backoff_max=60),
    )
    mirror = Mirror()
    inf.add_handler(mirror.handler())
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        watches = client.requests[("GET", 200)]
        with anyio.fail_after(20):  # the watchdog fired and a new watch was opened
            while client.requests[("GET", 200)] < watches + 2:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await client.create(CONFIGMAPS, configmap(namespace, "after-idle", "x"))
        with anyio.fail_after(20):
            while (namespace, "after-idle") not in {tuple(k) for k in mirror.objects}:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert inf.relists == 1


async def test_a_transient_watchlist_failure_does_not_disable_watchlist(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    await client.create(CONFIGMAPS, configmap(namespace, "w", "x"))
    inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=namespace, backoff_max=1.0))
    assert control_plane.apiserver is not None
    await anyio.to_thread.run_sync(lambda: control_plane.apiserver.stop(timeout=20))  # type: ignore[union-attr]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(inf.run)
            with anyio.fail_after(20):  # WatchList (and the LIST fallback) refused: connection
                while client.requests[("GET", 0)] < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            await anyio.to_thread.run_sync(control_plane._start_apiserver)
            with anyio.fail_after(60):
                await inf.wait_for_sync()
            tg.cancel_scope.cancel()
    finally:
        if control_plane.apiserver is None or not control_plane.apiserver.alive():
            await anyio.to_thread.run_sync(control_plane._start_apiserver)
    assert inf.uses_watch_list  # a refused connection says nothing about the server's features
    assert inf.store.get((namespace, "w")) is not None


async def test_an_rv_0_list_is_paginated(client: Client, namespace: str) -> None:
    for i in range(7):
        await client.create(PODTEMPLATES, podtemplate(namespace, f"p{i}", "a"))
    # podtemplates have no watch cache here: a LIST with a limit is paginated by etcd.
    inf = Informer(client, PODTEMPLATES, InformerOptions(namespace=namespace, watch_list=False, page_size=3))
    before = client.requests[("GET", 200)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        with anyio.fail_after(30):
            await inf.wait_for_sync()
        tg.cancel_scope.cancel()
    assert client.requests[("GET", 200)] - before >= 3  # 3 pages of 3, 3 and 1 (and the watch)
    assert len(inf.store) == 7
