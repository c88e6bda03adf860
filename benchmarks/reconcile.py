"""1,000 custom objects created at once; each reconcile applies one owned ConfigMap and sets Ready.

Runs a ``tsgw.kube`` Manager (16 workers, GenerationChanged on the Widgets, Owns ConfigMaps)
against a fresh etcd + kube-apiserver. Figures: seconds from the first create until every
Widget is Ready in the cache and the work queue is idle (``converge_s``; ``all_ready_s`` is the
moment the last Ready appeared), API writes the controller made per object (goal ≤ 3), and
reconciles in the ``--settle`` seconds after convergence (goal 0: no hot loop). One JSON line last.

Usage: ``python -m benchmarks reconcile [--objects N] [--settle S]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

NAMESPACE = "bench"


async def _run(kubeconfig: str, n: int, settle: float) -> dict[str, Any]:
    from tests.support.widgets import install_widgets, widget_crd
    from tsgw.kube import (
        CONFIGMAPS,
        NAMESPACES,
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

    widgets, _ = widget_crd("bench.tsgw.io")
    async with (
        await Client.from_kubeconfig(kubeconfig, options=ClientOptions(field_manager="bench")) as admin,
        await Client.from_kubeconfig(
            kubeconfig, options=ClientOptions(field_manager="widget-controller")
        ) as client,
    ):
        await admin.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        await install_widgets(admin, "bench.tsgw.io")

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
            .with_options(ControllerOptions(max_concurrent_reconciles=16))
            .complete(WidgetReconciler())
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(mgr.run)
            while not ctrl.started:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            writes_before = client.writes()
            t0 = time.perf_counter()
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

            async with anyio.create_task_group() as creators:
                for i in range(n):
                    creators.start_soon(create, i)
            while sum(1 for w in wcache.list() if is_condition_true(w, "Ready")) < n:  # noqa: ASYNC110
                await anyio.sleep(0.02)
            ready_s = time.perf_counter() - t0
            reconciles_at_ready = ctrl.reconciles
            # Converged: every Widget Ready *and* the controller has nothing left to do (events
            # that were still in flight at the last Ready, e.g. owned ConfigMap creations, drained).
            q = ctrl.queue
            while len(q) or q.processing or q.delayed:  # noqa: ASYNC110
                await anyio.sleep(0.02)
            converge_s = time.perf_counter() - t0
            writes = client.writes() - writes_before
            reconciles_at = ctrl.reconciles
            await anyio.sleep(settle)
            after = ctrl.reconciles - reconciles_at
            mgr.stop()
    return {
        "bench": "reconcile",
        "objects": n,
        "converge_s": round(converge_s, 2),
        "all_ready_s": round(ready_s, 2),
        "reconciles_between_ready_and_idle": reconciles_at - reconciles_at_ready,
        "writes_per_object": round(writes / n, 2),
        "reconciles_per_object": round(reconciles_at / n, 2),
        "reconciles_after_converge": after,
        "settle_s": settle,
    }


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks reconcile")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=30.0)
    args = parser.parse_args(list(argv))

    import structlog

    from tests.support.controlplane import ControlPlane

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    with ControlPlane() as cp:
        result = anyio.run(_run, str(cp.kubeconfig), args.objects, args.settle)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0
