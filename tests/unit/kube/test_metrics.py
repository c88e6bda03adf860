"""One metrics registry per process: kube's series live beside the xDS server's and the process's."""

from __future__ import annotations

import prometheus_client
import pytest

import tsgw.xds  # noqa: F401  (registers the tsgw_xds_* series)
from tsgw.kube import HealthServer, ManagerOptions
from tsgw.kube._metrics import ControllerMetrics

pytestmark = pytest.mark.anyio


async def test_kube_registers_on_the_process_default_registry_beside_xds() -> None:
    ControllerMetrics("one-registry").max_concurrent(3)
    value = prometheus_client.REGISTRY.get_sample_value(
        "controller_runtime_max_concurrent_reconciles", {"controller": "one-registry"}
    )
    assert value == 3
    status, _, body = await HealthServer("127.0.0.1", 0).respond("/metrics")
    assert status == 200
    text = body.decode()
    assert 'controller_runtime_max_concurrent_reconciles{controller="one-registry"} 3.0' in text
    assert "tsgw_xds_pushes_total" in text or "tsgw_xds_connected_streams" in text
    assert "process_cpu_seconds_total" in text


def test_the_manager_serves_the_default_registry_unless_told_otherwise() -> None:
    assert ManagerOptions().registry is prometheus_client.REGISTRY
    own = prometheus_client.CollectorRegistry()
    assert ManagerOptions(registry=own).registry is own


def test_a_scrape_outside_the_event_loop_skips_the_queues_in_flight_work_and_reports_the_rest() -> None:
    """A registered work queue's clock is the event loop's: a scrape from another thread (or a
    test reading the registry) must not fail the whole scrape because of it (found in CI: a
    queue an earlier test registered made an unrelated metrics test raise NoEventLoopError)."""
    from tsgw.kube import _metrics
    from tsgw.kube._clock import RealClock

    class _Queue:
        _clock = RealClock()

        def processing_starts(self) -> list[float]:
            return [0.0]

    queue = _Queue()  # registered weakly: kept alive for the scrape
    _metrics.register_queue("outside-the-loop", queue)
    try:
        assert (
            prometheus_client.REGISTRY.get_sample_value(
                "workqueue_unfinished_work_seconds",
                {"name": "outside-the-loop", "controller": "outside-the-loop"},
            )
            is None
        )
        ControllerMetrics("outside-the-loop").max_concurrent(2)
        assert (
            prometheus_client.REGISTRY.get_sample_value(
                "controller_runtime_max_concurrent_reconciles", {"controller": "outside-the-loop"}
            )
            == 2
        )
    finally:
        _metrics._queues.pop("outside-the-loop", None)
        del queue
