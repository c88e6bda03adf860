"""The ADS server's one-write send path and its fallback to grpclib's own path.

The fast path (``tsgw/xds/_fastsend.py``) uses private objects of grpclib and h2. When one of
them is not as it expects (simulated here by a stand-in for grpclib's server stream that lacks
one attribute, at several depths), or when it is switched off, every response must still
arrive exactly once and intact, the HTTP/2 flow-control windows the server counts must agree
with the client's (a window charged twice stalls the stream for good once it runs out), and
the fallback must show in ``tsgw_xds_send_fallbacks_total``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import grpclib.protocol
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from prometheus_client import REGISTRY

from tests.support.ads_client import AdsClient, ads_client
from tests.support.xds import cluster, endpoints
from tsgw.xds import (
    AdsServer,
    ClusterDiscovery,
    EndpointDiscovery,
    ServerOptions,
    Snapshot,
    SnapshotCache,
    _fastsend,
)

pytestmark = pytest.mark.anyio
GROUP = "fastsend"


class _Without:
    """``target`` seen through a path of attributes the last of which is missing (as if a newer
    grpclib or h2 had renamed it); everything else reads and writes through to the real object."""

    def __init__(self, target: Any, path: list[str]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name: str) -> Any:
        target, path = self._target, self._path
        if name == path[0]:
            if len(path) == 1:
                raise AttributeError(name)
            return _Without(getattr(target, name), path[1:])
        return getattr(target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)


class _Server(AdsServer):
    """Hands its handlers grpclib's server stream through :class:`_Without` (if ``hide``), and
    keeps the real one for the test to read the flow-control windows from."""

    def __init__(self, cache: SnapshotCache, hide: str, options: ServerOptions) -> None:
        super().__init__(cache, options)
        self.hide = hide
        self.real: list[Any] = []

    async def _sotw_stream(self, stream: Any) -> None:
        self.real.append(stream)
        await self._run(_Without(stream, self.hide.split(".")) if self.hide else stream, "sotw")


@contextlib.asynccontextmanager
async def _serving(server: AdsServer) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


def _snapshot(n: int, tag: str) -> Snapshot:
    names = [f"{tag}-{i:04d}-{'x' * 40}" for i in range(n)]
    return Snapshot(
        {
            ClusterDiscovery: [cluster(name) for name in names],
            EndpointDiscovery: [endpoints(name, [1]) for name in names],
        }
    )


def _fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("tsgw_xds_send_fallbacks_total", {"reason": reason}) or 0.0


async def _windows_agree(server: _Server, client: AdsClient) -> None:
    """Once no frame is in flight, the window the server may still send in (its h2 connection's
    ``local_flow_control_window``) is the one the client grants (``remote_flow_control_window``)."""
    (real,) = server.real
    sps: grpclib.protocol.Stream = real._stream
    cps: grpclib.protocol.Stream = client._stream._stream
    assert sps.id is not None
    assert cps.id is not None
    ours = theirs = 0
    with contextlib.suppress(TimeoutError), anyio.fail_after(5):
        while True:
            ours = sps._h2_connection.local_flow_control_window(sps.id)
            theirs = cps._h2_connection.remote_flow_control_window(cps.id)
            if ours == theirs:
                return
            await anyio.sleep(0.02)  # a WINDOW_UPDATE may still be on its way
    raise AssertionError(f"the server counts a window of {ours} bytes, the client grants {theirs}")


CASES = pytest.mark.parametrize(
    ("hide", "fast_send", "reason"),
    [
        ("", True, None),
        ("", False, _fastsend.DISABLED),
        ("_messages_sent", True, _fastsend.INTERNALS),
        ("_stream.connection.data_send_process", True, _fastsend.INTERNALS),
        ("_stream._transport", True, _fastsend.INTERNALS),
        ("_stream._h2_connection._get_stream_by_id", True, _fastsend.INTERNALS),
    ],
    ids=["fast", "disabled", "messages_sent", "data_send_process", "transport", "get_stream_by_id"],
)


@CASES
async def test_every_response_arrives_once_and_intact_and_the_windows_agree(
    hide: str, fast_send: bool, reason: str | None
) -> None:
    cache = SnapshotCache()
    first, second = _snapshot(3, "small"), _snapshot(600, "large")  # the second spans 5 DATA frames
    cache.set_snapshot(GROUP, first)
    counted = {r: _fallbacks(r) for r in (_fastsend.DISABLED, _fastsend.INTERNALS)}
    server = _Server(cache, hide, ServerOptions(fast_send=fast_send))
    async with _serving(server) as port, ads_client(port, cluster=GROUP) as c:
        sent = 0
        for snap in (first, second):
            if snap is second:
                cache.set_snapshot(GROUP, second)
            else:
                await c.request(ClusterDiscovery)
            resp = await c.recv()
            sent += 1
            assert resp.version_info == snap.type_version(ClusterDiscovery)
            got = sorted(cluster_pb2.Cluster.FromString(r.value).name for r in resp.resources)
            assert got == sorted(snap.resources(ClusterDiscovery).items)
            await c.ack(resp)
        await c.silent(0.3)  # nothing sent twice
        assert len(c.received) == sent
        await _windows_agree(server, c)
    for r, before in counted.items():
        assert _fallbacks(r) == before + (sent if r == reason else 0), r


async def test_a_failed_start_up_check_sends_every_response_by_grpclibs_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fastsend, "problem", lambda: "simulated: a name the fast path uses is gone")
    cache = SnapshotCache()
    snap = _snapshot(600, "large")
    cache.set_snapshot(GROUP, snap)
    before = _fallbacks(_fastsend.INTERNALS)
    server = _Server(cache, "", ServerOptions())
    async with _serving(server) as port, ads_client(port, cluster=GROUP) as c:
        await c.request(ClusterDiscovery)
        resp = await c.recv()
        assert len(resp.resources) == 600
        await c.ack(resp)
        await c.silent(0.3)
        await _windows_agree(server, c)
    assert _fallbacks(_fastsend.INTERNALS) == before + 1
