"""TLS handshakes per second through one proxy's Envoy, certificate served over SDS.

Real components, as in tests/e2e/test_tls_standalone.py: the `tsgw run --standalone` process on
a copy of examples/standalone with a TLS port (an ECDSA P-256 certificate from a
``kubernetes.io/tls`` Secret), one real Envoy (one worker thread, as ``--concurrency 1``), an
HTTP backend. Client processes open connections back to back for a fixed time, each with the
PROXY header tailscaled would send, then a full TLS handshake (no session resumption), then
close; Envoy's own ``ssl.handshake`` counter is reported beside the clients' count. The clients
(Python's ssl) share the machine's cores with Envoy and tsgw, so the figure is a lower bound of
what one replica can do.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e.standalone import (
    INGRESS_GROUP,
    TLS_HOST,
    Tsgw,
    add_tls_port,
    copy_example,
    envoy_bootstrap,
    get,
    tls_secret_yaml,
    wait_until,
)
from tests.support.backend import HttpBackend
from tests.support.certs import CA
from tests.support.envoy import Envoy

_PROXY = b"PROXY TCP4 100.64.0.99 127.0.0.1 40000 443\r\n"


def _tls_round(port: int, ctx: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(_PROXY)
        with ctx.wrap_socket(raw, server_hostname=TLS_HOST):
            pass  # the handshake completed (wrap_socket does it)


def _client(port: int, ca_pem: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ctx = ssl.create_default_context(cadata=ca_pem)
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            _tls_round(port, ctx)
        except (OSError, ssl.SSLError):
            errors += 1
            continue
        latencies.append(time.perf_counter() - t0)
    out.put((latencies, errors))


def _measure(port: int, ca: CA, clients: int, seconds: float) -> dict[str, float]:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_client, args=(port, ca.pem.decode(), seconds, queue))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    return {
        "per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "errors": errors,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="just bench tls")
    p.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    args = p.parse_args(argv)

    primary = HttpBackend("primary").start()
    standby = HttpBackend("standby").start()
    ca = CA()
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-tls-") as tmp:
        work = Path(tmp)
        folder = copy_example(work / "standalone", primary.port, standby.port)
        add_tls_port(folder)
        (folder / "certs.yaml").write_text(tls_secret_yaml(ca.issue(TLS_HOST)))
        tsgw = Tsgw(folder, work)
        envoy = Envoy(
            envoy_bootstrap(INGRESS_GROUP, "web-0", tsgw.xds_port), work / "envoy", name="envoy-web"
        )
        try:
            envoy.start()
            plain_port, tls_port = tsgw.listener_port, tsgw.listener_port + 1
            wait_until(lambda: get(plain_port) == (200, "primary"))
            ctx = ssl.create_default_context(cadata=ca.pem.decode())
            wait_until(lambda: _try(lambda: _tls_round(tls_port, ctx)))
            load_before = os.getloadavg()[0]
            tls = _measure(tls_port, ca, args.clients, args.seconds)
            load_after = os.getloadavg()[0]
            stats = envoy.stats()
            handshakes = sum(
                v for k, v in stats.items() if k.endswith("ssl.handshake") and isinstance(v, int)
            )
        finally:
            envoy.stop()
            tsgw.stop()
            primary.stop()
            standby.stop()
    result = {
        "bench": "tls",
        "clients": args.clients,
        "seconds": args.seconds,
        "envoy_workers": 1,
        "certificate": "ECDSA P-256 over SDS",
        "tls_handshakes_per_s": tls["per_s"],
        "tls_handshake_p50_ms": tls["p50_ms"],
        "tls_handshake_p99_ms": tls["p99_ms"],
        "tls_errors": tls["errors"],
        "envoy_ssl_handshakes": handshakes,
        "load_1m_before": round(load_before, 2),
        "load_1m_after": round(load_after, 2),
    }
    print(json.dumps(result))
    return 0


def _try(fn: object) -> bool:
    try:
        fn()  # type: ignore[operator]
    except (OSError, ssl.SSLError):
        return False
    return True
