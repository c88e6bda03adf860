"""One PNG per panel of deploy/grafana/tsgw.json, plotted from series a real Prometheus returned.

``just dashboard-pngs`` runs the bed's observability test with ``TSGW_DASHBOARD_DATA`` set: the
test, with a running install, a real NACK and Prometheus scraping it all, writes each panel's
range query result (``/api/v1/query_range``, 1 s steps over the test) into that JSON file; this
module then draws each panel with matplotlib (dev group only), one line per series, labelled by
the panel's legend format, into ``docs/operations/<slug>.png``. Plots of that data, not
screenshots of Grafana (which cannot run here); the JSON is committed beside them, so the PNGs
can be drawn again without a bed: ``python -m tools.dashboard_pngs DATA.json OUTDIR``.

Data file: ``{"panels": [{"title", "unit", "legend", "query", "series": [{"metric": {...},
"values": [[t, "v"], ...]}]}]}``, in the dashboard's panel order.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["legend", "main", "pick", "render", "slug"]


def slug(title: str) -> str:
    """A file name for a panel title: ``xDS push time p99 by type`` → ``xds-push-time-p99-by-type``."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def legend(fmt: str, metric: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format applied to a series' labels."""
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


UNITS = {"short": "", "ops": "per second", "reqps": "requests per second", "s": "seconds", "bytes": "bytes"}
"""Grafana's unit names of the dashboard's panels, as axis labels."""
MAX_LINES = 8


def pick(series: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The series worth a line: those not zero throughout (all when every one is), the
    :data:`MAX_LINES` highest; and a note on what was left out ("" when nothing)."""

    def peak(s: dict[str, Any]) -> float:
        return max(
            (abs(float(v[1])) for v in s["values"] if v[1] not in ("NaN", "+Inf", "-Inf")), default=0.0
        )

    live = [s for s in series if peak(s) > 0] or list(series)
    live.sort(key=peak, reverse=True)
    notes = []
    if len(live) < len(series):
        notes.append(f"{len(series) - len(live)} zero series not drawn")
    if len(live) > MAX_LINES:
        notes.append(f"the {MAX_LINES} highest of {len(live)}")
    return live[:MAX_LINES], "; ".join(notes)


def render(data: dict[str, Any], out: Path) -> list[Path]:
    """Draw every panel with at least one series; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for panel in data["panels"]:
        if not panel["series"]:
            continue
        shown, more = pick(panel["series"])
        fig, ax = plt.subplots(figsize=(8.0, 2.8), dpi=100)
        t0 = min(float(v[0]) for s in panel["series"] for v in s["values"])
        for s in shown:
            xs = [float(v[0]) - t0 for v in s["values"]]
            ys = [float(v[1]) for v in s["values"]]
            ax.plot(xs, ys, label=legend(panel.get("legend", ""), s["metric"]), linewidth=1.4)
        title = panel["title"] + (f" ({more})" if more else "")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds into the test", fontsize=8)
        ax.set_ylabel(UNITS.get(panel.get("unit", ""), panel.get("unit", "")), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(8))
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        path = out / f"{slug(panel['title'])}.png"
        # Without the date and software stamps a re-render of the same data is the same file.
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tools.dashboard_pngs DATA.json OUTDIR", file=sys.stderr)
        return 2
    data = json.loads(Path(args[0]).read_text())
    for path in render(data, Path(args[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
