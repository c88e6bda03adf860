"""Prometheus metrics of the xDS server (``tsgw_xds_*``), registered once per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
SNAPSHOT_GENERATION = Gauge(
    "tsgw_xds_snapshot_generation", "Generation number of the current snapshot, by node group.", ["group"]
)


def known_groups() -> set[str]:
    return {s.labels["group"] for m in SNAPSHOT_GENERATION.collect() for s in m.samples}
