"""``tsgw_xds_envoys``: what every live server reports, summed by group, zero-filled by state."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from tsgw.xds import _metrics


class _Owner:
    pass


def _value(group: str, sync: str) -> float | None:
    return REGISTRY.get_sample_value("tsgw_xds_envoys", {"group": group, "sync": sync})


def test_envoys_are_summed_over_servers_and_every_state_is_reported() -> None:
    a, b = _Owner(), _Owner()
    _metrics.register_envoys(a, lambda: {"web.demo": {"synced": 2, "rejected": 1}})
    _metrics.register_envoys(b, lambda: {"web.demo": {"rejected": 1}, "db.demo": {"pending": 1}})
    assert _value("web.demo", "synced") == 2
    assert _value("web.demo", "rejected") == 2
    assert _value("web.demo", "pending") == 0
    assert _value("db.demo", "pending") == 1
    assert _value("db.demo", "synced") == 0
    del a, b
    gc.collect()
    assert _value("web.demo", "synced") is None  # a server that is gone reports nothing
