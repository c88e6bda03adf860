"""Session-wide rules: async tests run on anyio, and no started process outlives the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.envoy import envoy_factory
from tests.support.fixtures import _no_stray_namespaces, control_plane, envoy_gateway, tailnet, tailnet_box
from tests.support.process import reap_all

__all__ = [
    "_no_stray_namespaces",
    "control_plane",
    "envoy_factory",
    "envoy_gateway",
    "tailnet",
    "tailnet_box",
]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _no_stray_processes() -> Iterator[None]:
    yield
    leaked = reap_all()
    assert not leaked, f"processes still running at the end of the session: {leaked}"
