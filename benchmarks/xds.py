"""Push latency of tsgw's ADS server against go-control-plane's, measured by the same clients.

For N ADS streams and C clusters: the time from setting new resources until every connected
stream has ACKed the new CDS version (p50, p99 over >= 50 pushes), the server's CPU per push
(the input build excluded: each server reports the CPU it spent building a push's resources,
which is subtracted) and its memory per stream (heap growth from before the streams connect to
after each has its first response, divided by N: the Go heap plus goroutine stacks from
runtime.MemStats after a GC for go-control-plane, tracemalloc's traced memory for tsgw; raw RSS
growth is reported beside it). Three servers, fed the same resources over the same stdin protocol:

    tsgw           tsgw.xds (SnapshotCache, AdsServer)
    gcp_linear     go-control-plane v0.14.0: a LinearCache per type (CDS, EDS) in a MuxCache;
                   each resource serialised once and shared by every stream
    gcp_snapshot   go-control-plane v0.14.0: the snapshot cache, which serialises every
                   response per stream

The protocol (benchmarks/gcp/cmd/gcp-server speaks it too):

    push <clusters> <n>   build push n's resources, set them, print "pushed n <t0 ns> <build cpu ns>";
                          once every stream ACKed it, print "acked n <t1 ns>"
    streams               print "streams <count>"
    acks                  print "acks <streams that ACKed the last push> <open streams>"
    mem                   print "mem <bytes>" (heap in use; tsgw's first call starts tracemalloc,
                          its second reads and stops it)

Streams are the Go load client (benchmarks/gcp/cmd/loadclient): one gRPC connection per stream,
as Envoys have; it reads only each response's envelope (version, nonce, type, resource count)
with protowire, ACKs at once, and fully decodes and checks one response in 50 per stream, so it
costs little and the same for every server (its CPU per push is reported). One stream (a
``1xC`` case) is a real Envoy instead. Every cluster changes on every push (its buffer limit),
endpoints do not; the servers group Envoys by node.cluster, so all streams share one snapshot.
Everything shares the machine's cores: report ``uptime`` with the figures.

Cases: 100 and 500 streams x 1,000 clusters (the goals' cases); ``--full`` adds 1,000 x 1,000
and 100 x 10,000. Every wait has a deadline: a case that misses one is reported with its error
and the run goes on. Goals (issue 18): p50 and CPU per push >= 2x better than gcp_linear at
100 and 500 x 1,000, memory per stream < 100 KiB. Prints one JSON line last.

Usage: just bench xds [--pushes N] [--cases 100x1000,...] [--full] [--servers tsgw,gcp_linear,...]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GCP_DIR = Path(__file__).resolve().parent / "gcp"
GROUP = "bench"
DEFAULT_CASES = "100x1000,500x1000"
FULL_CASES = "1000x1000,100x10000"
SERVERS = ("tsgw", "gcp_linear", "gcp_snapshot")
GOAL_CASES = ((100, 1000), (500, 1000))
MEMORY_GOAL_KIB = 100


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
    import gc
    import tracemalloc

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
                    c0 = time.process_time_ns()
                    clusters, las = build_clusters(n, push)
                    build = time.process_time_ns() - c0
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
                    out(f"pushed {f[2]} {t0} {build}")
                elif f and f[0] == "streams":
                    out(f"streams {server.stream_count()}")
                elif f and f[0] == "acks":
                    out(f"acks {len(state['acked'])} {server.stream_count()}")
                elif f and f[0] == "mem":
                    gc.collect()
                    if tracemalloc.is_tracing():
                        traced = tracemalloc.get_traced_memory()[0]
                        tracemalloc.stop()
                        out(f"mem {traced}")
                    else:
                        tracemalloc.start()
                        out("mem 0")
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
    """A child process speaking the line protocol on stdin/stdout; every wait has a deadline.

    A thread reads stdout into a queue, so :meth:`expect` times out even when the child prints
    nothing at all (a server that never sees every ACK)."""

    def __init__(self, argv: Sequence[str], log: Path, **kw: Any) -> None:
        self.log = log.open("w")
        self.p = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, **kw
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._pending: list[list[str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._lines.put(line)
        self._lines.put("")  # end of output

    def expect(self, word: str, timeout: float = 120.0) -> list[str]:
        """The next line that starts with ``word``, split. Lines that start with another word are
        kept for a later ``expect``, never dropped: a server may print "acked" before "pushed"
        (go-control-plane's LinearCache answers and gets ACKs while SetResources still runs)."""
        for i, f in enumerate(self._pending):
            if f[0] == word:
                del self._pending[i]
                return f
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {word!r} from {Path(self.p.args[0]).name} in {timeout} s")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if not line:
                self._lines.put("")
                raise RuntimeError(f"{self.p.args[0]} exited (see {self.log.name})")
            f = line.split()
            if f and f[0] == word:
                return f
            if f:
                self._pending.append(f)

    def ask(self, line: str, word: str, timeout: float = 120.0) -> list[str]:
        self.send(line)
        return self.expect(word, timeout)

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
        """Close stdin (the child's cue to exit), wait for it (kill after 10 s), close the pipes."""
        if self.p.stdin:
            with contextlib.suppress(BrokenPipeError):
                self.p.stdin.close()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        self._reader.join(5)  # the child is gone: its stdout ends
        if self.p.stdout is not None:
            self.p.stdout.close()
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


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def server_argv(kind: str, bins: Path) -> list[str]:
    if kind == "tsgw":
        return [sys.executable, "-m", "benchmarks.xds", "serve"]
    cache = {"gcp_linear": "linear", "gcp_snapshot": "snapshot"}[kind]
    return [str(bins / "gcp-server"), "-group", GROUP, "-cache", cache]


def run_case(kind: str, streams: int, clusters: int, pushes: int, bins: Path, work: Path) -> dict[str, Any]:
    """One server, one case: connect the streams, then ``pushes`` timed pushes after a warm-up."""
    # A push to every stream moves ~streams x clusters x 100 bytes: scale the deadlines with it.
    push_deadline = 60.0 + streams * clusters / 5_000
    srv = Line(server_argv(kind, bins), work / f"{kind}-{streams}x{clusters}.log", cwd=ROOT)
    client: Line | None = None
    envoy: subprocess.Popen[bytes] | None = None
    try:
        port = int(srv.expect("listening", timeout=60)[1])
        srv.send(f"push {clusters} 0")
        srv.expect("pushed")
        time.sleep(0.3)
        mem0 = int(srv.ask("mem", "mem")[1])
        rss0 = srv.rss_kib()
        if streams == 1:
            envoy = start_envoy(port, work)
        else:
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
            try:
                client.expect("connected", timeout=push_deadline + 120)
            except TimeoutError:
                got = client.ask("stats", "stats", timeout=10)[4]
                raise TimeoutError(f"only {got} of {streams} streams had a first response") from None
        deadline = time.monotonic() + 120
        while int(srv.ask("streams", "streams")[1]) < streams:  # until every stream is open
            if time.monotonic() > deadline:
                raise TimeoutError(f"{streams} streams did not open within 120 s")
            time.sleep(0.1)
        time.sleep(1.0 if streams > 1 else 3.0)
        mem1 = int(srv.ask("mem", "mem", timeout=300)[1])
        rss1 = srv.rss_kib()
        latencies: list[float] = []
        build_ns = 0
        cpu0 = client_cpu0 = 0.0
        for k in range(1, pushes + 2):  # push 1 warms up and is not counted
            if k == 2:
                cpu0 = srv.cpu_s()
                client_cpu0 = client.cpu_s() if client is not None else 0.0
            srv.send(f"push {clusters} {k}")
            pushed = srv.expect("pushed", timeout=push_deadline)
            try:
                t1 = int(srv.expect("acked", timeout=push_deadline)[2])
            except TimeoutError:
                acks = srv.ask("acks", "acks", timeout=10)
                raise TimeoutError(
                    f"push {k}: only {acks[1]} of {acks[2]} streams ACKed within {push_deadline:g} s"
                ) from None
            if k > 1:
                latencies.append((t1 - int(pushed[2])) / 1e6)
                build_ns += int(pushed[3])
            time.sleep(0.2)
        cpu = srv.cpu_s() - cpu0 - build_ns / 1e9
        client_cpu = client.cpu_s() - client_cpu0 if client is not None else 0.0
        result: dict[str, Any] = {
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "cpu_ms_per_push": round(cpu * 1000 / pushes, 1),
            "build_cpu_ms_per_push": round(build_ns / 1e6 / pushes, 1),
            "kib_per_stream": round(max(0, mem1 - mem0) / 1024 / streams, 1),
            "rss_kib_per_stream": round(max(0, rss1 - rss0) / streams, 1),
        }
        if client is not None:
            # The load client shares the cores: its CPU is part of every latency, equally.
            result["client_cpu_ms_per_push"] = round(client_cpu * 1000 / pushes, 1)
            stats = client.ask("stats", "stats")
            result["responses_checked"], bad = int(stats[2]), int(stats[3])
            if bad:
                raise RuntimeError(f"the load client found {bad} bad responses (see its log)")
        return result
    finally:
        if client is not None:
            client.stop()
        if envoy is not None:
            envoy.terminate()
            envoy.wait(10)
        srv.stop()


def ratio(theirs: Any, ours: Any) -> float | None:
    if not isinstance(theirs, float | int) or not isinstance(ours, float | int) or ours <= 0:
        return None
    return round(theirs / ours, 2)


def goals_of(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Issue 18's goals, from the cases of one run (None where a figure is missing)."""
    goals: dict[str, Any] = {}
    for streams, clusters in GOAL_CASES:
        case = next((c for c in cases if (c["streams"], c["clusters"]) == (streams, clusters)), None)
        if case is None:
            continue
        ours, theirs = case["servers"].get("tsgw", {}), case["servers"].get("gcp_linear", {})
        for metric, key in (("p50", "p50_ms"), ("cpu_per_push", "cpu_ms_per_push")):
            r = ratio(theirs.get(key), ours.get(key))
            goals[f"{metric}_vs_gcp_linear_at_{streams}x{clusters}"] = r
            goals[f"{metric}_2x_better_than_gcp_linear_at_{streams}x{clusters}"] = r is not None and r >= 2
    mems = [
        c["servers"]["tsgw"]["kib_per_stream"]
        for c in cases
        if c["streams"] >= 100 and "kib_per_stream" in c["servers"].get("tsgw", {})
    ]
    goals[f"memory_under_{MEMORY_GOAL_KIB}kib_per_stream"] = bool(mems) and max(mems) < MEMORY_GOAL_KIB
    return goals


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: Sequence[str] = ()) -> int:
    argv = list(argv)
    if argv and argv[0] == "serve":
        return serve(argv[1:])
    p = argparse.ArgumentParser(prog="just bench xds")
    p.add_argument("--pushes", type=int, default=50, help="measured pushes per case (default 50)")
    p.add_argument("--cases", default=DEFAULT_CASES, help=f"STREAMSxCLUSTERS,... (default {DEFAULT_CASES})")
    p.add_argument("--full", action="store_true", help=f"add {FULL_CASES}")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"a subset of {','.join(SERVERS)}")
    args = p.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    if unknown := set(servers) - set(SERVERS):
        p.error(f"unknown servers: {sorted(unknown)}")
    specs = args.cases.split(",") + (FULL_CASES.split(",") if args.full else [])
    bins = go_binaries()
    cases = []
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-xds-") as tmp:
        work = Path(tmp)
        for spec in specs:
            streams, clusters = (int(x) for x in spec.split("x"))
            case: dict[str, Any] = {
                "streams": streams,
                "clusters": clusters,
                "client": "envoy" if streams == 1 else "loadclient",
                "load_before": load(),
                "servers": {},
            }
            for kind in servers:
                try:
                    case["servers"][kind] = run_case(kind, streams, clusters, args.pushes, bins, work)
                except (TimeoutError, RuntimeError) as e:
                    case["servers"][kind] = {"error": str(e)}
            case["load_after"] = load()
            print(json.dumps(case), file=sys.stderr)
            cases.append(case)
    result = {"bench": "xds", "pushes": args.pushes, "cases": cases, "goals": goals_of(cases)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
