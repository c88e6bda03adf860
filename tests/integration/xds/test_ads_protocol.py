"""Protocol rules of the ADS server, driven by a scripted client (each move chosen by the test)."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from tests.support.ads_client import ads_client
from tests.support.xds import proxy_snapshot, running_ads
from tsgw.xds import ClusterDiscovery, EndpointDiscovery, ListenerDiscovery, SnapshotCache

pytestmark = pytest.mark.anyio
GROUP = "proxies"


def snap(ports: list[int], **cluster_extra: object):  # type: ignore[no-untyped-def]
    return proxy_snapshot(9999, {"a": ports, "b": [1]}, {"/": "a"}, cluster_extra={"a": cluster_extra})


async def test_sotw_sends_cds_then_eds_on_request_and_is_silent_on_ack() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (_, port), ads_client(port) as c:
        await c.request(ClusterDiscovery)
        cds = await c.recv()
        assert cds.type_url == ClusterDiscovery
        assert sorted(cluster_pb2.Cluster.FromString(r.value).name for r in cds.resources) == ["a", "b"]
        assert cds.control_plane.identifier == "tsgw"
        await c.ack(cds)
        await c.request(EndpointDiscovery, names=["a", "b"])
        eds = await c.recv()
        assert len(eds.resources) == 2
        await c.ack(eds, names=["a", "b"])
        await c.silent()  # an ACK gets no response


async def test_sotw_resends_eds_after_a_cds_change_even_if_endpoints_did_not_change() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (_, port), ads_client(port) as c:
        await c.request(ClusterDiscovery)
        cds = await c.recv()
        await c.ack(cds)
        await c.request(EndpointDiscovery, names=["a", "b"])
        eds = await c.recv()
        await c.ack(eds, names=["a", "b"])
        cache.set_snapshot(GROUP, snap([1], per_connection_buffer_limit_bytes=1024))
        cds2 = await c.recv()
        assert cds2.type_url == ClusterDiscovery
        assert cds2.version_info != cds.version_info
        eds2 = await c.recv()  # an updated cluster warms until its CLA arrives again
        assert eds2.type_url == EndpointDiscovery
        assert eds2.version_info == eds.version_info
        assert len(eds2.resources) == 2


async def test_sotw_ignores_a_request_with_a_stale_nonce() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (server, port), ads_client(port) as c:
        await c.request(ClusterDiscovery)
        first = await c.recv()
        await c.ack(first)
        cache.set_snapshot(GROUP, snap([1], per_connection_buffer_limit_bytes=2048))
        second = await c.recv()
        # A request still echoing the first nonce is stale: no answer, state unchanged.
        await c.request(ClusterDiscovery, version=first.version_info, nonce=first.nonce)
        await c.silent()
        (stream,) = server.streams()
        (cds,) = [t for t in stream.types if t.type_url == ClusterDiscovery]
        assert cds.acked_version == first.version_info
        await c.ack(second)
        await c.silent()


async def test_sotw_nack_is_recorded_and_the_rejected_version_is_never_resent() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (server, port), ads_client(port) as c:
        await c.request(ClusterDiscovery)
        good = await c.recv()
        await c.ack(good)
        cache.set_snapshot(GROUP, snap([1], per_connection_buffer_limit_bytes=7))
        bad = await c.recv()
        # A NACK carries the last good version and the error; the server must not answer it.
        await c.request(ClusterDiscovery, version=good.version_info, nonce=bad.nonce, error="no, thanks")
        await c.silent()
        # Re-requesting (as Envoy may) or setting the same content again does not resend it.
        await c.request(ClusterDiscovery, version=good.version_info, nonce=bad.nonce)
        cache.set_snapshot(GROUP, snap([1], per_connection_buffer_limit_bytes=7))
        await c.silent()
        (stream,) = server.streams()
        (cds,) = [t for t in stream.types if t.type_url == ClusterDiscovery]
        assert cds.nack is not None
        assert cds.nack.version == bad.version_info
        assert cds.nack.detail == "no, thanks"
        assert cds.acked_version == good.version_info
        assert sum(1 for r in c.received if r.type_url == ClusterDiscovery) == 2
        # New content is sent again.
        cache.set_snapshot(GROUP, snap([1], per_connection_buffer_limit_bytes=8))
        fixed = await c.recv()
        assert fixed.version_info not in (good.version_info, bad.version_info)


async def test_sotw_newly_requested_names_are_answered_even_at_the_same_version() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (_, port), ads_client(port) as c:
        await c.request(EndpointDiscovery, names=["a"])
        one = await c.recv()
        assert [r.value for r in one.resources]
        await c.ack(one, names=["a", "b"])
        both = await c.recv()
        assert both.version_info == one.version_info
        assert len(both.resources) == 2


async def test_delta_sends_changes_and_removals_and_honours_subscriptions_with_a_stale_nonce() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (_, port), ads_client(port, delta=True) as c:
        await c.delta_request(ClusterDiscovery)
        cds = await c.recv()
        assert sorted(r.name for r in cds.resources) == ["a", "b"]
        await c.delta_request(ClusterDiscovery, nonce=cds.nonce)
        await c.delta_request(EndpointDiscovery, subscribe=["a", "zzz"])
        eds = await c.recv()
        assert [r.name for r in eds.resources] == ["a"]
        assert list(eds.removed_resources) == ["zzz"]  # subscribed but absent: said so
        # A subscription change carrying an unknown (stale) nonce is still honoured.
        await c.delta_request(EndpointDiscovery, subscribe=["b"], nonce="not-a-nonce")
        more = await c.recv()
        assert [r.name for r in more.resources] == ["b"]
        await c.delta_request(EndpointDiscovery, nonce=more.nonce)
        # Only what changed is sent; a deleted cluster is listed as removed.
        cache.set_snapshot(
            GROUP,
            proxy_snapshot(
                9999, {"a": [1]}, {"/": "a"}, cluster_extra={"a": {"per_connection_buffer_limit_bytes": 5}}
            ),
        )
        upd = await c.recv()
        assert upd.type_url == ClusterDiscovery
        assert [r.name for r in upd.resources] == ["a"]
        assert list(upd.removed_resources) == ["b"]
        gone = await c.recv()
        assert gone.type_url == EndpointDiscovery
        assert list(gone.removed_resources) == ["b"]


async def test_delta_nack_parks_the_rejected_resource_version() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, snap([1]))
    async with running_ads(cache) as (server, port), ads_client(port, delta=True) as c:
        await c.delta_request(ClusterDiscovery)
        cds = await c.recv()
        await c.delta_request(ClusterDiscovery, nonce=cds.nonce)
        cache.set_snapshot(GROUP, snap([1], per_connection_buffer_limit_bytes=3))
        bad = await c.recv()
        await c.delta_request(ClusterDiscovery, nonce=bad.nonce, error="rejected")
        await c.silent()
        # Even an explicit re-subscribe to the rejected resource does not bring it back.
        await c.delta_request(ClusterDiscovery, subscribe=["a"])
        await c.silent()
        (stream,) = server.streams()
        (st,) = [t for t in stream.types if t.type_url == ClusterDiscovery]
        assert st.nack is not None
        assert st.nack.detail == "rejected"


async def test_a_stream_without_a_node_is_refused_as_invalid() -> None:
    cache = SnapshotCache()
    async with running_ads(cache) as (_, port), ads_client(port) as c:
        c._node_sent = True  # pretend: send no node
        await c.request(ListenerDiscovery, end=True)
        with pytest.raises(GRPCError, match="no node") as e:
            await c.recv()
        assert e.value.status is Status.INVALID_ARGUMENT


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_streams_pushes_nacks_and_snapshot_generation() -> None:
    cache = SnapshotCache()
    streams_before = _sample("tsgw_xds_connected_streams", variant="sotw")
    pushes_before = _sample("tsgw_xds_pushes_total", type="cds")
    nacks_before = _sample("tsgw_xds_nacks_total", type="cds")
    suppressed_before = _sample("tsgw_xds_nack_resends_suppressed_total", type="cds")
    durations_before = _sample("tsgw_xds_push_duration_seconds_count", type="cds")
    generation = cache.set_snapshot("metrics", snap([1]))
    assert _sample("tsgw_xds_snapshot_generation", group="metrics") == generation
    async with running_ads(cache) as (_, port), ads_client(port, cluster="metrics") as c:
        await c.request(ClusterDiscovery)
        first = await c.recv()
        assert _sample("tsgw_xds_connected_streams", variant="sotw") == streams_before + 1
        assert _sample("tsgw_xds_envoys", group="metrics", sync="pending") == 1
        await c.ack(first)
        await c.silent(0.2)
        assert _sample("tsgw_xds_envoys", group="metrics", sync="synced") == 1
        cache.set_snapshot("metrics", snap([1], per_connection_buffer_limit_bytes=99))
        bad = await c.recv()
        await c.ack(bad, error="nope")
        await c.silent(0.2)
        assert _sample("tsgw_xds_envoys", group="metrics", sync="rejected") == 1
        assert _sample("tsgw_xds_envoys", group="metrics", sync="synced") == 0
        assert _sample("tsgw_xds_pushes_total", type="cds") == pushes_before + 2
        assert _sample("tsgw_xds_push_duration_seconds_count", type="cds") == durations_before + 2
        assert _sample("tsgw_xds_nacks_total", type="cds") == nacks_before + 1
        assert _sample("tsgw_xds_nack_resends_suppressed_total", type="cds") >= suppressed_before + 1
    await _eventually_zero(streams_before)
    assert _sample("tsgw_xds_envoys", group="metrics", sync="rejected") == 0


async def _eventually_zero(expected: float) -> None:
    import anyio

    with anyio.move_on_after(5):
        while _sample("tsgw_xds_connected_streams", variant="sotw") != expected:  # noqa: ASYNC110 - a gauge
            await anyio.sleep(0.02)
        return
    raise AssertionError("the stream gauge did not come back down within 5 s")
