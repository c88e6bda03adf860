"""Standalone mode: how long from saving a file to the first request served by the new route.

Real components, as `just run` has them: the `tsgw run --standalone` process on a copy of
examples/standalone, a real Envoy bootstrapped to it, two HTTP backends. Each edit rewrites
web.yaml (a new file renamed over the old, as editors save) so that the rule for ``/probe/``
points at the other backend; the clock starts just before the rename and stops when a request
to ``/probe/`` (sent back to back, each on a new connection, with the PROXY header tailscaled
would send) is answered by the newly named backend. That covers the folder poll and debounce,
validation, translation, snapshot encoding, the xDS push, Envoy applying RDS, and one request.

Goal (issue 7): p50 < 300 ms, p99 < 1 s over 50 edits. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e.standalone import Tsgw, copy_example, get, ingress_envoy, wait_until, write
from tests.support.backend import HttpBackend

_RULE = "      - pathPrefix: /             #"


def _with_probe_rule(text: str, service: str) -> str:
    rule = f"      - pathPrefix: /probe/\n        services: [{service}]\n"
    return text.replace(_RULE, rule + _RULE, 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="just bench standalone")
    p.add_argument("--edits", type=int, default=50)
    args = p.parse_args(argv)

    primary = HttpBackend("primary").start()
    standby = HttpBackend("standby").start()
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-standalone-") as tmp:
        work = Path(tmp)
        folder = copy_example(work / "standalone", primary.port, standby.port)
        web = folder / "web.yaml"
        base = web.read_text()
        assert _RULE in base
        write(web, _with_probe_rule(base, "web-primary"))
        tsgw = Tsgw(folder, work)
        envoy = None
        try:
            envoy = ingress_envoy(tsgw, work)
            port = tsgw.listener_port
            wait_until(lambda: get(port, "/probe/") == (200, "primary"))
            latencies: list[float] = []
            requests: list[int] = []
            current = "primary"
            for _ in range(args.edits):
                nxt = "standby" if current == "primary" else "primary"
                text = _with_probe_rule(base, f"web-{nxt}")
                started = time.perf_counter()
                write(web, text)
                sent = 0
                while True:
                    sent += 1
                    if get(port, "/probe/") == (200, nxt):
                        break
                    if time.perf_counter() - started > 30:
                        raise SystemExit(f"the route did not change within 30 s (edit {len(latencies) + 1})")
                latencies.append((time.perf_counter() - started) * 1000)
                requests.append(sent)
                current = nxt
                time.sleep(0.05)  # let the folder's mtime move on (same-size rewrites)
        finally:
            if envoy is not None:
                envoy.stop()
            tsgw.stop()
            primary.stop()
            standby.stop()
    result = {
        "bench": "standalone",
        "edits": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "min_ms": round(min(latencies), 1),
        "mean_requests_until_new_route": round(statistics.mean(requests), 1),
        "poll_interval_ms": 50,
        "debounce_ms": 50,
        "goal": {"p50_ms": 300, "p99_ms": 1000},
    }
    print("latencies_ms:", [round(x) for x in latencies])
    print(json.dumps(result))
    return 0
