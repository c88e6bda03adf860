"""Shared fixtures for real components; ``tests/conftest.py`` imports them so every test sees them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.boxed_fake import BoxedTailnet, boxed_tailnet
from tests.support.controlplane import ControlPlane
from tests.support.envoy_gateway import EnvoyGateway
from tests.support.netns import delete_all
from tests.support.tailnet import Tailnet


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


@pytest.fixture(scope="session")
def tailnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tailnet]:
    """Headscale with embedded DERP in a private namespace; tests add tailscaled nodes to it."""
    tn = Tailnet(tmp_path_factory.mktemp("tailnet"))
    try:
        yield tn
    finally:
        tn.close()


@pytest.fixture
def tailnet_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxedTailnet]:
    """One tailnet in a box, one per test (tests change services, devices and keys):
    tsgw-testcontrol (tailscale's testcontrol with Tailscale Services, DERP, STUN, an admin API)
    in a private namespace, and the hosted-API fake bound to it on loopback. Tests drive it
    through the documented API (``.api_url`` and the OAuth credentials, for
    ``tsgw.tailscale.TailscaleClient``) and start tailscaled nodes in ``.box``."""
    with boxed_tailnet(tmp_path_factory.mktemp("box")) as tn:
        yield tn


@pytest.fixture(scope="session")
def envoy_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoyGateway]:
    """Envoy Gateway standalone (file provider, host infrastructure) in a private namespace."""
    eg = EnvoyGateway(tmp_path_factory.mktemp("envoy-gateway"))
    try:
        yield eg
    finally:
        eg.close()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_namespaces() -> Iterator[None]:
    yield
    leaked = delete_all()
    assert not leaked, f"network namespaces left at the end of the session: {leaked}"
