"""Reconcile throughput: 1,000 Widgets already stored; each needs one owned ConfigMap applied and
Ready set. tsgw against controller-runtime and the API server's own write limit, same run.

For each worker count (``--workers``, default 4 and 16) and each contender, a fresh etcd +
kube-apiserver (the test fixture's ControlPlane) gets the Widget CRD and ``--objects`` Widgets
*before* the clock starts; then the contender runs in its own process:

* ``tsgw``: a ``tsgw.kube`` Manager (GenerationChanged on the Widgets, Owns ConfigMaps,
  ``max_concurrent_reconciles`` = workers) whose reconciler reads both caches, server-side
  applies the ConfigMap when it differs, and replaces the status when Ready or
  observedGeneration is not yet set;
* ``controller_runtime``: controller-runtime (benchmarks/clientgo/cmd/reconcile, pinned in its
  go.mod and tools/versions.toml) with the same predicates, reconciler and worker count;
* ``writer``: the bare writer, Go, the same two writes per Widget (SSA the ConfigMap, PUT the
  status) from ``workers`` goroutines and nothing else, the Widgets listed before its clock.

``converge_s``: from the controller's start (the manager, before its informers list) until every
Widget in its cache is Ready — the same definition for both controllers; tsgw also reports
``idle_s`` (its work queue drained too). ``writes_per_object``: non-GET requests the
contender sent after its clock started, per Widget (``conflicts_per_object``: those answered
409, a status written from a Widget the cache had not yet updated); ``reconciles_per_object`` up to
convergence; ``reconciles_after_converge`` over the next ``--settle`` seconds.

``goals`` (issue 18), per worker count W: ``converge_vs_controller_runtime_at_W`` (theirs / ours,
≥ 1 is the goal) and ``converge_vs_writer_at_W`` (ours / the writer's, ≤ 1.2 is the goal),
``two_writes_per_object_at_W``, ``no_reconciles_after_converge_at_W``.

Usage: ``just bench reconcile [--objects N] [--workers 4,16] [--settle S]``. One JSON line last.
"""

from __future__ import annotations

import argparse
import copy
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
GROUP = "bench.tsgw.io"
CONTENDERS = ("tsgw", "controller_runtime", "writer")


async def _seed(kubeconfig: str, n: int) -> None:
    """The namespace, the Widget CRD and ``n`` Widgets (``spec.size`` = index), no status."""
    from tests.support.widgets import install_widgets
    from tsgw.kube import NAMESPACES, Client, ClientOptions

    async with await Client.from_kubeconfig(
        kubeconfig, options=ClientOptions(field_manager="bench")
    ) as admin:
        await admin.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        widgets = await install_widgets(admin, GROUP)
        limiter = anyio.CapacityLimiter(32)

        async def create(i: int) -> None:
            async with limiter:
                await admin.create(
                    widgets,
                    {
                        "apiVersion": widgets.api_version,
                        "kind": "Widget",
                        "metadata": {"name": f"w-{i:04d}", "namespace": NAMESPACE},
                        "spec": {"size": i},
                    },
                )

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(create, i)


async def _tsgw(kubeconfig: str, n: int, workers: int, settle: float) -> dict[str, Any]:
    from tests.support.widgets import widget_crd
    from tsgw.kube import (
        CONFIGMAPS,
        Client,
        ClientOptions,
        ControllerOptions,
        GenerationChanged,
        Manager,
        Request,
        Result,
        controller_managed_by,
        is_condition_true,
        owner_reference,
        set_condition,
    )

    widgets, _ = widget_crd(GROUP)
    async with await Client.from_kubeconfig(
        kubeconfig, options=ClientOptions(field_manager="widget-controller")
    ) as client:
        mgr = Manager(client)
        wcache = mgr.informer(widgets).store
        ccache = mgr.informer(CONFIGMAPS).store

        class WidgetReconciler:
            async def reconcile(self, req: Request) -> Result | None:
                obj = wcache.get(req)
                if obj is None:
                    return None
                data = {"size": str(obj["spec"]["size"])}
                have = ccache.get((req.namespace, f"{req.name}-config"))
                if have is None or have.get("data") != data:
                    await client.apply(
                        CONFIGMAPS,
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {
                                "name": f"{req.name}-config",
                                "namespace": req.namespace,
                                "ownerReferences": [owner_reference(obj)],
                            },
                            "data": data,
                        },
                    )
                status = copy.deepcopy(obj.get("status") or {})
                gen = obj["metadata"]["generation"]
                changed = set_condition(
                    status.setdefault("conditions", []),
                    "Ready",
                    "True",
                    "ConfigApplied",
                    observed_generation=gen,
                )
                if changed or status.get("observedGeneration") != gen:
                    status["observedGeneration"] = gen
                    await client.replace_status(widgets, {**obj, "status": status})
                return None

        ctrl = (
            controller_managed_by(mgr)
            .for_(widgets, GenerationChanged())
            .owns(CONFIGMAPS)
            .with_options(ControllerOptions(max_concurrent_reconciles=workers))
            .complete(WidgetReconciler())
        )
        async with anyio.create_task_group() as tg:
            writes_before = client.writes()
            t0 = time.perf_counter()
            tg.start_soon(mgr.run)
            with anyio.fail_after(600):
                while sum(1 for w in wcache.list() if is_condition_true(w, "Ready")) < n:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                converge_s = time.perf_counter() - t0
                writes = client.writes() - writes_before
                conflicts = sum(n for (_, status), n in client.requests.items() if status == 409)
                reconciles_at_ready = ctrl.reconciles
                # idle: every Widget Ready *and* nothing left to do (events still in flight at
                # the last Ready, e.g. owned ConfigMap creations, drained).
                q = ctrl.queue
                while len(q) or q.processing or q.delayed:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                idle_s = time.perf_counter() - t0
            reconciles_at = ctrl.reconciles
            await anyio.sleep(settle)
            after = ctrl.reconciles - reconciles_at
            mgr.stop()
    return {
        "converge_s": round(converge_s, 2),
        "idle_s": round(idle_s, 2),
        "writes_per_object": round(writes / n, 2),
        "conflicts_per_object": round(conflicts / n, 2),
        "reconciles_per_object": round(reconciles_at_ready / n, 2),
        "reconciles_between_ready_and_idle": reconciles_at - reconciles_at_ready,
        "reconciles_after_converge": after,
        "settle_s": settle,
    }


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The child's last stdout line as JSON, or ``{"error": its last stderr line}``."""
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in d.items()}


