"""The edge: Envoy Gateway's ``EnvoyGatewayExtension`` gRPC service on grpclib.

Upstream: Envoy Gateway v1.9.0 ``proto/extension/service.proto`` (package
``envoygateway.extension``; vendored in ``proto/envoygateway``). Each handler decodes the
request, calls a pure function of :mod:`tsgw.extension._hooks` and sends its answer; nothing
here waits on anything but the stream, so a hook costs its decoding plus microseconds. The answers
of ``PostClusterModify`` and ``PostRouteModify``, which Envoy Gateway repeats byte for byte on
every translation, are remembered by their request's bytes (``_memo.py``).

Every RPC of the service is served, so an Envoy Gateway configured with more hooks than tsgw
needs never sees ``UNIMPLEMENTED`` (an error that, with ``failOpen: false``, would stop its
translation): ``PostClusterModify`` builds TailscaleEndpoints clusters, ``PostRouteModify`` applies
TailscaleRouteAccess rules to routes and ``PostHTTPListenerModify`` adds the HTTP RBAC filter they
need; ``PostVirtualHostModify`` and ``PostEndpointsModify`` answer with the field unset, which
Envoy Gateway reads as "no change"; ``PostTranslateModify`` echoes each list it received, byte
for byte.
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from google.protobuf.message import DecodeError
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from tsgw import _grpc
from tsgw._proto.envoygateway.extension import service_pb2 as pb
from tsgw.extension._hooks import (
    ExtensionOptions,
    post_cluster_modify,
    post_http_listener_modify,
    post_route_modify,
    post_translate_modify,
)
from tsgw.extension._memo import Memo

__all__ = ["SERVICE", "ExtensionService"]

log = structlog.get_logger("tsgw.extension")

SERVICE = "envoygateway.extension.EnvoyGatewayExtension"
"""The gRPC service name Envoy Gateway calls (``/<SERVICE>/<Rpc>``)."""


class _Codec(CodecBase):
    """protobuf messages as grpclib's own codec handles them; ``bytes`` passed through, for the
    handlers that work on the wire format."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if message_type is bytes:
            return bytes(message)
        return message.SerializeToString()  # type: ignore[no-any-return]

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type is bytes:
            return bytes(data)
        return message_type.FromString(data)


class ExtensionService:
    """Answers Envoy Gateway's extension hooks (register it on a grpclib ``Server``)."""

    def __init__(self, options: ExtensionOptions | None = None, *, memo_entries: int = 4096) -> None:
        """``memo_entries``: answers remembered per hook for requests that repeat byte for byte
        (``_memo.py``); default 4096, several translations' worth at 1,000 routes."""
        self.options = options or ExtensionOptions()
        self.calls: dict[str, int] = {}
        """Calls answered, by RPC name (for tests and debugging)."""
        self.memos = {"PostClusterModify": Memo(memo_entries), "PostRouteModify": Memo(memo_entries)}
        """The remembered answers, by RPC name."""

    def __mapping__(self) -> dict[str, Handler]:
        def unary(name: str, handler: Any, request: Any, response: Any) -> tuple[str, Handler]:
            return f"/{SERVICE}/{name}", Handler(handler, Cardinality.UNARY_UNARY, request, response)

        return dict(
            [
                unary("PostClusterModify", self._post_cluster_modify, bytes, bytes),
                unary("PostTranslateModify", self._post_translate_modify, bytes, bytes),
                unary("PostRouteModify", self._post_route_modify, bytes, bytes),
                unary(
                    "PostVirtualHostModify",
                    self._unchanged("PostVirtualHostModify", pb.PostVirtualHostModifyResponse),
                    pb.PostVirtualHostModifyRequest,
                    pb.PostVirtualHostModifyResponse,
                ),
                unary(
                    "PostHTTPListenerModify",
                    self._post_http_listener_modify,
                    pb.PostHTTPListenerModifyRequest,
                    pb.PostHTTPListenerModifyResponse,
                ),
                unary(
                    "PostEndpointsModify",
                    self._unchanged("PostEndpointsModify", pb.PostEndpointsModifyResponse),
                    pb.PostEndpointsModifyRequest,
                    pb.PostEndpointsModifyResponse,
                ),
            ]
        )

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def _post_cluster_modify(self, stream: Stream[Any, Any]) -> None:
        request = bytes(await stream.recv_message() or b"")
        self._count("PostClusterModify")
        await stream.send_message(self.memos["PostClusterModify"].answer(request, self._cluster_answer))

    def _cluster_answer(self, request: bytes) -> bytes:
        req = _decoded(pb.PostClusterModifyRequest, request)
        resources = [r.unstructured_bytes for r in req.post_cluster_context.backend_extension_resources]
        answer = post_cluster_modify(req.cluster, resources, self.options)
        for problem in answer.problems:
            log.warning("custom backend left without endpoints", cluster=req.cluster.name, problem=problem)
        if answer.cluster is None:
            return b""  # PostClusterModifyResponse with no cluster: "no change"
        return pb.PostClusterModifyResponse(cluster=answer.cluster).SerializeToString()  # type: ignore[no-any-return]

    async def _post_route_modify(self, stream: Stream[Any, Any]) -> None:
        request = bytes(await stream.recv_message() or b"")
        self._count("PostRouteModify")
        await stream.send_message(self.memos["PostRouteModify"].answer(request, self._route_answer))

    def _route_answer(self, request: bytes) -> bytes:
        req = _decoded(pb.PostRouteModifyRequest, request)
        policies = [r.unstructured_bytes for r in req.post_route_context.extension_policies]
        answer = post_route_modify(req.route, policies)
        for problem in answer.problems:
            log.warning("route access", route=req.route.name, problem=problem)
        if answer.route is None:
            return b""  # PostRouteModifyResponse with no route: "no change"
        return pb.PostRouteModifyResponse(route=answer.route).SerializeToString()  # type: ignore[no-any-return]

    async def _post_http_listener_modify(self, stream: Stream[Any, Any]) -> None:
        req: Any = await stream.recv_message()
        answer = post_http_listener_modify(req.listener)
        self._count("PostHTTPListenerModify")
        if answer.listener is None:
            await stream.send_message(pb.PostHTTPListenerModifyResponse())
        else:
            await stream.send_message(pb.PostHTTPListenerModifyResponse(listener=answer.listener))

    async def _post_translate_modify(self, stream: Stream[Any, Any]) -> None:
        request: Any = await stream.recv_message()
        self._count("PostTranslateModify")
        # Envoy Gateway replaces its lists with the answer's: echo every one, byte for byte.
        try:
            answer = post_translate_modify(request)
        except ValueError as e:
            raise GRPCError(Status.INVALID_ARGUMENT, f"not a PostTranslateModifyRequest: {e}") from None
        await stream.send_message(answer)

    def _unchanged(self, name: str, response: Any) -> Any:
        async def handler(stream: Stream[Any, Any]) -> None:
            await stream.recv_message()
            self._count(name)
            await stream.send_message(response())

        return handler

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the bound port through ``task_status``."""
        await _grpc.serve([self], host, port, codec=_Codec(), task_status=task_status)


def _decoded(message_type: Any, data: bytes) -> Any:
    try:
        return message_type.FromString(data)
    except DecodeError as e:
        raise GRPCError(Status.INVALID_ARGUMENT, f"not a {message_type.__name__}: {e}") from None
