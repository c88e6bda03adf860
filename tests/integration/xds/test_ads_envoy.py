"""The ADS server against real Envoy 1.40, state-of-the-world and delta."""

from __future__ import annotations

import anyio
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
    ServerOptions,
    Snapshot,
    SnapshotCache,
    bootstrap,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
VARIANTS = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
GROUP = "proxies"


def make_envoy(envoy_factory: EnvoyFactory, xds_port: int, delta: bool, node: str = "envoy-0") -> Envoy:
    config = bootstrap(node, GROUP, f"127.0.0.1:{xds_port}", delta=delta, admin_port=0)
    return envoy_factory(config, name=node, start=False)


async def body(port: int, path: str = "/") -> str:
    r = await get(port, path)
    return f"{r.status_code} {r.text}"


@VARIANTS
@pytest.mark.parametrize("fast_send", [True, False], ids=["fast", "grpclib"])
async def test_envoy_receives_lds_rds_cds_eds_by_ads_and_proxies(
    delta: bool, fast_send: bool, envoy_factory: EnvoyFactory
) -> None:
    cache = SnapshotCache()
    with HttpBackend("alpha") as backend:
        lport = free_port()
        snap = proxy_snapshot(lport, {"alpha": [backend.port]}, {"/": "alpha"}, version="v1")
        cache.set_snapshot(GROUP, snap)
        async with running_ads(cache, options=ServerOptions(fast_send=fast_send)) as (server, xds_port):
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


async def _cds_pushes(server: AdsServer) -> int:
    return type_status(server, ClusterDiscovery).pushes


@VARIANTS
async def test_updates_take_effect_without_dropping_requests_in_flight(
    delta: bool, envoy_factory: EnvoyFactory
) -> None:
    cache = SnapshotCache()
    with HttpBackend("a1") as a1, HttpBackend("a2") as a2, HttpBackend("b") as b, HttpBackend("c") as c:
        lport = free_port()
        cache.set_snapshot(
            GROUP, proxy_snapshot(lport, {"a": [a1.port], "c": [c.port]}, {"/c": "c", "/": "a"})
        )
        async with running_ads(cache) as (server, xds_port):
            envoy = make_envoy(envoy_factory, xds_port, delta)
            await envoy.astart()
            assert await body(lport, "/c") == "200 c"

            results: list[str] = []

            async def slow() -> None:
                results.append(await body(lport, "/slow?ms=1500"))

            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(slow)
                await eventually(lambda: _in_flight(a1, 5), "slow requests in flight at the backend")
                # New route /b, a second endpoint for a, cluster c removed, all at once.
                cache.set_snapshot(
                    GROUP,
                    proxy_snapshot(lport, {"a": [a1.port, a2.port], "b": [b.port]}, {"/b": "b", "/": "a"}),
                )
                await eventually(lambda: _says(lport, "/b", "200 b"), "new route served")
            assert results == ["200 a1"] * 5  # every request in flight at the update completed

            seen = {await body(lport, "/") for _ in range(20)}
            assert seen == {"200 a1", "200 a2"}  # the new endpoint takes traffic
            assert await body(lport, "/c") in {"200 a1", "200 a2"}  # route /c is gone: "/" matches
            active = (await envoy.aconfig_section("ClustersConfigDump"))["dynamic_active_clusters"]
            assert sorted(x["cluster"]["name"] for x in active) == ["a", "b"]
            (stream,) = server.streams()
            assert all(t.nack is None for t in stream.types)


async def _in_flight(backend: HttpBackend, n: int) -> bool:
    return backend.in_flight >= n


async def _says(port: int, path: str, expected: str) -> bool:
    return await body(port, path) == expected


@VARIANTS
async def test_rejected_snapshot_is_nacked_recorded_never_resent_and_last_good_config_keeps_serving(
    delta: bool, envoy_factory: EnvoyFactory
) -> None:
    cache = SnapshotCache()
    with HttpBackend("good") as good, HttpBackend("better") as better:
        lport = free_port()
        cache.set_snapshot(GROUP, proxy_snapshot(lport, {"a": [good.port]}, {"/": "a"}, version="good"))
        async with running_ads(cache) as (server, xds_port):
            envoy = make_envoy(envoy_factory, xds_port, delta)
            await envoy.astart()
            assert await body(lport) == "200 good"
            good_cds = type_status(server, ClusterDiscovery).acked_version

            # Consistent for us, invalid for Envoy: a cluster's connect_timeout must be > 0.
            bad = proxy_snapshot(
                lport,
                {"a": [good.port]},
                {"/": "a"},
                version="bad",
                cluster_extra={"a": {"connect_timeout": "-1s"}},
            )
            cache.set_snapshot(GROUP, bad)

            async def nacked() -> bool:
                nack = type_status(server, ClusterDiscovery).nack
                return nack is not None and nack.version == bad.type_version(ClusterDiscovery)

            await eventually(nacked, "CDS NACK recorded")
            status = type_status(server, ClusterDiscovery)
            assert status.nack is not None
            assert "Expected positive duration" in status.nack.detail  # Envoy's own words
            assert status.acked_version == good_cds
            pushes = status.pushes

            # An EDS-only change is pushed, the rejected CDS is not resent alongside it.
            cache.set_snapshot(
                GROUP,
                proxy_snapshot(
                    lport,
                    {"a": [good.port]},
                    {"/": "a"},
                    version="bad+eds",
                    cluster_extra={"a": {"connect_timeout": "-1s"}},
                    endpoints_extra={"policy": {"overprovisioning_factor": 150}},
                ),
            )
            eds_version = cache.get_snapshot(GROUP).type_version(EndpointDiscovery)  # type: ignore[union-attr]
            await eventually(lambda: _acked(server, EndpointDiscovery, eds_version), "EDS-only change ACKed")
            await anyio.sleep(0.5)
            assert type_status(server, ClusterDiscovery).pushes == pushes  # counted: nothing resent
            stats = await envoy.astats()
            assert stats["cluster_manager.cds.update_rejected"] == 1
            assert await body(lport) == "200 good"  # last good config serves

            fixed = proxy_snapshot(lport, {"a": [better.port]}, {"/": "a"}, version="fixed")
            cache.set_snapshot(GROUP, fixed)
            await eventually(
                lambda: _acked(server, ClusterDiscovery, fixed.type_version(ClusterDiscovery)),
                "fixed CDS ACKed",
            )
            await eventually(lambda: _says(lport, "/", "200 better"), "fixed config serves")
            assert type_status(server, ClusterDiscovery).pushes == pushes + 1