def _run(
    binary: Path, contender: str, kubeconfig: str, n: int, workers: int, settle: float
) -> dict[str, Any]:
    if contender == "tsgw":
        # -m benchmarks.reconcile, not the runner: the runner would save the child's line as the result
        argv = [sys.executable, "-m", "benchmarks.reconcile", "--child", "--kubeconfig", kubeconfig]
        argv += ["--objects", str(n), "--workers", str(workers), "--settle", str(settle)]
    else:
        mode = "controller" if contender == "controller_runtime" else "writer"
        argv = [str(binary), "-mode", mode, "-kubeconfig", kubeconfig, "-group", GROUP]
        argv += [
            "-namespace",
            NAMESPACE,
            "-objects",
            str(n),
            "-workers",
            str(workers),
            "-settle",
            f"{settle}s",
        ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=os.environ)
    return _rounded(_last_json(proc))


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def goals_of(by_workers: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Issue 18's reconcile goals per worker count (see the module docstring); a failed
    contender misses every goal that needs its figure."""
    goals: dict[str, Any] = {}
    for w, r in by_workers.items():
        ours = _num(r.get("tsgw", {}), "converge_s")
        cr = _num(r.get("controller_runtime", {}), "converge_s")
        writer = _num(r.get("writer", {}), "converge_s")
        vs_cr = round(cr / ours, 2) if cr is not None and ours else None
        vs_writer = round(ours / writer, 2) if ours is not None and writer else None
        goals[f"converge_vs_controller_runtime_at_{w}"] = vs_cr
        goals[f"converge_at_or_below_controller_runtime_at_{w}"] = vs_cr is not None and vs_cr >= 1
        goals[f"converge_vs_writer_at_{w}"] = vs_writer
        goals[f"converge_within_1_2x_of_writer_at_{w}"] = vs_writer is not None and vs_writer <= 1.2
        goals[f"two_writes_per_object_at_{w}"] = _num(r.get("tsgw", {}), "writes_per_object") == 2.0
        goals[f"no_reconciles_after_converge_at_{w}"] = (
            r.get("tsgw", {}).get("reconciles_after_converge") == 0
        )
    return goals


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks reconcile")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--workers", default="4,16", help="comma-separated worker counts")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(list(argv))

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    if args.child:
        result = anyio.run(_tsgw, args.kubeconfig, args.objects, int(args.workers), args.settle)
        print(json.dumps(result))
        return 0

    from benchmarks._k8s import CLIENTGO_DIR, clientgo_bin, clientgo_version
    from tests.support.controlplane import ControlPlane

    binary = clientgo_bin("reconcile")  # built once, before any clock starts
    by_workers: dict[str, dict[str, dict[str, Any]]] = {}
    for workers in (int(w) for w in args.workers.split(",")):
        r: dict[str, dict[str, Any]] = {}
        for contender in args.contenders.split(","):
            with ControlPlane() as cp:  # a fresh API server each: no contender inherits another's etcd
                kubeconfig = str(cp.kubeconfig)
                anyio.run(_seed, kubeconfig, args.objects)
                r[contender] = _run(binary, contender, kubeconfig, args.objects, workers, args.settle)
            print(f"{workers} workers, {contender}: {json.dumps(r[contender])}", file=sys.stderr)
        by_workers[str(workers)] = r
    gomod = (CLIENTGO_DIR / "go.mod").read_text()
    print(
        json.dumps(
            {
                "bench": "reconcile",
                "objects": args.objects,
                "workers": by_workers,
                "versions": {
                    "client-go": clientgo_version(gomod),
                    "controller-runtime": _module_version(gomod, "sigs.k8s.io/controller-runtime"),
                },
                "goals": goals_of(by_workers),
            }
        )
    )
    sys.stdout.flush()
    return 0


def _module_version(gomod: str, module: str) -> str:
    for line in gomod.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
    return "unknown"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
