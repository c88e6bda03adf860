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
