"""Informer initial sync of 10,000 ConfigMaps (~2 KB) from a real kube-apiserver, with peers.

Seeds the objects into a fresh etcd + kube-apiserver (the test fixture's ControlPlane), then runs
each contender in its own Python process so memory is measured cleanly:

* ``ours``: ``tsgw.kube.Informer`` (WatchList bootstrap, orjson, managedFields stripped,
  gc.freeze); ``ours_list`` the same with a plain LIST bootstrap (``list_bootstrap`` in the JSON);
* ``naive_watch``: kubernetes-asyncio's typed ``list_namespaced_config_map`` into a dict, then
  its ``Watch`` stream keeping the dict current (the cache people build by hand);
* ``kopf``: a kopf operator with a no-op ``@kopf.on.event`` handler, synced when the handler has
  seen every object.

Per contender: seconds from start to synced, resident memory per object (RSS after − RSS
before, divided by the count), and the longest event-loop stall after sync while the process
allocates (wall clock; in thread CPU time, which leaves out the OS preempting us on a busy
machine; and the longest single garbage collection). Prints one JSON line last.

Usage: ``python -m benchmarks informer [--objects N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

NAMESPACE = "bench"


def _payload(i: int) -> str:
    base = f"{i:08d}-" + "abcdefghijklmnopqrstuvwxyz0123456789" * 60
    return base[:2000]


async def _seed(kubeconfig: str, n: int) -> None:
    from tsgw.kube import CONFIGMAPS, NAMESPACES, Client, ClientOptions

    async with await Client.from_kubeconfig(kubeconfig, options=ClientOptions(field_manager="seed")) as c:
        await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        limiter = anyio.CapacityLimiter(32)

        async def one(i: int) -> None:
            async with limiter:
                await c.create(
                    CONFIGMAPS,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": f"cm-{i:05d}",
                            "namespace": NAMESPACE,
                            "labels": {"app": "bench", "shard": str(i % 16)},
                        },
                        "data": {"payload": _payload(i)},
                    },
                )

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)


# -- contenders (each runs in its own process) -----------------------------------------------


async def _ours_list(kubeconfig: str, n: int) -> dict[str, Any]:
    return await _ours(kubeconfig, n, watch_list=False)


async def _ours(kubeconfig: str, n: int, watch_list: bool = True) -> dict[str, Any]:
    from benchmarks._k8s import max_loop_stall, rss_bytes
    from tsgw.kube import CONFIGMAPS, Client, Informer, InformerOptions

    async with await Client.from_kubeconfig(kubeconfig) as client:
        await client.list(CONFIGMAPS, "default", limit=1)  # warm the connection and TLS, as peers do
        before = rss_bytes()
        inf = Informer(client, CONFIGMAPS, InformerOptions(namespace=NAMESPACE, watch_list=watch_list))
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            tg.start_soon(inf.run)
            await inf.wait_for_sync()
            sync_s = time.perf_counter() - t0
            assert len(inf.store) == n, len(inf.store)
            after = rss_bytes()
            stall = await max_loop_stall(3.0)
            tg.cancel_scope.cancel()
    return {
        "sync_s": round(sync_s, 3),
        "kib_per_object": round((after - before) / n / 1024, 2),
        "max_stall_ms": round(stall["wall"], 1),
        "max_stall_cpu_ms": round(stall["cpu"], 1),
        "max_gc_pause_ms": round(stall["gc"], 1),
        "watch_list": inf.uses_watch_list,
    }


async def _naive(kubeconfig: str, n: int) -> dict[str, Any]:
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config, watch

    from benchmarks._k8s import max_loop_stall, rss_bytes

    await config.load_kube_config(config_file=kubeconfig)
    async with k8s.ApiClient() as api:
        v1 = k8s.CoreV1Api(api)
        await v1.list_namespaced_config_map("default", limit=1)
        before = rss_bytes()
        t0 = time.perf_counter()
        listed = await v1.list_namespaced_config_map(NAMESPACE)
        cache = {o.metadata.name: o for o in listed.items}
        sync_s = time.perf_counter() - t0
        assert len(cache) == n, len(cache)
        rv = listed.metadata.resource_version

        async def keep_current() -> None:
            async with watch.Watch() as w:
                async for ev in w.stream(v1.list_namespaced_config_map, NAMESPACE, resource_version=rv):
                    obj = ev["object"]
                    if ev["type"] == "DELETED":
                        cache.pop(obj.metadata.name, None)
                    else:
                        cache[obj.metadata.name] = obj

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_current)
            await anyio.sleep(0.2)
            after = rss_bytes()
            stall = await max_loop_stall(3.0)
            tg.cancel_scope.cancel()
    return {
        "sync_s": round(sync_s, 3),
        "kib_per_object": round((after - before) / n / 1024, 2),
        "max_stall_ms": round(stall["wall"], 1),
        "max_stall_cpu_ms": round(stall["cpu"], 1),
        "max_gc_pause_ms": round(stall["gc"], 1),
    }


async def _kopf(kubeconfig: str, n: int) -> dict[str, Any]:
    import asyncio
    import logging

    import kopf

    from benchmarks._k8s import rss_bytes

    os.environ["KUBECONFIG"] = kubeconfig
    logging.getLogger("kopf").setLevel(logging.WARNING)
    seen: set[str] = set()
    synced = asyncio.Event()
    registry = kopf.OperatorRegistry()

    @kopf.on.event("", "v1", "configmaps", registry=registry)  # type: ignore[misc]
    def noop(name: str, **_: Any) -> None:
        seen.add(name)
        if len(seen) >= n:
            synced.set()

    @kopf.on.login(registry=registry)  # type: ignore[misc]
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_kubeconfig(**kwargs)

    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    stop = asyncio.Event()
    before = rss_bytes()
    t0 = time.perf_counter()
    task = asyncio.get_running_loop().create_task(
        kopf.operator(
            registry=registry, settings=settings, standalone=True, namespaces=[NAMESPACE], stop_flag=stop
        )
    )
    try:
        await asyncio.wait_for(synced.wait(), 600)
        sync_s = time.perf_counter() - t0
        after = rss_bytes()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return {"sync_s": round(sync_s, 3), "kib_per_object": round((after - before) / n / 1024, 2)}


_CONTENDERS = {"ours": _ours, "ours_list": _ours_list, "naive_watch": _naive, "kopf": _kopf}


def _child(name: str, kubeconfig: str, n: int) -> None:
    result = anyio.run(_CONTENDERS[name], kubeconfig, n)
    print(json.dumps(result))


def _run_child(name: str, kubeconfig: str, n: int) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "informer",
            "--child",
            name,
            "--kubeconfig",
            kubeconfig,
            "--objects",
            str(n),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks informer")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--child")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(list(argv))
    if args.child:
        _child(args.child, args.kubeconfig, args.objects)
        return 0

    from tests.support.controlplane import ControlPlane

    with ControlPlane() as cp:
        kubeconfig = str(cp.kubeconfig)
        t = time.perf_counter()
        anyio.run(_seed, kubeconfig, args.objects)
        print(f"seeded {args.objects} ConfigMaps in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        ours = _run_child("ours", kubeconfig, args.objects)
        ours_list = _run_child("ours_list", kubeconfig, args.objects)
        naive = _run_child("naive_watch", kubeconfig, args.objects)
        kopf_r = _run_child("kopf", kubeconfig, args.objects)
    print(
        json.dumps(
            {
                "bench": "informer",
                "objects": args.objects,
                "sync_s": ours.get("sync_s"),
                "kib_per_object": ours.get("kib_per_object"),
                "max_stall_ms": ours.get("max_stall_ms"),
                "max_stall_cpu_ms": ours.get("max_stall_cpu_ms"),
                "max_gc_pause_ms": ours.get("max_gc_pause_ms"),
                "watch_list": ours.get("watch_list"),
                "list_bootstrap": {
                    k: ours_list.get(k)
                    for k in ("sync_s", "kib_per_object", "max_stall_ms", "max_gc_pause_ms")
                },
                "peers": {"naive_watch": naive, "kopf": kopf_r},
            }
        )
    )
    return 0
