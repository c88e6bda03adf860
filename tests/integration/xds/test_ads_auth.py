"""Authenticated xDS (``ServerOptions.auth_key``): a stream gets its own group's resources with
its group's token, and PERMISSION_DENIED, nothing else and a counted refusal without it."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client import REGISTRY

from tests.support.ads_client import ads_client
from tests.support.xds import proxy_snapshot, running_ads
from tsgw.xds import ClusterDiscovery, ServerOptions, SnapshotCache, group_token

pytestmark = pytest.mark.anyio
KEY = b"k" * 32


def _refused(reason: str) -> float:
    return REGISTRY.get_sample_value("tsgw_xds_auth_refused_total", {"reason": reason}) or 0.0


def _cache() -> SnapshotCache:
    cache = SnapshotCache()
    cache.set_snapshot("a.apps", proxy_snapshot(9999, {"a": [1]}, {"/": "a"}))
    cache.set_snapshot("b.apps", proxy_snapshot(9999, {"b": [1]}, {"/": "b"}))
    return cache


async def test_a_stream_with_its_groups_token_is_served() -> None:
    auth = {"authorization": f"Bearer {group_token(KEY, 'a.apps')}"}
    async with (
        running_ads(_cache(), options=ServerOptions(auth_key=KEY)) as (server, port),
        ads_client(port, cluster="a.apps", metadata=auth) as c,
    ):
        await c.request(ClusterDiscovery)
        cds = await c.recv()
        assert len(cds.resources) == 1
        assert [s.group for s in server.streams()] == ["a.apps"]


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({}, "missing"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "malformed"),
        ({"authorization": f"Bearer {group_token(KEY, 'a.apps')}"}, "invalid"),  # another group's
        ({"authorization": f"Bearer {group_token(b'other key', 'b.apps')}"}, "invalid"),
    ],
)
async def test_a_stream_without_its_groups_token_gets_nothing(metadata: dict[str, str], reason: str) -> None:
    before = _refused(reason)
    async with (
        running_ads(_cache(), options=ServerOptions(auth_key=KEY)) as (server, port),
        ads_client(port, cluster="b.apps", metadata=metadata) as c,
    ):
        await c.request(ClusterDiscovery, end=True)  # half-closed: the status arrives, not a reset
        with pytest.raises(GRPCError) as e:
            await c.recv()
        assert e.value.status is Status.PERMISSION_DENIED
        assert c.received == []
        assert server.group_sync("b.apps") == []
    assert _refused(reason) == before + 1


async def test_without_a_key_streams_are_not_authenticated() -> None:
    async with running_ads(_cache()) as (_, port), ads_client(port, cluster="b.apps") as c:
        await c.request(ClusterDiscovery)
        assert len((await c.recv()).resources) == 1
