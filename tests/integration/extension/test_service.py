"""The extension server answers Envoy Gateway's RPCs over a real gRPC channel (grpclib client,
the server on loopback): the paths, messages and "no change" answers Envoy Gateway expects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from tsgw import api
from tsgw.extension import RBAC_FILTER, ROUTE_ACCESS_KIND, SERVICE, ExtensionService
from tsgw.extension import contexts as ctx
from tsgw.extension import messages as pb

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@asynccontextmanager
async def served() -> AsyncIterator[tuple[ExtensionService, Channel]]:
    service = ExtensionService()
    async with anyio.create_task_group() as tg:
        port = await tg.start(service.serve, "127.0.0.1", 0)
        channel = Channel("127.0.0.1", port)
        try:
            yield service, channel
        finally:
            channel.close()
            tg.cancel_scope.cancel()


async def call(channel: Channel, rpc: str, request: Any, response: type) -> Any:
    method: UnaryUnaryMethod[Any, Any] = UnaryUnaryMethod(
        channel, f"/{SERVICE}/{rpc}", type(request), response
    )
    with anyio.fail_after(10):
        return await method(request)


def tailscale_endpoints() -> bytes:
    return orjson.dumps(
        {
            "apiVersion": api.API_VERSION,
            "kind": "TailscaleEndpoints",
            "metadata": {"name": "db", "namespace": "apps"},
            "spec": {
                "tailnetRef": {"name": "corp"},
                "targets": [
                    {"name": "a", "address": "100.64.0.7", "ports": [{"port": 80, "protocol": "HTTP"}]}
                ],
            },
        }
    )


async def test_post_cluster_modify_answers_the_tailnet_cluster_and_leaves_others_alone() -> None:
    cluster = cluster_pb2.Cluster(name="httproute/apps/web/rule/0", type=cluster_pb2.Cluster.EDS)
    async with served() as (service, channel):
        ours = await call(
            channel,
            "PostClusterModify",
            pb.PostClusterModifyRequest(
                cluster=cluster,
                post_cluster_context=ctx.PostClusterExtensionContext(
                    backend_extension_resources=[
                        ctx.ExtensionResource(unstructured_bytes=tailscale_endpoints())
                    ]
                ),
            ),
            pb.PostClusterModifyResponse,
        )
        foreign = await call(
            channel,
            "PostClusterModify",
            pb.PostClusterModifyRequest(
                cluster=cluster,
                post_cluster_context=ctx.PostClusterExtensionContext(
                    backend_extension_resources=[
                        ctx.ExtensionResource(unstructured_bytes=b'{"apiVersion":"v1","kind":"Service"}')
                    ]
                ),
            ),
            pb.PostClusterModifyResponse,
        )
    assert ours.cluster.type == cluster_pb2.Cluster.STRICT_DNS
    sa = ours.cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (sa.address, sa.port_value) == ("db.apps.svc.cluster.local", 80)
    # Unset: Envoy Gateway's client reads a nil cluster as "no change".
    assert not foreign.HasField("cluster")
    assert service.calls == {"PostClusterModify": 2}


async def test_a_repeated_request_gets_the_same_answer_from_memory_and_a_garbled_one_an_error() -> None:
    """Envoy Gateway repeats each call on every translation: the second identical request is
    answered from the memo, byte for byte the first answer; a request that is not a message is
    INVALID_ARGUMENT and nothing is remembered for it."""
    request = pb.PostClusterModifyRequest(
        cluster=cluster_pb2.Cluster(name="httproute/apps/web/rule/0", type=cluster_pb2.Cluster.EDS),
        post_cluster_context=ctx.PostClusterExtensionContext(
            backend_extension_resources=[ctx.ExtensionResource(unstructured_bytes=tailscale_endpoints())]
        ),
    )
    async with served() as (service, channel):
        first = await call(channel, "PostClusterModify", request, pb.PostClusterModifyResponse)
        again = await call(channel, "PostClusterModify", request, pb.PostClusterModifyResponse)
        raw: UnaryUnaryMethod[Any, Any] = UnaryUnaryMethod(
            channel, f"/{SERVICE}/PostClusterModify", _Raw, pb.PostClusterModifyResponse
        )
        with anyio.fail_after(10), pytest.raises(GRPCError) as err:
            await raw(_Raw(b"\xff\xff\xff"))
    assert err.value.status is Status.INVALID_ARGUMENT
    assert again.SerializeToString() == first.SerializeToString()
    assert first.cluster.type == cluster_pb2.Cluster.STRICT_DNS
    memo = service.memos["PostClusterModify"]
    assert (memo.stats.hits, memo.stats.misses, len(memo)) == (1, 2, 1)
    assert service.calls == {"PostClusterModify": 3}


class _Raw:
    """Bytes sent as they are (a request no message decodes from)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


