"""Push latency of tsgw's ADS server against go-control-plane, measured by the same clients.

For 1, 100 and 500 ADS streams and 100 and 1,000 clusters: the time from setting a snapshot
until every connected stream has ACKed the new CDS version (p50, p99 over the pushes), the
server's CPU per push and its memory per stream. One stream is a real Envoy; more are the Go
load client in benchmarks/gcp (one gRPC connection per stream, as Envoys have, each ACKing
every response). The peer is a Go program on go-control-plane's snapshot cache and ADS server
(pinned in benchmarks/gcp/go.mod), fed the same resources over the same stdin protocol:

    push <clusters> <n>   build push n's resources, set the snapshot, print "pushed n <t0 ns>";
                          once every stream ACKed it, print "acked n <t1 ns>"
    streams               print "streams <count>"

Every cluster changes on every push (its buffer limit), endpoints do not; both servers group
Envoys by node.cluster, so all streams share one snapshot. The servers and clients share the
machine's 2 cores. Prints one JSON line last.

Usage: just bench xds [--pushes N] [--cases 1x100,100x1000,...] [--skip-gcp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GCP_DIR = Path(__file__).resolve().parent / "gcp"
GROUP = "bench"
DEFAULT_CASES = "1x100,1x1000,100x100,100x1000,500x100,500x1000"


# -- the Python server process ---------------------------------------------------------------


def build_clusters(n: int, push: int) -> tuple[list[Any], list[Any]]:
    """Push ``push``'s resources as upb messages: the same shape as benchmarks/gcp/resources.go."""
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2

    clusters, las = [], []
    for i in range(n):
        name = f"c-{i:04d}"
        c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
        c.connect_timeout.seconds = 1
        c.eds_cluster_config.eds_config.ads.SetInParent()
        c.eds_cluster_config.eds_config.resource_api_version = 2  # V3
        c.per_connection_buffer_limit_bytes.value = 32768 + push
        hc = c.health_checks.add()
        hc.timeout.seconds = 1
        hc.interval.seconds = 60
        hc.unhealthy_threshold.value = 2
        hc.healthy_threshold.value = 1
        hc.http_health_check.path = "/healthz"
        clusters.append(c)
        la = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        sa = la.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
        sa.address = "127.0.0.1"
        sa.port_value = 9
        las.append(la)
    return clusters, las


def serve(argv: Sequence[str]) -> int:
    """The Python peer of cmd/gcp-server: tsgw.xds behind the same stdin protocol."""
    import anyio
    import anyio.to_thread
    import structlog

    from tsgw.xds import (
        AdsServer,
        ClusterDiscovery,
        EndpointDiscovery,
        EventKind,
        Snapshot,
        SnapshotCache,
        StreamEvent,
    )

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    cache = SnapshotCache()
    state: dict[str, Any] = {"target": None, "label": "", "acked": set()}

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    server: AdsServer

    def on_event(event: StreamEvent) -> None:
        if event.kind is not EventKind.ACK:
            return
        if event.type_url != ClusterDiscovery or event.version != state["target"]:
            return
        state["acked"].add(event.node_id)
        if len(state["acked"]) >= server.stream_count():
            state["target"] = None
            out(f"acked {state['label']} {time.time_ns()}")

    server = AdsServer(cache)
    server.subscribe(on_event)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve, "127.0.0.1", args.port)
            out(f"listening {port}")
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                if not line:
                    break
                f = line.split()
                if f and f[0] == "push":
                    n, push = int(f[1]), int(f[2])
                    clusters, las = build_clusters(n, push)
                    state["acked"] = set()
                    t0 = time.time_ns()
                    snap = Snapshot(
                        {ClusterDiscovery: clusters, EndpointDiscovery: las},
                        version=f[2],
                        reuse=cache.get_snapshot(GROUP),
                    )
                    state["label"] = f[2]
                    state["target"] = snap.type_version(ClusterDiscovery) if server.stream_count() else None
                    cache.set_snapshot(GROUP, snap)
                    out(f"pushed {f[2]} {t0}")
                elif f and f[0] == "streams":
                    out(f"streams {server.stream_count()}")
            tg.cancel_scope.cancel()

    anyio.run(main)
    return 0


# -- the driver --------------------------------------------------------------------------------


def go_binaries() -> Path:
    """Build benchmarks/gcp (cached by a hash of its sources) into ~/.cache/tsgw/bin."""
    h = hashlib.sha256()
    for f in sorted([*GCP_DIR.rglob("*.go"), GCP_DIR / "go.mod", GCP_DIR / "go.sum"]):
        h.update(f.read_bytes())
    out = Path.home() / ".cache" / "tsgw" / "bin" / f"gcp-bench-{h.hexdigest()[:12]}"
    if not (out / "gcp-server").exists() or not (out / "loadclient").exists():
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
        print(f"building {GCP_DIR} into {out} …", file=sys.stderr)
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{out}/", "./cmd/..."],
            cwd=GCP_DIR,
            env=env,
            check=True,
        )
    return out


class Line:
    """A child process speaking the line protocol on stdin/stdout."""

    def __init__(self, argv: Sequence[str], log: Path, **kw: Any) -> None:
        self.log = log.open("w")
        self.p = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, **kw
        )

    def expect(self, word: str, timeout: float = 120.0) -> list[str]:
        deadline = time.monotonic() + timeout
        assert self.p.stdout is not None
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.p.args[0]} exited (see {self.log.name})")
            f = line.split()
            if f and f[0] == word:
                return f
        raise TimeoutError(f"no {word!r} from {self.p.args[0]} in {timeout} s")

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def rss_kib(self) -> int:
        for ln in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.p.poll() is None:
            if self.p.stdin:
                self.p.stdin.close()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


