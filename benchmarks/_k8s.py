"""Shared by the kube benchmarks: RSS and loop-stall probes, and the Go peers' build.

The Go peers (benchmarks/clientgo: client-go's informer, controller-runtime's reconciler and a
bare writer) are one Go module pinned in its go.mod (tools/versions.toml's ``[bench]`` names the
same client-go and controller-runtime; tests/unit/test_versions.py checks it). :func:`clientgo_bin`
builds it with the ordinary ``go`` client (modules from the Go module proxy, ``GOTOOLCHAIN=local``,
``-mod=readonly``: a go.mod that does not cover the sources fails the build instead of being
silently upgraded)
into ``~/.cache/tsgw/bench/clientgo-<client-go version>-<hash of the sources>/``, outside the
repository, and reuses that build while the sources are unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import anyio


def rss_bytes() -> int:
    """Resident set size now, after returning freed heap to the OS (fair to every peer)."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def max_loop_stall(seconds: float, churn: bool = True) -> dict[str, float]:
    """Longest event-loop stalls (ms) over ``seconds`` while a task allocates container objects,
    so the collector runs (including full collections) as it would in a live operator.

    ``wall``: the longest a 1 ms sleep overshot (includes the OS preempting us on a busy machine);
    ``cpu``: the same measured in this thread's CPU time (only work done in-process: other tasks
    and the collector); ``gc``: the longest single collection, wall clock.
    """
    worst_wall = worst_cpu = worst_gc = 0.0
    done = False
    gc_started = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_started, worst_gc
        if phase == "start":
            gc_started = time.perf_counter()
        else:
            worst_gc = max(worst_gc, time.perf_counter() - gc_started)

    async def allocate() -> None:
        # Short-lived container garbage, like parsing events and building requests: enough
        # allocations to trigger young and (eventually) full collections, a small live set of
        # its own, so the stall measured is the collector walking the *cache*.
        keep: list[object] = []
        while not done:
            keep.append([{"k": i, "v": [i]} for i in range(200)])
            if len(keep) > 5:
                keep.clear()
            await anyio.lowlevel.checkpoint()

    gc.callbacks.append(on_gc)
    try:
        async with anyio.create_task_group() as tg:
            if churn:
                tg.start_soon(allocate)
            end = anyio.current_time() + seconds
            while anyio.current_time() < end:
                t, c = time.perf_counter(), time.thread_time()
                await anyio.sleep(0.001)
                worst_wall = max(worst_wall, time.perf_counter() - t - 0.001)
                worst_cpu = max(worst_cpu, time.thread_time() - c)
            done = True
            # and one explicit full collection, the worst case a gen-2 pass would hit
            t, c = time.perf_counter(), time.thread_time()
            gc.collect()
            worst_wall = max(worst_wall, time.perf_counter() - t)
            worst_cpu = max(worst_cpu, time.thread_time() - c)
    finally:
        gc.callbacks.remove(on_gc)
    return {"wall": worst_wall * 1000, "cpu": worst_cpu * 1000, "gc": worst_gc * 1000}


def env_kubeconfig() -> str:
    return os.environ["KUBECONFIG"]


CLIENTGO_DIR = Path(__file__).resolve().parent / "clientgo"


def clientgo_version(gomod: str) -> str:
    """The k8s.io/client-go version a go.mod requires (``"unknown"`` when it names none)."""
    m = re.search(r"^\s*k8s\.io/client-go (v\S+)", gomod, re.M)
    return m.group(1) if m else "unknown"


def clientgo_build_dir(src: Path = CLIENTGO_DIR) -> Path:
    """Where the build of ``src`` lives: keyed by client-go's version and a hash of the sources."""
    h = hashlib.sha256()
    files = sorted([*src.rglob("*.go"), src / "go.mod", src / "go.sum"])
    for f in files:
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    version = clientgo_version((src / "go.mod").read_text())
    return Path.home() / ".cache" / "tsgw" / "bench" / f"clientgo-{version}-{h.hexdigest()[:12]}"


def clientgo_bin(name: str) -> Path:
    """The path of the Go peer ``name`` (a command under benchmarks/clientgo/cmd), built if absent."""
    out = clientgo_build_dir()
    if not (out / name).exists():
        out.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=readonly -buildvcs=false",
            "CGO_ENABLED": "0",
        }
        print(f"building {CLIENTGO_DIR} into {out} …", file=sys.stderr)
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{out}/", "./cmd/..."],
            cwd=CLIENTGO_DIR,
            env=env,
            check=True,
            timeout=1200,
        )
    return out / name
