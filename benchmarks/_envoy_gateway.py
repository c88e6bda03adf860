"""Envoy Gateway's own translation time at N HTTPRoutes, with and without tsgw's extension.

Two real Envoy Gateway v1.9.0 processes (standalone: file provider, host infrastructure, each in
its own network namespace, as ``tests/support/envoy_gateway.py`` runs them) run side by side:

* **with**: ``extensionManager`` → tsgw's extension server (``tsgw.extension.ExtensionService``,
  what ``tsgw run --extension`` serves) in this process, on an event loop thread of its own
  bound inside that Envoy Gateway's namespace (dialled on its loopback, no relay; the bench's
  main thread only polls metrics meanwhile); configured as ``docs/envoy-gateway.md`` says for
  custom backends: ``backendResources`` TailscaleEndpoints, the ``Cluster`` post hook,
  ``failOpen: false``. N HTTPRoutes, route *i*'s one rule naming TailscaleEndpoints ``db-i``
  (three targets); Envoy Gateway builds each cluster, then asks tsgw (``PostClusterModify``),
  one call at a time, on its translation path.
* **without**: no ``extensionManager``; the same N HTTPRoutes, route *i* naming Envoy Gateway's
  own ``Backend`` ``db-i`` (an FQDN endpoint, port 80): the same route without tsgw, and a
  cluster of the same kind as tsgw's answer (``STRICT_DNS`` to a DNS name).

Both have one Gateway (one HTTP listener), so one xDS IR key: each translation is whole.

With ``probe_translation`` a third runs beside them, **translation**: as *with*, but the
``Translation`` post hook instead of ``Cluster``: Envoy Gateway makes one ``PostTranslateModify``
call per translation carrying every cluster (1,000 of them, each without endpoints, as it builds
a custom backend's cluster when no Cluster hook is set), and tsgw echoes them unchanged (on the
wire, decoding none). Not a working configuration (the clusters keep no endpoints): the price
Envoy Gateway pays for one call per translation, the floor of the design docs/envoy-gateway.md
proposes to get under 10%.

With ``probe_service`` another runs beside them, **service**: the extension configured as
docs/envoy-gateway.md's "Configure" says (``backendResources`` TailscaleEndpoints,
``policyResources`` TailscaleRouteAccess, the ``Cluster``, ``Route`` and ``HTTPListener`` post
hooks, ``failOpen: false``), the N TailscaleEndpoints present, but route *i* naming the Service
tsgw owns for ``db-i`` instead of the TailscaleEndpoints (the path that document recommends at
scale). Standalone Envoy Gateway has no Kubernetes Services, so the route names a ``Backend``
whose FQDN endpoint is that Service's name, as *without* does: a cluster of Envoy Gateway's own
per route, no hook call for it. What is left of the extension per translation is a
``PostHTTPListenerModify`` per xDS listener (checked: fewer than N calls, none to
``PostClusterModify``; the most seen is reported), and the Route hook for routes a policy
targets (none here).

What is timed: Envoy Gateway's ``watchable_subscribe_duration_seconds`` histogram
(``internal/message/watchutil.go``: the time one subscription update is handled), read from its
metrics endpoint (port 19001). For the ``gateway-api`` runner that is Gateway API → IR; for the
``xds`` runner, IR → xDS, where the extension hooks are called
(``internal/xds/runner/runner.go``, ``translateFromSubscription``). The histogram's buckets are
coarse (1 ms, 10 ms, 100 ms, 1 s), so each sample is the difference of its ``_sum`` across one
re-translation (its ``_count`` checked to have grown by exactly one per runner). A
re-translation is triggered by rewriting ``trigger.yaml``: one more HTTPRoute whose path prefix
changes each time (a change of the IR; an unchanged rewrite would be dropped as equal). The two
Envoy Gateways are triggered alternately, each waiting for the other to finish, so both see the
same background load.
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
import time
import urllib.request
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.support.envoy_gateway import EnvoyGateway
from tsgw import api
from tsgw.extension import ExtensionService

METRICS_PORT = 19001  # Envoy Gateway's metrics server (egv1a1.GatewayMetricsPort), 0.0.0.0
EXTENSION_PORT = 19500  # tsgw's extension server, inside the "with" namespace
RUNNERS = ("gateway-api", "xds")
GATEWAY_PORT = 8080
NS = "default"


HOOKS: dict[str, tuple[tuple[str, ...], str]] = {
    "with": (("Cluster",), "PostClusterModify"),
    "translation": (("Translation",), "PostTranslateModify"),
    "service": (("Cluster", "Route", "HTTPListener"), "PostHTTPListenerModify"),
}
"""Side → (the post hooks configured, the RPC counted: each translation must make N of them
(*with*) or exactly one (the others))."""
SIDES = ("with", "without", "translation", "service")


def extension_manager(hooks: tuple[str, ...] = ("Cluster",)) -> dict[str, Any]:
    out: dict[str, Any] = {
        "backendResources": [{"group": api.GROUP, "version": api.VERSION, "kind": "TailscaleEndpoints"}],
        "hooks": {"xdsTranslator": {"post": list(hooks)}},
        "service": {"fqdn": {"hostname": "127.0.0.1", "port": EXTENSION_PORT}},
        "failOpen": False,
    }
    if "Route" in hooks:
        access = {"group": api.GROUP, "version": api.VERSION, "kind": "TailscaleRouteAccess"}
        out["policyResources"] = [access]
    return out


def gateway() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "bench", "namespace": NS},
        "spec": {
            "gatewayClassName": "eg",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": GATEWAY_PORT}],
        },
    }


def tailscale_endpoints(i: int) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": "TailscaleEndpoints",
        "metadata": {"name": f"db-{i}", "namespace": NS},
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
    }


def backend(i: int, ip: bool = False) -> dict[str, Any]:
    """Backend ``db-i``: an FQDN endpoint (a ``STRICT_DNS`` cluster, as tsgw's Cluster hook
    answers), or with ``ip`` an IP endpoint (an EDS cluster, as a route to a Kubernetes Service
    gets, with no DNS for the gateway's Envoy to resolve)."""
    endpoint: dict[str, Any] = (
        {"ip": {"address": f"10.96.{i // 250}.{i % 250 + 1}", "port": 80}}
        if ip
        else {"fqdn": {"hostname": f"db-{i}.{NS}.svc.cluster.local", "port": 80}}
    )
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": f"db-{i}", "namespace": NS},
        "spec": {"endpoints": [endpoint]},
    }


