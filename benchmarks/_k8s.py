"""Shared by the kube benchmarks: a real control plane, seeding, RSS and loop-stall probes."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
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


async def max_loop_stall(seconds: float, churn: bool = True) -> float:
    """Longest event-loop stall (ms) over ``seconds`` while a task allocates container objects,
    so the collector runs (including full collections) as it would in a live operator."""
    worst = 0.0
    done = False

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

    async with anyio.create_task_group() as tg:
        if churn:
            tg.start_soon(allocate)
        end = anyio.current_time() + seconds
        while anyio.current_time() < end:
            t = anyio.current_time()
            await anyio.sleep(0.001)
            worst = max(worst, anyio.current_time() - t - 0.001)
        done = True
        # and one explicit full collection, the worst case a timer-driven gen-2 pass would hit
        t = anyio.current_time()
        gc.collect()
        worst = max(worst, anyio.current_time() - t)
    return worst * 1000


def env_kubeconfig() -> str:
    return os.environ["KUBECONFIG"]