async def test_post_translate_modify_echoes_every_list() -> None:
    request = pb.PostTranslateModifyRequest(
        clusters=[cluster_pb2.Cluster(name=f"c{i}") for i in range(3)],
        secrets=[secret_pb2.Secret(name="s")],
        routes=[route_pb2.RouteConfiguration(name="r")],
    )
    async with served() as (_, channel):
        answer = await call(channel, "PostTranslateModify", request, pb.PostTranslateModifyResponse)
    assert [c.name for c in answer.clusters] == ["c0", "c1", "c2"]
    assert [s.name for s in answer.secrets] == ["s"]
    assert [r.name for r in answer.routes] == ["r"]
    assert list(answer.listeners) == []
    for got, sent in zip(answer.clusters, request.clusters, strict=True):
        assert got.SerializeToString(deterministic=True) == sent.SerializeToString(deterministic=True)


async def test_post_route_modify_applies_a_route_access_and_leaves_others_alone() -> None:
    route = route_components_pb2.Route(name="httproute/apps/web/rule/0/match/0")
    route.match.prefix = "/"
    access = {
        "apiVersion": api.API_VERSION,
        "kind": ROUTE_ACCESS_KIND,
        "metadata": {"name": "p", "namespace": "apps"},
        "spec": {"rules": [{"action": "Allow", "cidrs": ["127.0.0.2/32"]}], "defaultAction": "Deny"},
    }
    foreign = {"apiVersion": "example.com/v1", "kind": "Policy", "metadata": {"name": "x"}, "spec": {}}
    async with served() as (service, channel):
        ours = await call(
            channel,
            "PostRouteModify",
            pb.PostRouteModifyRequest(
                route=route,
                post_route_context=ctx.PostRouteExtensionContext(
                    extension_policies=[ctx.ExtensionResource(unstructured_bytes=orjson.dumps(access))]
                ),
            ),
            pb.PostRouteModifyResponse,
        )
        theirs = await call(
            channel,
            "PostRouteModify",
            pb.PostRouteModifyRequest(
                route=route,
                post_route_context=ctx.PostRouteExtensionContext(
                    extension_policies=[ctx.ExtensionResource(unstructured_bytes=orjson.dumps(foreign))]
                ),
            ),
            pb.PostRouteModifyResponse,
        )
        hcm = hcm_pb2.HttpConnectionManager(stat_prefix="http")
        hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
        listener = listener_pb2.Listener(name="default/eg/http")
        listener.filter_chains.add().filters.add(name="hcm").typed_config.Pack(hcm)
        with_filter = await call(
            channel,
            "PostHTTPListenerModify",
            pb.PostHTTPListenerModifyRequest(listener=listener),
            pb.PostHTTPListenerModifyResponse,
        )
    assert list(ours.route.typed_per_filter_config) == [RBAC_FILTER]
    assert ours.route.match.prefix == "/"
    assert not theirs.HasField("route")
    got = hcm_pb2.HttpConnectionManager()
    with_filter.listener.filter_chains[0].filters[0].typed_config.Unpack(got)
    assert [f.name for f in got.http_filters] == [RBAC_FILTER, "envoy.filters.http.router"]
    assert service.calls == {"PostRouteModify": 2, "PostHTTPListenerModify": 1}


async def test_a_route_without_our_policies_and_the_hooks_tsgw_does_not_use_answer_no_change() -> None:
    route = route_components_pb2.Route(name="httproute/apps/web/rule/0/match/0")
    async with served() as (service, channel):
        answer = await call(
            channel, "PostRouteModify", pb.PostRouteModifyRequest(route=route), pb.PostRouteModifyResponse
        )
        vhost = await call(
            channel,
            "PostVirtualHostModify",
            pb.PostVirtualHostModifyRequest(virtual_host=route_components_pb2.VirtualHost(name="v")),
            pb.PostVirtualHostModifyResponse,
        )
    assert not answer.HasField("route")
    assert not vhost.HasField("virtual_host")
    assert service.calls == {"PostRouteModify": 1, "PostVirtualHostModify": 1}