async def _connected(envoy: Envoy, state: int) -> bool:
    return (await envoy.astats())["control_plane.connected_state"] == state


@VARIANTS
async def test_envoy_restart_then_server_restart_both_reconverge(
    delta: bool, envoy_factory: EnvoyFactory
) -> None:
    xds_port = free_port()
    with HttpBackend("one") as one, HttpBackend("two") as two, HttpBackend("three") as three:
        lport = free_port()
        cache = SnapshotCache()
        cache.set_snapshot(GROUP, proxy_snapshot(lport, {"a": [one.port]}, {"/": "a"}))
        async with running_ads(cache, xds_port) as (server, _):
            envoy = make_envoy(envoy_factory, xds_port, delta)
            await envoy.astart()
            assert await body(lport) == "200 one"

            await envoy.arestart()  # LIVE again only once CDS and LDS came back over ADS
            assert await body(lport) == "200 one"
            cache.set_snapshot(GROUP, proxy_snapshot(lport, {"a": [two.port]}, {"/": "a"}))
            await eventually(lambda: _says(lport, "/", "200 two"), "restarted Envoy follows updates")
            await eventually(lambda: _one_stream(server), "the old stream is gone")

        await eventually(lambda: _connected(envoy, 0), "Envoy noticed the server went away")
        assert await body(lport) == "200 two"  # it keeps its config meanwhile

        restarted = SnapshotCache()  # a new process: nothing survives but the desired state
        restarted.set_snapshot(GROUP, proxy_snapshot(lport, {"a": [three.port]}, {"/": "a"}))
        async with running_ads(restarted, xds_port) as (server2, _):
            await eventually(lambda: _connected(envoy, 1), "Envoy reconnected", wait_s=40)
            await eventually(lambda: _says(lport, "/", "200 three"), "Envoy converged on the new server")
            (stream,) = server2.streams()
            assert stream.node_id == "envoy-0"


async def _one_stream(server: AdsServer) -> bool:
    return len(server.streams()) == 1


def many_clusters(lport: int, backend_port: int, n: int, **cluster_extra: object) -> Snapshot:
    names = [f"c{i:04d}" for i in range(n)]
    return proxy_snapshot(
        lport,
        {name: [backend_port] for name in names},
        {"/": names[0]},
        cluster_extra=dict.fromkeys(names, cluster_extra),
    )


async def _warm(envoy: Envoy, active: int) -> bool:
    s = await envoy.astats()
    return s["cluster_manager.warming_clusters"] == 0 and s["cluster_manager.active_clusters"] == active


@VARIANTS
async def test_thousand_clusters_all_leave_warming_also_after_a_cds_only_update(
    delta: bool, envoy_factory: EnvoyFactory
) -> None:
    n = 1000
    with HttpBackend("many") as backend:
        lport = free_port()
        cache = SnapshotCache()
        first = many_clusters(lport, backend.port, n)
        cache.set_snapshot(GROUP, first)
        async with running_ads(cache) as (server, xds_port):
            envoy = make_envoy(envoy_factory, xds_port, delta)
            await envoy.astart(wait_s=60)
            await eventually(lambda: _warm(envoy, n + 1), f"{n} clusters active", wait_s=60)
            assert await body(lport) == "200 many"

            # Every cluster changes, no endpoint does: each re-warms. (Envoy 1.40 warms an updated
            # cluster from its EDS cache; older Envoys need EDS again, which the server sends:
            # tests/integration/xds/test_ads_protocol.py pins that.)
            second = many_clusters(lport, backend.port, n, per_connection_buffer_limit_bytes=65536)
            assert second.type_version(EndpointDiscovery) == first.type_version(EndpointDiscovery)
            cache.set_snapshot(GROUP, second)
            await eventually(
                lambda: _acked(server, ClusterDiscovery, second.type_version(ClusterDiscovery)),
                "updated CDS ACKed",
                wait_s=60,
            )
            await eventually(lambda: _warm(envoy, n + 1), "no cluster stuck in warming", wait_s=60)
            dump = await envoy.aconfig_section("ClustersConfigDump")
            assert not dump.get("dynamic_warming_clusters")
            assert len(dump["dynamic_active_clusters"]) == n
            assert await body(lport) == "200 many"
