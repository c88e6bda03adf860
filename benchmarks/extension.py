"""The extension hook at 1,000 routes: what Envoy Gateway waits for in one translation.

Envoy Gateway calls ``PostClusterModify`` once per HTTPRoute rule whose backendRefs name a
TailscaleEndpoints, one after another, on its translation path. This builds 1,000 such requests
(a cluster as Envoy Gateway builds it, and the TailscaleEndpoints as Kubernetes JSON with the
fields an informer adds) and measures:

hook_p50_us / hook_p99_us: the pure function (``tsgw.extension.post_cluster_modify``), per call;
hook_cpu_total_ms: process CPU time for all 1,000;
rpc_p50_us / rpc_p99_us: the whole RPC over a real gRPC channel on loopback (grpclib client and
server in this one process, so both sides' work is counted, one call at a time as Envoy
Gateway makes them), each request seen for the first time; rpc_again_p50_us / _p99_us: the same
1,000 requests again, as Envoy Gateway repeats them on its next translations (answered from the
server's memo of answers by request bytes, ``tsgw/extension/_memo.py``);
route_hook_p50_us / route_hook_p99_us: ``tsgw.extension.post_route_modify`` per call, for 1,000
routes each targeted by a TailscaleRouteAccess (three rules, 18 addresses: what a policy with a
tag of 16 devices resolves to), as Envoy Gateway calls it once per route of such an HTTPRoute,
the first time it sees each object; route_hook_again_p50_us / _p99_us: the same calls again, as
in Envoy Gateway's next translations (the rules of an unchanged object are memoized);
listener_hook_p50_us: ``post_http_listener_modify`` on a listener with one HTTP connection
manager (called once per listener, not per route);
eg_translate_ms_with / eg_translate_ms_without: Envoy Gateway's own translation time (p50, ms)
with and without the extension, two real Envoy Gateways in the same run, with their max,
per-runner figures, sample counts and ratio (``benchmarks/_envoy_gateway.py`` says how;
``--eg-samples 0`` skips them); with ``--probe-translation-hook``, eg_translate_ms_translation:
a third Envoy Gateway with the Translation hook instead (one call carrying every cluster, echoed
by tsgw): the floor of one call per translation (docs/envoy-gateway.md); with
``--probe-service-path``, eg_translate_ms_service: the routes naming tsgw's Services instead.
``--sides`` runs only some of the Envoy Gateways (a sample costs each a reload of its ~3,000
objects, about a minute at 1,000 routes); ``--backend-ip`` gives the *without* and *service*
Backends IP endpoints, as a route to a Kubernetes Service gets (eg_backend_endpoints says which).

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from grpclib.client import Channel, UnaryUnaryMethod

from benchmarks import _envoy_gateway
from tsgw import api
from tsgw.extension import (
    ROUTE_ACCESS_KIND,
    SERVICE,
    ExtensionOptions,
    ExtensionService,
    post_cluster_modify,
    post_http_listener_modify,
    post_route_modify,
)
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


def route_access(i: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": api.API_VERSION,
            "kind": ROUTE_ACCESS_KIND,
            "metadata": {
                "name": f"web-{i}",
                "namespace": "apps",
                "uid": f"00000000-0000-0000-0001-{i:012d}",
                "resourceVersion": str(5000 + i),
                "generation": 2,
                "creationTimestamp": "2026-12-01T00:00:00Z",
            },
            "spec": {
                "policy": f"web-{i}",
                "targetRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": f"web-{i}"}
                ],
                "rules": [
                    {"action": "Deny", "cidrs": ["100.64.9.9/32"]},
                    {"action": "Allow", "cidrs": [f"100.64.{j}.{i % 250 + 1}/32" for j in range(16)]},
                    {"action": "Allow", "cidrs": ["10.0.0.0/8"]},
                ],
                "defaultAction": "Deny",
            },
        }
    )


def routes(n: int, start: int = 0) -> list[tuple[route_components_pb2.Route, list[bytes]]]:
    out = []
    for i in range(start, start + n):
        r = route_components_pb2.Route(name=f"httproute/apps/web-{i}/rule/0/match/0/web_example")
        r.match.prefix = "/"
        r.route.cluster = f"httproute/apps/web-{i}/rule/0"
        r.route.timeout.FromSeconds(15)
        out.append((r, [route_access(i)]))
    return out


def listener() -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="http-8080")
    hcm.rds.route_config_name = "apps/eg/http"
    hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    lst = listener_pb2.Listener(name="apps/eg/http")
    lst.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    ).typed_config.Pack(hcm)
    return lst


def per_call(fn: Any, args: list[Any]) -> list[float]:
    times = []
    for a in args:
        t0 = time.perf_counter()
        fn(*a)
        times.append(time.perf_counter() - t0)
    return times


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else values[0]


async def rpc_times(reqs: list[pb.PostClusterModifyRequest]) -> tuple[list[float], list[float]]:
    """Per call: the requests sent once, then the same requests again."""
    service = ExtensionService()
    times: list[float] = []
    again: list[float] = []
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
                await method(pb.PostClusterModifyRequest())  # the connection
                for out in (times, again):
                    for r in reqs:
                        t0 = time.perf_counter()
                        answer = await method(r)
                        out.append(time.perf_counter() - t0)
                        assert answer.cluster.type == cluster_pb2.Cluster.STRICT_DNS
        finally:
            channel.close()
            tg.cancel_scope.cancel()
    return times, again


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="just bench extension")
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument(
        "--eg-samples", type=int, default=3, help="Envoy Gateway translations timed, each way (0: skip)"
    )
    parser.add_argument(
        "--probe-translation-hook",
        action="store_true",
        help="a third Envoy Gateway with the Translation hook (one call per translation; "
        "tsgw echoes the clusters): eg_translate_ms_translation",
    )
    parser.add_argument(
        "--probe-service-path",
        action="store_true",
        help="another Envoy Gateway with the extension installed as documented but routes naming "
        "tsgw's Services (the path recommended at scale): eg_translate_ms_service",
    )
    parser.add_argument(
        "--sides",
        default="",
        help="comma-separated: only these Envoy Gateways (with, without, translation, service); "
        "the others report null",
    )
    parser.add_argument(
        "--backend-ip",
        action="store_true",
        help="the Backends of the without and service sides with IP endpoints (EDS clusters, as "
        "routes to Kubernetes Services get) instead of FQDNs (STRICT_DNS, as the Cluster hook answers)",
    )
    args = parser.parse_args(argv)
    only = tuple(s for s in args.sides.split(",") if s)
    unknown = sorted(set(only) - set(_envoy_gateway.SIDES))
    if unknown:
        parser.error(f"--sides: unknown {', '.join(unknown)}; choose from {', '.join(_envoy_gateway.SIDES)}")
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
    rpc, rpc_again = anyio.run(rpc_times, reqs)
    route_args = routes(args.routes)
    per_call(post_route_modify, routes(50, start=args.routes))  # warm up, other objects
    route_hook = per_call(post_route_modify, route_args)  # Envoy Gateway's first translation
    route_hook_warm = per_call(post_route_modify, route_args)  # its next ones: same objects
    assert all(post_route_modify(*a).route is not None for a in route_args[:3])
    lst = listener()
    listener_hook = per_call(post_http_listener_modify, [(lst,)] * 200)
    result: dict[str, Any] = {
        "bench": "extension",
        "routes": args.routes,
        "hook_p50_us": round(quantile(hook, 0.5) * 1e6, 1),
        "hook_p99_us": round(quantile(hook, 0.99) * 1e6, 1),
        "hook_cpu_total_ms": round(cpu_ms, 1),
        "rpc_p50_us": round(quantile(rpc, 0.5) * 1e6, 1),
        "rpc_p99_us": round(quantile(rpc, 0.99) * 1e6, 1),
        "rpc_again_p50_us": round(quantile(rpc_again, 0.5) * 1e6, 1),
        "rpc_again_p99_us": round(quantile(rpc_again, 0.99) * 1e6, 1),
        "route_hook_p50_us": round(quantile(route_hook, 0.5) * 1e6, 1),
        "route_hook_p99_us": round(quantile(route_hook, 0.99) * 1e6, 1),
        "route_hook_again_p50_us": round(quantile(route_hook_warm, 0.5) * 1e6, 1),
        "route_hook_again_p99_us": round(quantile(route_hook_warm, 0.99) * 1e6, 1),
        "listener_hook_p50_us": round(quantile(listener_hook, 0.5) * 1e6, 1),
        "eg_translate_ms_with": None,
        "eg_translate_ms_without": None,
    }
    if args.eg_samples > 0:
        with tempfile.TemporaryDirectory(prefix="tsgw-bench-eg-") as home:
            result.update(
                _envoy_gateway.measure(
                    Path(home),
                    args.routes,
                    args.eg_samples,
                    probe_translation=args.probe_translation_hook,
                    probe_service=args.probe_service_path,
                    only=only,
                    backend_ip=args.backend_ip,
                )
            )
        result["eg_backend_endpoints"] = "ip" if args.backend_ip else "fqdn"
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0
