"""Informer initial sync of ConfigMaps (~2 KB) from a real kube-apiserver, against client-go.

Seeds the objects into a fresh etcd + kube-apiserver (the test fixture's ControlPlane), then runs
each contender in its own process so memory is measured cleanly, all against the same API
server and the same objects in the same run:

* ``ours``: ``tsgw.kube.Informer`` with its defaults (WatchList bootstrap, orjson,
  managedFields stripped, gc.freeze); ``ours_list`` the same with a plain LIST bootstrap
  (``list_bootstrap`` in the JSON);
* ``client_go``: client-go's SharedIndexInformer (benchmarks/clientgo/cmd/informer, client-go
  pinned in its go.mod and tools/versions.toml) in its v0.36 default mode, WatchList
  (``KUBE_FEATURE_WatchListClient=true``); ``client_go_list`` with that gate off (paged LIST,
  then watch); ``client_go_strip`` WatchList plus a transform dropping managedFields, as tsgw
  does by default (controller-runtime's ``TransformStripManagedFields``);
* at 10,000 objects or fewer also ``naive_watch`` (kubernetes-asyncio's typed list into a
  dict, then its Watch stream) and ``kopf`` (a no-op ``@kopf.on.event`` handler).

Figures per contender: seconds from start to synced; memory per object — for Python the
resident set (RSS after − RSS before, after ``malloc_trim``), for Go the heap in use after a
forced GC (``HeapAlloc``; Go's RSS, which carries the collector's headroom, is reported beside
it); for tsgw the longest event-loop stall after sync while the process allocates.

``goals`` (issue 18), per size N: ``sync_at_or_below_client_go_at_N`` and
``memory_at_or_below_client_go_at_N`` compare tsgw's default with client-go's best mode on that
axis (the lowest sync time / heap per object of its three); ``*_vs_client_go_at_N`` is that
client-go figure divided by ours (> 1: tsgw ahead); ``loop_stall_under_20ms_at_N``.

Each contender runs ``--repeats`` times (default 3, interleaved) and each figure is the median.

Usage: ``just bench informer [--objects N] [--full] [--repeats R]`` (``--full``: 10,000 and 50,000 objects,
the larger size seeded on top of the smaller in the same API server). One JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

NAMESPACE = "bench"


def _payload(i: int) -> str:
    base = f"{i:08d}-" + "abcdefghijklmnopqrstuvwxyz0123456789" * 60
    return base[:2000]


async def _seed(kubeconfig: str, n: int, start: int = 0) -> None:
    """Create ConfigMaps ``cm-<start>`` … ``cm-<n-1>`` (and the namespace when ``start`` is 0)."""
    from tsgw.kube import CONFIGMAPS, NAMESPACES, Client, ClientOptions

    async with await Client.from_kubeconfig(kubeconfig, options=ClientOptions(field_manager="seed")) as c:
        if start == 0:
            await c.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            )
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
            for i in range(start, n):
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
        [  # -m benchmarks.informer, not the runner: the runner would save the child's line as the result
            sys.executable,
            "-m",
            "benchmarks.informer",
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
    return _last_json(proc)


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The child's last stdout line as JSON, or ``{"error": its last stderr line}``."""
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# client-go configurations: (WatchListClient gate, strip managedFields)
CLIENT_GO_MODES: dict[str, tuple[bool, bool]] = {
    "client_go": (True, False),
    "client_go_list": (False, False),
    "client_go_strip": (True, True),
}


