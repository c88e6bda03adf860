"""Translation at scale: 1,000 TailscaleEndpoints (3 targets each) and 1,000 TailscaleServices
with HTTP routing rules, with their Services and EndpointSlices, into per-group xDS snapshots
(tsgw.xds.Snapshot: encoded and consistency-checked) and owned objects.

cold_s: the first translation in a fresh Translator; incremental_ms: median re-translation after
changing one object (its resourceVersion changes, as the informer would deliver it), with the
snapshots of the changed groups rebuilt; *_cpu_*: the same in process CPU time, which a machine
shared with other work distorts less than wall time (load_avg_1m says how shared it was);
peak_mib: peak traced Python memory of the cold run (tracemalloc, a separate run);
standalone_cold_s / standalone_cold_cpu_s: a cold run as standalone mode makes it (translation and
snapshots, no owned Kubernetes objects: the pipeline computes those only when a controller reads
them), in another fresh Translator. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import time
import tracemalloc
from typing import Any

from tsgw.translate import Device, Inputs, TailnetFacts, Translator
from tsgw.xds import Snapshot


def make_inputs(n: int) -> Inputs:
    devices = tuple(
        Device(
            f"dev-{i}.tail1234.ts.net", (f"100.64.{i // 250}.{i % 250 + 1}",), ("tag:db",) if i % 2 else ()
        )
        for i in range(3 * n)
    )
    facts = TailnetFacts(
        "tail1234.ts.net", devices, {f"svc:api-{i}": (f"100.100.{i // 250}.{i % 250 + 1}",) for i in range(n)}
    )
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.tailscale.com/v1alpha1",
            "kind": "TailscaleTailnet",
            "metadata": {"name": "corp", "uid": "t", "resourceVersion": "1"},
            "spec": {"credentials": {"secretRef": {"namespace": "tsgw-system", "name": "ts"}, "oauth": {}}},
        }
    ]
    services: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    for i in range(n):
        ns = f"ns-{i % 50}"
        objects.append(
            {
                "apiVersion": "gateway.tailscale.com/v1alpha1",
                "kind": "TailscaleEndpoints",
                "metadata": {"name": f"ep-{i}", "namespace": ns, "uid": f"ep-{i}", "resourceVersion": "1"},
                "spec": {
                    "tailnetRef": {"name": "corp"},
                    "targets": [
                        {"name": "a", "address": f"dev-{3 * i}", "ports": [{"port": 5432}]},
                        {
                            "name": "b",
                            "address": f"100.64.{(3 * i + 1) // 250}.{(3 * i + 1) % 250 + 1}",
                            "ports": [{"port": 5432}],
                            "priority": 1,
                        },
                        {
                            "name": "c",
                            "service": f"svc:api-{i}",
                            "ports": [{"port": 8080, "protocol": "HTTP"}],
                        },
                    ],
                },
            }
        )
        objects.append(
            {
                "apiVersion": "gateway.tailscale.com/v1alpha1",
                "kind": "TailscaleServices",
                "metadata": {"name": f"web-{i}", "namespace": ns, "uid": f"web-{i}", "resourceVersion": "1"},
                "spec": {
                    "tailnetRef": {"name": "corp"},
                    "ports": [{"port": 80, "protocol": "HTTP", "targetPort": "http"}],
                    "backends": [{"service": f"web-{i}-v1"}, {"service": f"web-{i}-v2", "weight": 2}],
                    "http": {
                        "rules": [
                            {
                                "pathPrefix": "/api/",
                                "headers": [{"name": "x-canary", "value": "1"}],
                                "services": [f"web-{i}-v2"],
                            },
                            {"pathPrefix": "/static/", "services": [f"web-{i}-v1"], "timeout": "5s"},
                            {"pathPrefix": "/"},
                        ]
                    },
                },
            }
        )
        for v in ("v1", "v2"):
            name = f"web-{i}-{v}"
            services.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
                    "spec": {"ports": [{"name": "http", "port": 8080}]},
                }
            )
            slices.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{name}-x",
                        "namespace": ns,
                        "labels": {"kubernetes.io/service-name": name},
                        "resourceVersion": "1",
                    },
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080}],
                    "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.{k}"]} for k in (1, 2, 3)],
                }
            )
    return Inputs(objects=objects, services=services, endpoint_slices=slices, tailnets={"corp": facts})


def run(
    translator: Translator, inputs: Inputs, split: list[float] | None = None, *, owned_objects: bool = True
) -> int:
    """Translate, then build every group's snapshot (and, with `owned_objects`, read every
    group's owned objects, which builds them); `split` gets the CPU seconds of each."""
    c0 = time.process_time()
    result = translator.translate(inputs)
    c1 = time.process_time()
    for key, res in result.xds.items():
        Snapshot(res.by_type(), version=f"{key[0]}/{key[1]}")
    if split is not None:
        split[:] = [c1 - c0, time.process_time() - c1]
    return sum(len(v) for v in result.objects.values()) if owned_objects else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench translate")
    p.add_argument("--n", type=int, default=1000, help="objects of each kind (default 1000)")
    p.add_argument("--changes", type=int, default=20, help="one-object changes to time (default 20)")
    args = p.parse_args(argv)
    inputs = make_inputs(args.n)
    gc.collect()

    translator = Translator()
    t0, c0 = time.perf_counter(), time.process_time()
    split: list[float] = []
    owned = run(translator, inputs, split)
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0

    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    run(Translator(), inputs, owned_objects=False)
    standalone_cold, standalone_cold_cpu = time.perf_counter() - t0, time.process_time() - c0

    samples: list[float] = []
    cpu_samples: list[float] = []
    objects = list(inputs.objects)
    for k in range(args.changes):
        idx = 1 + (k * 97) % (len(objects) - 1)
        changed = copy.deepcopy(objects[idx])
        changed["metadata"]["resourceVersion"] = str(2 + k)
        if changed["kind"] == "TailscaleEndpoints":
            changed["spec"]["targets"][0]["weight"] = 2 + k
        else:
            changed["spec"]["backends"][0]["weight"] = 2 + k
        objects[idx] = changed
        step = Inputs(
            objects=list(objects),
            services=inputs.services,
            endpoint_slices=inputs.endpoint_slices,
            tailnets=inputs.tailnets,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        run_incremental(translator, step)
        samples.append((time.perf_counter() - t0) * 1000)
        cpu_samples.append((time.process_time() - c0) * 1000)

    gc.collect()
    tracemalloc.start()
    run(Translator(), inputs)
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{args.n} TailscaleEndpoints + {args.n} TailscaleServices -> {owned} owned objects")
    print(
        json.dumps(
            {
                "bench": "translate",
                "objects": len(inputs.objects) - 1,
                "groups": 2 * args.n,
                "owned_objects": owned,
                "cold_s": round(cold, 3),
                "cold_cpu_s": round(cold_cpu, 3),
                "cold_translate_cpu_s": round(split[0], 3),
                "cold_snapshots_cpu_s": round(split[1], 3),
                "standalone_cold_s": round(standalone_cold, 3),
                "standalone_cold_cpu_s": round(standalone_cold_cpu, 3),
                "incremental_ms": round(statistics.median(samples), 2),
                "incremental_p90_ms": round(sorted(samples)[int(0.9 * (len(samples) - 1))], 2),
                "incremental_cpu_ms": round(statistics.median(cpu_samples), 2),
                "load_avg_1m": round(os.getloadavg()[0], 1),
                "peak_mib": round(peak / 2**20, 1),
            }
        )
    )
    return 0


def run_incremental(translator: Translator, inputs: Inputs) -> None:
    """Re-translate, rebuild only the snapshots of groups whose resources changed, and read their
    owned objects as the operator's controller would (which builds them)."""
    result = translator.translate(inputs)
    for key in result.changed:
        Snapshot(result.xds[key].by_type(), version=f"{key[0]}/{key[1]}")
        result.objects.get(key)
