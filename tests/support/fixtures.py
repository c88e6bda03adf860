"""Shared fixtures for real components; ``tests/conftest.py`` imports them so every test sees them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver for the whole session (about 3 s to start)."""
    workdir: Path = tmp_path_factory.mktemp("controlplane")
    cp = ControlPlane(workdir)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