def start_envoy(port: int, work: Path) -> subprocess.Popen[bytes]:
    import yaml

    from tools.testbin import bin_path
    from tsgw.xds import bootstrap

    config = bootstrap("bench-envoy", GROUP, f"127.0.0.1:{port}", admin_port=0)
    path = work / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (work / "envoy.log").open("w")
    return subprocess.Popen(
        [
            str(bin_path("envoy")),
            "-c",
            str(path),
            "--base-id",
            str(os.getpid() % 60000 + 7),
            "--concurrency",
            "1",
            "-l",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_case(
    kind: str, streams: int, clusters: int, pushes: int, bins: Path | None, work: Path
) -> dict[str, Any]:
    if kind == "python":
        argv = [sys.executable, "-m", "benchmarks.xds", "serve"]
        srv = Line(argv, work / f"{kind}-{streams}x{clusters}.log", cwd=ROOT)
    else:
        assert bins is not None
        srv = Line([str(bins / "gcp-server"), "-group", GROUP], work / f"{kind}-{streams}x{clusters}.log")
    client: Line | None = None
    envoy: subprocess.Popen[bytes] | None = None
    try:
        port = int(srv.expect("listening")[1])
        srv.send(f"push {clusters} 0")
        srv.expect("pushed")
        time.sleep(0.3)
        base_rss = srv.rss_kib()
        if streams == 1:
            envoy = start_envoy(port, work)
        else:
            assert bins is not None
            client = Line(
                [
                    str(bins / "loadclient"),
                    "-addr",
                    f"127.0.0.1:{port}",
                    "-streams",
                    str(streams),
                    "-group",
                    GROUP,
                ],
                work / f"load-{kind}-{streams}x{clusters}.log",
            )
            client.expect("connected", timeout=180)
        for _ in range(600):  # until every stream is open on the server
            srv.send("streams")
            if int(srv.expect("streams")[1]) >= streams:
                break
            time.sleep(0.1)
        time.sleep(1.0 if streams > 1 else 3.0)
        kib_per_stream = max(0, srv.rss_kib() - base_rss) / streams
        latencies: list[float] = []
        cpu0 = srv.cpu_s()
        client_cpu0 = client.cpu_s() if client is not None else 0.0
        for k in range(1, pushes + 2):  # push 1 warms up and is not counted
            srv.send(f"push {clusters} {k}")
            t0 = int(srv.expect("pushed")[2])
            t1 = int(srv.expect("acked", timeout=120)[2])
            if k > 1:
                latencies.append((t1 - t0) / 1e6)
            time.sleep(0.2)
        cpu = srv.cpu_s() - cpu0
        client_cpu = client.cpu_s() - client_cpu0 if client is not None else 0.0
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        return {
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(p99, 1),
            "cpu_ms_per_push": round(cpu * 1000 / (pushes + 1), 1),
            # The Go load client shares the 2 cores: its decoding is part of every latency.
            "client_cpu_ms_per_push": round(client_cpu * 1000 / (pushes + 1), 1),
            "kib_per_stream": round(kib_per_stream, 1),
        }
    finally:
        if client is not None:
            client.stop()
        if envoy is not None:
            envoy.terminate()
            envoy.wait(10)
        srv.stop()


def main(argv: Sequence[str] = ()) -> int:
    argv = list(argv)
    if argv and argv[0] == "serve":
        return serve(argv[1:])
    p = argparse.ArgumentParser(prog="just bench xds")
    p.add_argument("--pushes", type=int, default=10, help="measured pushes per case (default 10)")
    p.add_argument("--cases", default=DEFAULT_CASES, help=f"STREAMSxCLUSTERS,... (default {DEFAULT_CASES})")
    p.add_argument("--skip-gcp", action="store_true", help="measure tsgw only")
    args = p.parse_args(argv)
    bins = go_binaries()
    cases = []
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-xds-") as tmp:
        work = Path(tmp)
        for spec in args.cases.split(","):
            streams, clusters = (int(x) for x in spec.split("x"))
            ours = run_case("python", streams, clusters, args.pushes, bins, work)
            case: dict[str, Any] = {"streams": streams, "clusters": clusters, **ours}
            case["client"] = "envoy" if streams == 1 else "loadclient"
            if not args.skip_gcp:
                theirs = run_case("gcp", streams, clusters, args.pushes, bins, work)
                case |= {f"gcp_{k}": v for k, v in theirs.items()}
            print(json.dumps(case), file=sys.stderr)
            cases.append(case)
    goal = next((c for c in cases if c["streams"] == 100 and c["clusters"] == 1000), None)
    goals: dict[str, Any] = {}
    if goal is not None:
        goals = {
            "p50_under_50ms_at_100x1000": goal["p50_ms"] < 50,
            "p99_under_250ms_at_100x1000": goal["p99_ms"] < 250,
        }
    # RSS growth over one stream is noise (a first request decoded, allocator arenas): the
    # per-stream memory goal is judged where there are many streams.
    goals["memory_under_200kib_per_stream"] = all(
        c["kib_per_stream"] < 200 for c in cases if c["streams"] >= 100
    )
    if not args.skip_gcp:
        goals["within_2x_of_gcp_p50"] = all(c["p50_ms"] <= 2 * c["gcp_p50_ms"] for c in cases)
    print(json.dumps({"bench": "xds", "pushes": args.pushes, "cases": cases, "goals": goals}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
