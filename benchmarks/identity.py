"""What caller identity costs per request, through real Envoy.

For each tailnet size (default 1,000 and 5,000 devices, each with an IPv4 and an IPv6 address,
half owned by users and half tagged), the same TailscaleServices HTTP port is translated twice:
as tsgw serves it (the strip filter, then the composite filter's exact-match map on the PROXY
source address setting the caller's Tailscale-* headers) and with the identity filters removed.
Two Envoys (one per variant) route to a third, a direct-response backend that echoes the
``Tailscale-User-Login`` it received (checked before measuring: the caller's with identity, the
forged one without). Requests alternate between the two Envoys, each on a fresh connection
opened with a PROXY v2 header from a random device's address (so every request looks a caller
up), with two forged Tailscale-* headers. Reported: p50/p99 per variant and their difference
(the added latency), the HTTP listener's size in bytes, its translation time, the Envoys' heap
after loading and their start time from a static JSON bootstrap (slower to parse than the same
listener over ADS). One JSON line last.

    just bench identity [--requests N] [--devices 1000,5000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.translate.test_envoy_runs_translation import proxy_v2, static_bootstrap
from tests.support.envoy import Envoy
from tests.support.process import free_port
from tsgw.translate import Device, Inputs, Options, TailnetFacts, User, translate, xds_resources

API = "gateway.tailscale.com/v1alpha1"


def _facts(n: int) -> TailnetFacts:
    devices = []
    users = {}
    for i in range(n):
        a4 = f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}"
        a6 = f"fd7a:115c:a1e0::{i:x}"
        if i % 2:
            devices.append(Device(f"ci-{i}.tail.test", (a4, a6), tags=("tag:ci", "tag:k8s")))
        else:
            login = f"user{i}@example.com"
            users[login] = User(f"User Number {i}", ("group:eng",))
            devices.append(Device(f"laptop-{i}.tail.test", (a4, a6), user=login))
    return TailnetFacts("tail.test", tuple(devices), users=users)


def _inputs(facts: TailnetFacts, backend_port: int) -> Inputs:
    tailnet = {
        "apiVersion": API,
        "kind": "TailscaleTailnet",
        "metadata": {"name": "corp"},
        "spec": {"credentials": {"secretRef": {"namespace": "x", "name": "y"}, "apiKey": {}}},
    }
    services = {
        "apiVersion": API,
        "kind": "TailscaleServices",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {
            "tailnetRef": {"name": "corp"},
            "ports": [{"port": 80, "protocol": "HTTP", "targetPort": "http"}],
            "backends": [{"service": "app"}],
        },
    }
    svc = {
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }
    eps = {
        "metadata": {"name": "app-1", "namespace": "apps", "labels": {"kubernetes.io/service-name": "app"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": backend_port}],
        "endpoints": [{"addresses": ["127.0.0.1"]}],
    }
    return Inputs(
        objects=[tailnet, services], services=[svc], endpoint_slices=[eps], tailnets={"corp": facts}
    )


def _backend_listener(port: int) -> dict[str, Any]:
    # The backend answers with the login it received, so the bench checks what it measures.
    echo = {"header": {"key": "x-login", "value": "%REQ(tailscale-user-login)%"}}
    route = {
        "virtual_hosts": [
            {
                "name": "b",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}],
                "response_headers_to_add": [echo],
            }
        ]
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "backend",
        "route_config": route,
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": "backend",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n"
    b"Tailscale-User-Login: mallory@example.com\r\ntailscale_node_tags: tag:admin\r\n\r\n"
)


def _call(port: int, src: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(proxy_v2(src) + _REQUEST)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    elapsed = time.perf_counter() - t
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {data[:80]!r}")
    return elapsed, data


def _login(answer: bytes) -> str:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"x-login:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def _heap(envoy: Envoy) -> int:
    status, body = envoy.admin("/memory")
    return int(json.loads(body).get("allocated", 0)) if status == 200 else 0


def _run(n: int, requests: int, workdir: Path) -> dict[str, Any]:
    facts = _facts(n)
    backend_port = free_port()
    t = time.perf_counter()
    result = translate(_inputs(facts, backend_port), Options(first_listener_port=10080))
    translate_s = time.perf_counter() - t
    group = next(iter(result.model.groups))
    (res,) = result.xds.values()
    plain = dataclasses.replace(
        group, listeners=tuple(dataclasses.replace(li, callers=None) for li in group.listeners)
    )
    without = xds_resources(plain)
    (li_with,) = res.listeners
    (li_without,) = without.listeners
    envoys = {}
    for name, r in (("with", res), ("without", without)):
        boot = static_bootstrap(r)
        for li in boot["static_resources"]["listeners"]:
            li["address"]["socket_address"]["port_value"] = 0
        envoys[name] = Envoy(boot, workdir / f"{name}-{n}", name=f"{name}-{n}")
    # One backend Envoy of its own, the same hop for both variants.
    backend = Envoy(
        {"static_resources": {"listeners": [_backend_listener(backend_port)]}},
        workdir / f"backend-{n}",
        name=f"backend-{n}",
    )
    try:
        backend.start(timeout=60)
        t = time.perf_counter()
        for e in envoys.values():
            e.start(timeout=120)
        load_s = time.perf_counter() - t
        ports = {k: e.listener_port("ingress-80") for k, e in envoys.items()}
        addresses = [a for d in facts.devices for a in d.addresses if "." in a]
        # Warm-up, and the check: device 0 is user0's; a forged login passes only without identity.
        for _ in range(50):
            for k, want in (("with", "user0@example.com"), ("without", "mallory@example.com")):
                got = _login(_call(ports[k], addresses[0])[1])
                if got != want:
                    raise RuntimeError(f"{k}: the backend received login {got!r}, not {want!r}")
        rng = random.Random(n)
        times: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(requests):
            src = rng.choice(addresses)
            for k in rng.sample(list(ports), 2):  # alternate, in random order
                times[k].append(_call(ports[k], src)[0])
        heap = {k: _heap(e) for k, e in envoys.items()}
    finally:
        for e in (*envoys.values(), backend):
            e.stop()
    p = {k: (_pct(v, 0.5), _pct(v, 0.99)) for k, v in times.items()}
    return {
        "devices": n,
        "requests_each": requests,
        "p50_ms_with": round(p["with"][0], 3),
        "p99_ms_with": round(p["with"][1], 3),
        "p50_ms_without": round(p["without"][0], 3),
        "p99_ms_without": round(p["without"][1], 3),
        "added_p50_ms": round(p["with"][0] - p["without"][0], 3),
        "added_p99_ms": round(p["with"][1] - p["without"][1], 3),
        "mean_ms_with": round(statistics.fmean(times["with"]) * 1000, 3),
        "mean_ms_without": round(statistics.fmean(times["without"]) * 1000, 3),
        "listener_bytes_with": li_with.ByteSize(),
        "listener_bytes_without": li_without.ByteSize(),
        "translate_s": round(translate_s, 3),
        "envoys_start_s": round(load_s, 2),
        "envoy_heap_mib_with": round(heap["with"] / 2**20, 1),
        "envoy_heap_mib_without": round(heap["without"] / 2**20, 1),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="just bench identity")
    ap.add_argument("--requests", type=int, default=2000, help="requests per variant and size")
    ap.add_argument("--devices", default="1000,5000", help="tailnet sizes, comma-separated")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-identity-") as tmp:
        for n in (int(x) for x in args.devices.split(",")):
            r = _run(n, args.requests, Path(tmp))
            print(json.dumps(r), flush=True)
            runs.append(r)
    out = {
        "bench": "identity",
        "runs": runs,
        "goal_added_p50_ms": 1.0,
        "goal_met": all(r["added_p50_ms"] < 1.0 for r in runs),
        "load_avg_1m_before": round(load_before, 1),
        "load_avg_1m_after": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))
    return 0