def http_route(name: str, path: str, ref: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "bench"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [dict(ref)]}
            ],
        },
    }


def resources(n: int, side: str, backend_ip: bool = False) -> list[dict[str, Any]]:
    """The Gateway and N routes of ``side``: naming TailscaleEndpoints (*with*, *translation*),
    a Backend (*without*), or a Backend to tsgw's Service with the TailscaleEndpoints beside it
    (*service*); the Backends with IP endpoints when ``backend_ip``."""
    out: list[dict[str, Any]] = [gateway()]
    for i in range(n):
        if side in ("with", "translation"):
            out.append(tailscale_endpoints(i))
            ref: dict[str, Any] = {"group": api.GROUP, "kind": "TailscaleEndpoints", "name": f"db-{i}"}
        else:
            if side == "service":
                out.append(tailscale_endpoints(i))
            out.append(backend(i, backend_ip))
            ref = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": f"db-{i}", "port": 80}
        out.append(http_route(f"web-{i}", f"/web-{i}", ref))
    return out


def trigger(k: int) -> list[dict[str, Any]]:
    """The one object rewritten to make Envoy Gateway translate again (the same in both)."""
    ref = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "trigger", "port": 80}
    return [
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "Backend",
            "metadata": {"name": "trigger", "namespace": NS},
            "spec": {"endpoints": [{"fqdn": {"hostname": "trigger.example", "port": 80}}]},
        },
        http_route("trigger", f"/trigger-{k}", ref),
    ]


