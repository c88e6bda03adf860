"""Prometheus metrics with controller-runtime's names, labels and buckets (controllers.md §1.14).

They live on ``prometheus_client.REGISTRY``, the process's default registry, which already carries
the process collector and every other library's series (``tsgw_xds_*``): one ``/metrics`` serves
them all, as controller-runtime registers on its one ``metrics.Registry``. Gauges
that describe work in flight (``workqueue_unfinished_work_seconds``, the longest running
processor) are computed when scraped from the live queues, instead of by a 500 ms ticker.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import anyio
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ControllerMetrics", "QueueMetricsAdapter", "register_client", "register_queue"]

_RECONCILE_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5),
    *(0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0),
    *(6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0),
)
_QUEUE_BUCKETS = [1e-8 * 10**i for i in range(12)]

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
)
TERMINAL_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors_total",
    "Total number of terminal reconciliation errors per controller",
    ["controller"],
)
RECONCILE_PANICS = Counter(
    "controller_runtime_reconcile_panics_total",
    "Total number of reconciliation panics per controller",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=_RECONCILE_BUCKETS,
)
MAX_CONCURRENT = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
)
QUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of workqueue", ["name", "controller", "priority"])
QUEUE_ADDS = Counter(
    "workqueue_adds_total",
    "Total number of adds handled by workqueue",
    ["name", "controller"],
)
QUEUE_LATENCY = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name", "controller"],
    buckets=_QUEUE_BUCKETS,
)
WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes",
    ["name", "controller"],
    buckets=_QUEUE_BUCKETS,
)
QUEUE_RETRIES = Counter(
    "workqueue_retries_total",
    "Total number of retries handled by workqueue",
    ["name", "controller"],
)
LEADER_STATUS = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, "
    "0 indicates backup, 1 indicates master.",
    ["name"],
)
LEADER_SLOWPATH = Counter(
    "leader_election_slowpath_total",
    "Total number of slow path exercised in renewing leader leases.",
    ["name"],
)

_queues: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_clients: weakref.WeakSet[Any] = weakref.WeakSet()


def register_queue(name: str, queue: Any) -> None:
    """Report ``queue``'s in-flight work under ``name`` when scraped."""
    _queues[name] = queue


def register_client(client: Any) -> None:
    """Report ``client``'s request counts as ``rest_client_requests_total``."""
    _clients.add(client)


class _LiveCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        unfinished = GaugeMetricFamily(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by "
            "work_duration. Large values indicate stuck threads.",
            labels=["name", "controller"],
        )
        longest = GaugeMetricFamily(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            labels=["name", "controller"],
        )
        for name, q in list(_queues.items()):
            try:
                now = q._clock.now()
            except anyio.NoEventLoopError:
                # Scraped outside the queue's event loop (a threaded exporter, a test reading the
                # registry): its clock cannot be read there, so its in-flight work is not reported.
                continue
            starts = q.processing_starts()
            unfinished.add_metric([name, name], sum(now - s for s in starts))
            longest.add_metric([name, name], max((now - s for s in starts), default=0.0))
        yield unfinished
        yield longest
        requests = CounterMetricFamily(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            labels=["code", "method", "host"],
        )
        for client in list(_clients):
            for (method, code), n in client.requests.items():
                requests.add_metric([str(code) if code else "<error>", method, client.host], n)
        yield requests


REGISTRY.register(_LiveCollector())


class ControllerMetrics:
    """The per-controller series, created (at zero) when the controller starts."""

    def __init__(self, controller: str) -> None:
        self.name = controller
        for result in ("success", "error", "requeue", "requeue_after"):
            RECONCILE_TOTAL.labels(controller, result)
        RECONCILE_ERRORS.labels(controller)
        TERMINAL_ERRORS.labels(controller)
        RECONCILE_PANICS.labels(controller)
        self.active = ACTIVE_WORKERS.labels(controller)
        self.time = RECONCILE_TIME.labels(controller)

    def result(self, result: str) -> None:
        RECONCILE_TOTAL.labels(self.name, result).inc()

    def error(self, terminal: bool) -> None:
        RECONCILE_ERRORS.labels(self.name).inc()
        if terminal:
            TERMINAL_ERRORS.labels(self.name).inc()

    def max_concurrent(self, n: int) -> None:
        MAX_CONCURRENT.labels(self.name).set(n)


class QueueMetricsAdapter:
    """Implements the work queue's metrics hook with the ``workqueue_*`` series."""

    def __init__(self, name: str) -> None:
        self._depth = QUEUE_DEPTH.labels(name, name, "")
        self._adds = QUEUE_ADDS.labels(name, name)
        self._latency = QUEUE_LATENCY.labels(name, name)
        self._work = WORK_DURATION.labels(name, name)
        self._retries = QUEUE_RETRIES.labels(name, name)

    def add(self) -> None:
        self._adds.inc()

    def depth(self, value: int) -> None:
        self._depth.set(value)

    def retry(self) -> None:
        self._retries.inc()

    def queue_latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def work_duration(self, seconds: float) -> None:
        self._work.observe(seconds)
