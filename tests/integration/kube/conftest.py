"""Fixtures for tsgw.kube against the real API server: a client, a fresh namespace, a CRD."""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from tests.support.controlplane import ControlPlane
from tests.support.widgets import install_widgets, widget_crd
from tsgw.kube import NAMESPACES, Client, Resource, TransportError

GROUP = "test.tsgw.io"
WIDGETS, _ = widget_crd(GROUP)


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """Informers ``gc.freeze()`` the heap after a list; give later tests a normal collector
    (frozen objects are invisible to ``gc.get_referrers``, which Hypothesis relies on)."""
    yield
    gc.unfreeze()


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[Client]:
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as c:
        yield c


@pytest.fixture
async def namespace(client: Client) -> str:
    """A fresh namespace per test (never deleted: no namespace controller runs here)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
async def widgets(client: Client) -> Resource:
    """The Widget CRD, installed and served."""
    return await install_widgets(client, GROUP)


async def retrying(fn, attempts: int = 50):  # type: ignore[no-untyped-def]
    """Call ``fn`` again while the API server is unreachable (across a restart)."""
    for i in range(attempts):
        try:
            return await fn()
        except TransportError:
            if i == attempts - 1:
                raise
            await anyio.sleep(0.2)
    return None