_LINE = re.compile(r"^watchable_subscribe_duration_seconds_(sum|count)\{([^}]*)\}\s+(\S+)$")


def parse(text: str) -> dict[tuple[str, str], float]:
    """``(runner, "sum"|"count")`` → value, for the runners in :data:`RUNNERS`."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        runner = labels.get("runner", "")
        if runner in RUNNERS:
            key = (runner, m.group(1))
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


@dataclass
class Side:
    name: str
    eg: EnvoyGateway
    metrics_port: int
    service: ExtensionService | None = None
    stack: ExitStack = field(default_factory=ExitStack)
    samples: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in (*RUNNERS, "total")})
    skipped: int = 0
    calls_per_translation: list[int] = field(default_factory=list)

    def scrape(self) -> dict[tuple[str, str], float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return parse(r.read().decode())

    def settled(
        self, before: dict[tuple[str, str], float], timeout: float, quiet: float = 0.5
    ) -> dict[tuple[str, str], float]:
        """Wait until both runners have handled an update since ``before`` and nothing more
        has happened for ``quiet`` seconds; returns the last scrape."""
        deadline = time.monotonic() + timeout
        last: dict[tuple[str, str], float] | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                now = self.scrape()
            except OSError:  # not serving yet
                time.sleep(0.5)
                continue
            grown = all(now.get((r, "count"), 0) > before.get((r, "count"), 0) for r in RUNNERS)
            if now != last:
                last, since = now, time.monotonic()
            elif grown and time.monotonic() - since >= quiet:
                return now
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: Envoy Gateway did not translate within {timeout} s")

    def hook_calls(self) -> int:
        return self.service.calls.get(HOOKS[self.name][1], 0) if self.service else 0

    def sample(self, k: int, n: int) -> None:
        before = self.scrape()
        calls = self.hook_calls()
        self.eg.write("trigger.yaml", trigger(k))
        after = self.settled(before, timeout=900)
        counts = [after[(r, "count")] - before.get((r, "count"), 0) for r in RUNNERS]
        if counts != [1, 1]:
            self.skipped += 1  # coalesced or split: not one whole translation; not a sample
            return
        if self.name == "with":
            # every route's cluster went through tsgw, in this translation
            assert self.hook_calls() - calls == n, (self.hook_calls() - calls, n)
        elif self.name == "translation":
            assert self.hook_calls() - calls == 1, (self.hook_calls() - calls, HOOKS[self.name][1])
        elif self.name == "service":
            # a few per translation (one per xDS listener Envoy Gateway builds), none per route
            made = self.hook_calls() - calls
            assert 0 < made < n, (made, HOOKS[self.name][1])
            assert self.service is not None
            assert not self.service.calls.get("PostClusterModify")
            self.calls_per_translation.append(made)
        total = 0.0
        for r in RUNNERS:
            d = after[(r, "sum")] - before.get((r, "sum"), 0.0)
            self.samples[r].append(d)
            total += d
        self.samples["total"].append(total)
        print(f"eg {self.name} #{k}: {total * 1000:.1f} ms", file=sys.stderr, flush=True)

    def close(self) -> None:
        try:
            self.eg.close()
        finally:
            self.stack.close()


def start(home: Path, n: int, name: str, backend_ip: bool = False) -> Side:
    """One side: ``with`` (the Cluster hook), ``translation`` (the Translation hook),
    ``service`` (the documented hooks, routes to tsgw's Services; see the module docstring) or
    ``without`` (no extension)."""
    with_extension = name in HOOKS
    # The routes are there before Envoy Gateway starts: its file provider loads the folder, then
    # watches it, and a file written in between is missed until the next change.
    routes = home / name / "resources" / "routes.yaml"
    routes.parent.mkdir(parents=True)
    routes.write_text(yaml.safe_dump_all(resources(n, name, backend_ip)))
    (routes.parent / "trigger.yaml").write_text(yaml.safe_dump_all(trigger(0)))
    eg = EnvoyGateway(
        home / name,
        extension=extension_manager(HOOKS[name][0]) if with_extension else None,
        extension_inside=True,
    )
    side = Side(name, eg, eg.gateway_port(METRICS_PORT))
    try:
        if with_extension:
            side.service = ExtensionService()
            with eg.ns.entered():  # the loop thread starts here, so it binds inside
                portal: BlockingPortal = side.stack.enter_context(start_blocking_portal())
            future, _ = portal.start_task(side.service.serve, "127.0.0.1", EXTENSION_PORT)
            side.stack.callback(future.cancel)
    except BaseException:
        side.close()
        raise
    return side


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else values[0]


P99_SAMPLES = 100  # fewer samples than this: no p99 (null), the max says the worst seen


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(statistics.median(values) * 1000, 1),
        "p99": round(quantile(values, 0.99) * 1000, 1) if len(values) >= P99_SAMPLES else None,
        "max": round(max(values) * 1000, 1),
    }


def measure(
    home: Path,
    n: int,
    samples: int,
    warmup: int = 0,
    *,
    probe_translation: bool = False,
    probe_service: bool = False,
    only: tuple[str, ...] = (),
    backend_ip: bool = False,
) -> dict[str, Any]:
    """The Envoy Gateways up at once (``with``, ``without``, ``translation`` when
    ``probe_translation``, ``service`` when ``probe_service``; just those in ``only`` when it is
    given), triggered in turn ``samples`` times each (after ``warmup`` translations each that are
    not counted). A side not run reports null. ``backend_ip``: the Backends of *without* and
    *service* have IP endpoints (see :func:`backend`)."""
    if home.exists():
        shutil.rmtree(home)
    sides = []
    try:
        names = (
            "with",
            "without",
            *(("translation",) if probe_translation else ()),
            *(("service",) if probe_service else ()),
        )
        if only:
            unknown = sorted(set(only) - set(SIDES))
            if unknown:
                raise ValueError(f"unknown sides {unknown}: choose from {', '.join(SIDES)}")
            names = tuple(n for n in SIDES if n in only)
        for name in names:
            sides.append(start(home, n, name, backend_ip))
        for side in sides:  # their first translation (loading the files), not counted
            side.settled({}, timeout=900, quiet=3.0)
        for k in range(1, warmup + samples + 1):
            for side in sides:
                side.sample(k, n)
            if k == warmup:
                for side in sides:
                    side.samples = {r: [] for r in side.samples}
                    side.skipped = 0
        out: dict[str, Any] = {}
        for side in sides:
            for r in (*RUNNERS, "total"):
                s = summary(side.samples[r])
                suffix = "" if r == "total" else "_" + r.replace("-", "_")
                out[f"eg_translate_ms_{side.name}{suffix}"] = s["p50"]
                out[f"eg_translate_ms_{side.name}{suffix}_p99"] = s["p99"]
                out[f"eg_translate_ms_{side.name}{suffix}_max"] = s["max"]
            if side.calls_per_translation:
                out[f"eg_hook_calls_per_translation_{side.name}"] = max(side.calls_per_translation)
            out[f"eg_samples_{side.name}"] = len(side.samples["total"])
            out[f"eg_skipped_{side.name}"] = side.skipped
        w, wo = out.get("eg_translate_ms_with"), out.get("eg_translate_ms_without")
        out["eg_translate_ratio"] = round(w / wo, 3) if w and wo else None
        for probe in ("translation", "service"):
            if probe in names:
                t = out[f"eg_translate_ms_{probe}"]
                out[f"eg_translate_ratio_{probe}"] = round(t / wo, 3) if t and wo else None
        return out
    finally:
        for side in sides:
            side.close()
