"""Prometheus metrics of the xDS server (``tsgw_xds_*``), registered once per process."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONNECTED_STREAMS = Gauge(
    "tsgw_xds_connected_streams", "ADS streams currently open, by protocol variant.", ["variant"]
)
PUSHES = Counter("tsgw_xds_pushes_total", "Discovery responses sent, by resource type.", ["type"])
PUSH_DURATION = Histogram(
    "tsgw_xds_push_duration_seconds",
    "Time to assemble and write one discovery response, by resource type.",
    ["type"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
NACKS = Counter("tsgw_xds_nacks_total", "Responses an Envoy rejected (NACK), by resource type.", ["type"])
# Every type tsgw serves starts at 0: a counter whose first sample is already 1 has no
# ``increase()`` in Prometheus, so a first NACK would not show (the bed's observability test).
for _type in ("sds", "cds", "eds", "lds", "rds"):
    NACKS.labels(_type)
NACK_RESENDS_SUPPRESSED = Counter(
    "tsgw_xds_nack_resends_suppressed_total",
    "Pushes withheld because the client had rejected that very version, by resource type.",
    ["type"],
)
STALE_REQUESTS = Counter(
    "tsgw_xds_stale_requests_total", "Requests carrying an outdated nonce, by resource type.", ["type"]
)
SEND_FALLBACKS = Counter(
    "tsgw_xds_send_fallbacks_total",
    "Responses sent by grpclib's own send path instead of the one-write fast path, by reason: "
    "flow_control (the window or the write buffer cannot take the whole response now), "
    "internals (grpclib's or h2's objects are not as the fast path expects), "
    "disabled (ServerOptions.fast_send is off).",
    ["reason"],
)
AUTH_REFUSED = Counter(
    "tsgw_xds_auth_refused_total",
    "ADS streams refused with PERMISSION_DENIED, by reason: missing (no authorization header), "
    "malformed (not a Bearer v1. token), invalid (not the token of the node's group).",
    ["reason"],
)
SNAPSHOT_GENERATION = Gauge(
    "tsgw_xds_snapshot_generation", "Generation number of the current snapshot, by node group.", ["group"]
)


def known_groups() -> set[str]:
    return {s.labels["group"] for m in SNAPSHOT_GENERATION.collect() for s in m.samples}


# What each live server reports when scraped: {group: {sync state: Envoys}}. Computed then from
# the server's own state, so the series can never disagree with ``group_sync`` (the
# ``Programmed`` condition's judge) and nothing is updated per event.
_envoy_sources: weakref.WeakKeyDictionary[object, Callable[[], Mapping[str, Mapping[str, int]]]] = (
    weakref.WeakKeyDictionary()
)
SYNC_STATES = ("synced", "pending", "rejected")


def register_envoys(owner: object, source: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
    """Report ``source()`` as ``tsgw_xds_envoys`` while ``owner`` lives."""
    _envoy_sources[owner] = source


class _EnvoyCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        envoys = GaugeMetricFamily(
            "tsgw_xds_envoys",
            "Envoys connected to this server, by node group and whether they hold the group's "
            "current snapshot: synced, pending (not yet acknowledged) or rejected (NACKed; Envoy "
            "keeps its last good config).",
            labels=["group", "sync"],
        )
        totals: dict[str, dict[str, int]] = {}
        for source in list(_envoy_sources.values()):
            for group, states in source().items():
                into = totals.setdefault(group, dict.fromkeys(SYNC_STATES, 0))
                for state, n in states.items():
                    into[state] = into.get(state, 0) + n
        for group in sorted(totals):
            for state in SYNC_STATES:
                envoys.add_metric([group, state], totals[group][state])
        yield envoys


REGISTRY.register(_EnvoyCollector())
