"""tools/dashboard_pngs.py: legends as Grafana formats them, one PNG per panel with data."""

from __future__ import annotations

from pathlib import Path

from tools.dashboard_pngs import legend, render, slug


def test_slug_and_legend() -> None:
    assert slug("xDS push time p99 by type") == "xds-push-time-p99-by-type"
    assert (
        legend("{{group}} {{sync}}", {"group": "web-tssvc.demo", "sync": "synced"}) == "web-tssvc.demo synced"
    )
    assert legend("", {"__name__": "up", "job": "tsgw"}) == "job=tsgw"


def test_one_png_per_panel_with_series(tmp_path: Path) -> None:
    data = {
        "panels": [
            {
                "title": "Envoys by group and sync state",
                "unit": "short",
                "legend": "{{group}} {{sync}}",
                "query": "sum by (group, sync) (tsgw_xds_envoys)",
                "series": [
                    {"metric": {"group": "g.demo", "sync": "synced"}, "values": [[100, "1"], [101, "2"]]},
                    {"metric": {"group": "g.demo", "sync": "rejected"}, "values": [[100, "0"], [101, "1"]]},
                ],
            },
            {"title": "Empty", "unit": "", "legend": "", "query": "absent_thing", "series": []},
        ]
    }
    written = render(data, tmp_path)
    assert written == [tmp_path / "envoys-by-group-and-sync-state.png"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
