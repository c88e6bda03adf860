"""The ADS server against real Envoy 1.40, state-of-the-world and delta."""

from __future__ import annotations

import pytest

from tests.support.backend import HttpBackend
from tests.support.envoy import Envoy, EnvoyFactory
from tests.support.process import free_port
from tests.support.xds import eventually, get, proxy_snapshot, running_ads, type_status
from tsgw.xds import (
    AdsServer,
    ClusterDiscovery,
    EndpointDiscovery,
    ListenerDiscovery,
    RouteDiscovery,
    SnapshotCache,
    bootstrap,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
VARIANTS = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
GROUP = "proxies"


def make_envoy(envoy_factory: EnvoyFactory, xds_port: int, delta: bool, node: str = "envoy-0") -> Envoy:
    return envoy_factory(
        bootstrap(node, GROUP, f"127.0.0.1:{xds_port}", delta=delta, admin_port=0),
        name=node,
        start=False,
    )


async def body(port: int, path: str = "/") -> str:
    r = await get(port, path)
    return f"{r.status_code} {r.text}"


@VARIANTS
async def test_envoy_receives_lds_rds_cds_eds_by_ads_and_proxies(
    delta: bool, envoy_factory: EnvoyFactory
) -> None:
    cache = SnapshotCache()
    with HttpBackend("alpha") as backend:
        lport = free_port()
        snap = proxy_snapshot(lport, {"alpha": [backend.port]}, {"/": "alpha"}, version="v1")
        cache.set_snapshot(GROUP, snap)
        async with running_ads(cache) as (server, xds_port):
            envoy = make_envoy(envoy_factory, xds_port, delta)
            await envoy.astart()
            assert await body(lport, "/x") == "200 alpha"
            (stream,) = server.streams()
            assert stream.node_id == "envoy-0"
            assert stream.group == GROUP
            assert stream.variant == ("delta" if delta else "sotw")
            for t in (ClusterDiscovery, EndpointDiscovery, ListenerDiscovery, RouteDiscovery):
                await eventually(
                    lambda t=t: _acked(server, t, snap.type_version(t)),
                    f"{t} ACKed",  # type: ignore[misc]
                )
            stats = await envoy.astats()
            assert stats["control_plane.connected_state"] == 1
            assert stats["cluster_manager.cds.update_rejected"] == 0
            assert stats["listener_manager.lds.update_rejected"] == 0


async def _acked(server: AdsServer, type_url: str, version: str) -> bool:
    return type_status(server, type_url).acked_version == version
