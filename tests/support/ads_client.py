"""A minimal ADS client speaking the real protocol over grpclib, for protocol-level tests.

It plays an Envoy whose every move the test chooses: which request to send, with which nonce,
version and error, and it can assert that the server stayed silent.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import anyio
import h2.exceptions
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, StreamTerminatedError

from tsgw.xds import RawCodec
from tsgw.xds._server import DELTA_PATH, SOTW_PATH


class AdsClient:
    def __init__(self, stream: Any, delta: bool, node: base_pb2.Node) -> None:
        self._stream = stream
        self.delta = delta
        self.node = node
        self._node_sent = False
        self.received: list[Any] = []
        self._send, self._inbox = anyio.create_memory_object_stream[Any](math.inf)

    async def _reader(self) -> None:
        cls = discovery_pb2.DeltaDiscoveryResponse if self.delta else discovery_pb2.DiscoveryResponse
        while True:
            try:
                data = await self._stream.recv_message()
            except (GRPCError, StreamTerminatedError) as e:
                await self._send.send(e)  # the server ended the stream
                return
            if data is None:
                return
            msg = cls.FromString(data)
            self.received.append(msg)
            await self._send.send(msg)

    def _with_node(self, req: Any) -> None:
        if not self._node_sent:
            req.node.CopyFrom(self.node)
            self._node_sent = True

    async def request(
        self,
        type_url: str,
        *,
        version: str = "",
        nonce: str = "",
        names: Iterable[str] = (),
        error: str | None = None,
        end: bool = False,
    ) -> None:
        assert not self.delta
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, version_info=version, response_nonce=nonce, resource_names=list(names)
        )
        if error is not None:
            req.error_detail.message = error
            req.error_detail.code = 3
        self._with_node(req)
        await self._stream.send_message(req.SerializeToString(), end=end)

    async def ack(self, resp: Any, *, names: Iterable[str] = (), error: str | None = None) -> None:
        """ACK (or NACK, with ``error``) a SotW response, echoing its nonce."""
        await self.request(
            resp.type_url, version=resp.version_info, nonce=resp.nonce, names=names, error=error
        )

    async def delta_request(
        self,
        type_url: str,
        *,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        initial: Mapping[str, str] | None = None,
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        assert self.delta
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial or {}),
            response_nonce=nonce,
        )
        if error is not None:
            req.error_detail.message = error
            req.error_detail.code = 3
        self._with_node(req)
        await self._stream.send_message(req.SerializeToString())

    async def recv(self, wait_s: float = 5.0) -> Any:
        with anyio.fail_after(wait_s):
            msg = await self._inbox.receive()
        if isinstance(msg, (GRPCError, StreamTerminatedError)):
            raise msg
        return msg

    async def silent(self, wait_s: float = 0.5) -> None:
        """Assert that nothing arrives for ``wait_s`` seconds."""
        with anyio.move_on_after(wait_s):
            msg = await self._inbox.receive()
            raise AssertionError(f"expected silence, got {msg}")


@contextlib.asynccontextmanager
async def ads_client(
    port: int,
    *,
    delta: bool = False,
    node_id: str = "client-0",
    cluster: str = "proxies",
    metadata: Mapping[str, str] | None = None,
) -> AsyncIterator[AdsClient]:
    channel = Channel("127.0.0.1", port, codec=RawCodec())
    try:
        path = DELTA_PATH if delta else SOTW_PATH
        async with channel.request(
            path, Cardinality.STREAM_STREAM, bytes, bytes, metadata=dict(metadata or {})
        ) as stream:
            await stream.send_request()
            client = AdsClient(stream, delta, base_pb2.Node(id=node_id, cluster=cluster))
            async with anyio.create_task_group() as tg:
                tg.start_soon(client._reader)
                try:
                    yield client
                finally:
                    tg.cancel_scope.cancel()
                    client._send.close()
                    client._inbox.close()
            with contextlib.suppress(StreamTerminatedError, GRPCError, h2.exceptions.StreamClosedError):
                await stream.cancel()
    finally:
        channel.close()