def _run_client_go(binary: Path, kubeconfig: str, n: int, watch_list: bool, strip: bool) -> dict[str, Any]:
    env = {**os.environ, "KUBE_FEATURE_WatchListClient": "true" if watch_list else "false"}
    proc = subprocess.run(
        [
            str(binary),
            "-kubeconfig",
            kubeconfig,
            "-namespace",
            NAMESPACE,
            "-objects",
            str(n),
            f"-strip-managed-fields={'true' if strip else 'false'}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    return _last_json(proc)


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ratio(theirs: float | None, ours: float | None) -> float | None:
    return round(theirs / ours, 2) if theirs is not None and ours else None


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One contender's figures over repeated runs: the median of each number (upper median),
    the other fields of the first run, and ``sync_s_runs``; any failed run makes it a failure."""
    failed = [r for r in runs if "error" in r]
    if failed or not runs:
        return failed[0] if failed else {"error": "no runs"}
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = sorted(r[key] for r in runs)[len(runs) // 2]
    out["sync_s_runs"] = [r["sync_s"] for r in runs]
    return out


def goals_of(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 18's informer goals per size from one run's figures (see the module docstring).

    A contender that failed (``{"error": ...}``) misses every goal that needs its figure."""
    goals: dict[str, Any] = {}
    for n, r in sizes.items():
        ours = r.get("ours", {})
        peers = [r.get(m, {}) for m in CLIENT_GO_MODES]
        best_sync = min((v for p in peers if (v := _num(p, "sync_s")) is not None), default=None)
        best_mem = min((v for p in peers if (v := _num(p, "heap_kib_per_object")) is not None), default=None)
        our_sync, our_mem, stall = (
            _num(ours, "sync_s"),
            _num(ours, "kib_per_object"),
            _num(ours, "max_stall_ms"),
        )
        goals[f"sync_vs_client_go_at_{n}"] = _ratio(best_sync, our_sync)
        goals[f"sync_at_or_below_client_go_at_{n}"] = (
            our_sync is not None and best_sync is not None and our_sync <= best_sync
        )
        goals[f"memory_vs_client_go_at_{n}"] = _ratio(best_mem, our_mem)
        goals[f"memory_at_or_below_client_go_at_{n}"] = (
            our_mem is not None and best_mem is not None and our_mem <= best_mem
        )
        goals[f"loop_stall_under_20ms_at_{n}"] = stall is not None and stall < 20
    return goals


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks informer")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--full", action="store_true", help="10,000 and 50,000 objects")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender and size (medians)")
    parser.add_argument("--child")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(list(argv))
    if args.child:
        _child(args.child, args.kubeconfig, args.objects)
        return 0

    from benchmarks._k8s import CLIENTGO_DIR, clientgo_bin, clientgo_version
    from tests.support.controlplane import ControlPlane

    counts = [10_000, 50_000] if args.full else [args.objects]
    binary = clientgo_bin("informer")  # built once, before any clock starts
    sizes: dict[str, dict[str, Any]] = {}
    peers: dict[str, Any] = {}
    with ControlPlane() as cp:
        kubeconfig = str(cp.kubeconfig)
        seeded = 0
        for n in counts:
            t = time.perf_counter()
            anyio.run(_seed, kubeconfig, n, seeded)
            print(
                f"seeded {n - seeded} ConfigMaps ({n} in all) in {time.perf_counter() - t:.1f} s",
                file=sys.stderr,
            )
            seeded = n
            runs: dict[str, list[dict[str, Any]]] = {
                name: [] for name in ("ours", "ours_list", *CLIENT_GO_MODES)
            }
            for _ in range(args.repeats):  # interleaved, so a burst of load hits every contender alike
                runs["ours"].append(_run_child("ours", kubeconfig, n))
                runs["ours_list"].append(_run_child("ours_list", kubeconfig, n))
                for mode, (watch_list, strip) in CLIENT_GO_MODES.items():
                    runs[mode].append(_run_client_go(binary, kubeconfig, n, watch_list, strip))
            r: dict[str, Any] = {name: median_run(rs) for name, rs in runs.items()}
            print(f"{n}: {json.dumps(r)}", file=sys.stderr)
            sizes[str(n)] = r
            if n == counts[0] and n <= 10_000:
                peers["naive_watch"] = _run_child("naive_watch", kubeconfig, n)
                peers["kopf"] = _run_child("kopf", kubeconfig, n)
    first = sizes[str(counts[0])]
    ours, ours_list = first["ours"], first["ours_list"]
    print(
        json.dumps(
            {
                "bench": "informer",
                "objects": counts[0],
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
                "peers": {**peers, **{m: first[m] for m in CLIENT_GO_MODES}},
                "sizes": sizes,
                "versions": {"client-go": clientgo_version((CLIENTGO_DIR / "go.mod").read_text())},
                "goals": goals_of(sizes),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
