"""How long a client's connections to a Tailscale Service fail when its primary host stops.

In the tailnet in a box (``tests/tailnet``: tailscale's testcontrol with Tailscale Services),
two containerboot proxies configured from ``tsgw.tailscale.ProxyConfig`` host ``svc:web``; a
tailscaled client opens a fresh connection to the VIP every 50 ms while the primary host is
stopped, gracefully (``sigterm``: containerboot withdraws the service, then waits 20 s) or by a
crash (``sigkill`` of the proxy and its tailscaled). Each run uses a fresh box.

    just bench tailnet_failover [--runs N] [--modes sigkill,sigterm]

The last line is one JSON object: per mode, the gap between the old host's last answer and the
new host's first (``gap_s``), the time from the stop to the new host's first answer
(``since_stop_s``), and failed connections, as min/median/max over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from tests.support.boxed_fake import boxed_tailnet
from tests.support.process import reap_all
from tests.support.tailnet_services import run_failover


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tailnet_failover")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="sigkill,sigterm")
    args = parser.parse_args(argv)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    result: dict[str, object] = {"bench": "tailnet_failover", "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="tsgw-bench-failover-") as tmp:
        for how in args.modes.split(","):
            gaps, since, failed = [], [], []
            for i in range(args.runs):
                with boxed_tailnet(Path(tmp) / f"{how}-{i}") as tn:
                    f = run_failover(tn, how)
                print(f.summary(), flush=True)
                gaps.append(f.gap)
                since.append(f.since_stop)
                failed.append(float(f.failed(after_switch=False) + f.failed(after_switch=True)))
            result[how] = {"gap_s": _stats(gaps), "since_stop_s": _stats(since), "failed": _stats(failed)}
    reap_all()
    print(json.dumps(result))
    return 0
