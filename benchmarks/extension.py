"""The extension hook at 1,000 routes: what Envoy Gateway waits for in one translation.

Envoy Gateway calls ``PostClusterModify`` once per HTTPRoute rule whose backendRefs name a
TailscaleEndpoints, one after another, on its translation path. This builds 1,000 such requests
(a cluster as Envoy Gateway builds it, and the TailscaleEndpoints as Kubernetes JSON with the
fields an informer adds) and measures:

hook_p50_us / hook_p99_us: the pure function (``tsgw.extension.post_cluster_modify``), per call;
hook_cpu_total_ms: process CPU time for all 1,000;
rpc_p50_us / rpc_p99_us: the whole RPC over a real gRPC channel on loopback (grpclib client and
server in this one process, so both sides' work is counted, one call at a time as Envoy
Gateway makes them);
eg_translate_ms_with / eg_translate_ms_without: Envoy Gateway's own translation time with and
without the extension — not measured yet (null).

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import anyio
import orjson
from envoy.config.cluster.v3 import cluster_pb2
from grpclib.client import Channel, UnaryUnaryMethod

from tsgw import api
from tsgw.extension import SERVICE, ExtensionOptions, ExtensionService, post_cluster_modify
from tsgw.extension import contexts as ctx
from tsgw.extension import messages as pb


def tailscale_endpoints(i: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": api.API_VERSION,
            "kind": "TailscaleEndpoints",
            "metadata": {
                "name": f"db-{i}",
                "namespace": "apps",
                "uid": f"00000000-0000-0000-0000-{i:012d}",
                "resourceVersion": str(1000 + i),
                "generation": 1,
                "creationTimestamp": "2026-12-01T00:00:00Z",
                "labels": {"app": f"db-{i}"},
            },
            "spec": {
                "tailnetRef": {"name": "corp"},
                "targets": [
                    {
                        "name": f"t{j}",
                        "address": f"100.64.{i % 250}.{j + 1}",
                        "ports": [{"port": 5432}, {"port": 80, "protocol": "HTTP"}],
                        "weight": 1 + j,
                        "priority": j,
                    }
                    for j in range(3)
                ],
            },
            "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]},
        }
    )


def requests(n: int) -> list[pb.PostClusterModifyRequest]:
    out = []
    for i in range(n):
        cluster = cluster_pb2.Cluster(name=f"httproute/apps/web-{i}/rule/0", type=cluster_pb2.Cluster.EDS)
        cluster.eds_cluster_config.eds_config.ads.SetInParent()
        cluster.connect_timeout.FromSeconds(10)
        context = ctx.PostClusterExtensionContext(
            backend_extension_resources=[ctx.ExtensionResource(unstructured_bytes=tailscale_endpoints(i))]
        )
        out.append(pb.PostClusterModifyRequest(cluster=cluster, post_cluster_context=context))
    return out


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else values[0]


async def rpc_times(reqs: list[pb.PostClusterModifyRequest]) -> list[float]:
    service = ExtensionService()
    times: list[float] = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(service.serve, "127.0.0.1", 0)
        channel = Channel("127.0.0.1", port)
        method: UnaryUnaryMethod[Any, Any] = UnaryUnaryMethod(
            channel,
            f"/{SERVICE}/PostClusterModify",
            pb.PostClusterModifyRequest,
            pb.PostClusterModifyResponse,
        )
        try:
            with anyio.fail_after(120):
                await method(reqs[0])  # the connection
                for r in reqs:
                    t0 = time.perf_counter()
                    answer = await method(r)
                    times.append(time.perf_counter() - t0)
                    assert answer.cluster.type == cluster_pb2.Cluster.STRICT_DNS
        finally:
            channel.close()
            tg.cancel_scope.cancel()
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="just bench extension")
    parser.add_argument("--routes", type=int, default=1000)
    args = parser.parse_args(argv)
    reqs = requests(args.routes)
    opts = ExtensionOptions()
    resources = [
        [r.unstructured_bytes for r in q.post_cluster_context.backend_extension_resources] for q in reqs
    ]
    for q, res in zip(reqs[:50], resources, strict=False):  # warm up
        post_cluster_modify(q.cluster, res, opts)
    hook: list[float] = []
    cpu0 = time.process_time()
    for q, res in zip(reqs, resources, strict=True):
        t0 = time.perf_counter()
        answer = post_cluster_modify(q.cluster, res, opts)
        hook.append(time.perf_counter() - t0)
        assert answer.cluster is not None
    cpu_ms = (time.process_time() - cpu0) * 1000
    rpc = anyio.run(rpc_times, reqs)
    result = {
        "bench": "extension",
        "routes": args.routes,
        "hook_p50_us": round(quantile(hook, 0.5) * 1e6, 1),
        "hook_p99_us": round(quantile(hook, 0.99) * 1e6, 1),
        "hook_cpu_total_ms": round(cpu_ms, 1),
        "rpc_p50_us": round(quantile(rpc, 0.5) * 1e6, 1),
        "rpc_p99_us": round(quantile(rpc, 0.99) * 1e6, 1),
        "eg_translate_ms_with": None,
        "eg_translate_ms_without": None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0
