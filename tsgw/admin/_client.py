"""A client of the admin API, used by the CLI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from tsgw._address import parse_address
from tsgw._proto.tsgw.admin.v1 import admin_pb2 as pb
from tsgw.admin._errors import AdminError, AdminNotFoundError, AdminUnavailableError

_PREFIX = "/tsgw.admin.v1.Admin/"


def _split(address: str) -> tuple[str, int]:
    try:
        return parse_address(address, what="admin address")
    except ValueError as e:
        raise AdminError(str(e)) from None


def _translate(e: BaseException) -> AdminError:
    if isinstance(e, GRPCError) and e.status is Status.NOT_FOUND:
        return AdminNotFoundError(e.message or "not found")
    if isinstance(e, GRPCError):
        return AdminError(f"{e.status.name}: {e.message}")
    return AdminUnavailableError(f"admin API unreachable: {e}")


class AdminClient:
    """``async with AdminClient("127.0.0.1:9911") as c: await c.list_nodes()``."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        host, port = _split(address)
        self._channel = Channel(host, port)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._channel.close()

    async def _unary(self, method: str, request: Any, reply_type: Any) -> Any:
        try:
            async with self._channel.request(
                _PREFIX + method, Cardinality.UNARY_UNARY, type(request), reply_type, timeout=self.timeout
            ) as stream:
                await stream.send_message(request, end=True)
                reply = await stream.recv_message()
                await stream.recv_trailing_metadata()
                return reply
        except (GRPCError, OSError) as e:
            raise _translate(e) from e

    async def list_nodes(self) -> list[pb.Node]:
        reply = await self._unary("ListNodes", pb.ListNodesRequest(), pb.ListNodesResponse)
        return list(reply.nodes)

    async def list_sources(self) -> list[pb.Source]:
        """Where the server's desired state comes from, with each source's problems."""
        reply = await self._unary("ListSources", pb.ListSourcesRequest(), pb.ListSourcesResponse)
        return list(reply.sources)

    async def list_snapshots(self, group: str = "") -> list[pb.SnapshotSummary]:
        reply = await self._unary(
            "ListSnapshots", pb.ListSnapshotsRequest(group=group), pb.ListSnapshotsResponse
        )
        return list(reply.snapshots)

    async def get_snapshot(self, group: str, version: str = "") -> tuple[pb.SnapshotSummary, dict[str, Any]]:
        reply = await self._unary(
            "GetSnapshot", pb.GetSnapshotRequest(group=group, version=version), pb.GetSnapshotResponse
        )
        resources: dict[str, Any] = json.loads(reply.resources_json or "{}")
        return reply.summary, resources

    async def watch_snapshots(self, group: str = "") -> AsyncIterator[pb.SnapshotSummary]:
        """Yield the current snapshot of each group, then every change, until cancelled."""
        try:
            async with self._channel.request(
                _PREFIX + "WatchSnapshots",
                Cardinality.UNARY_STREAM,
                pb.WatchSnapshotsRequest,
                pb.SnapshotEvent,
            ) as stream:
                await stream.send_message(pb.WatchSnapshotsRequest(group=group), end=True)
                async for event in stream:
                    yield event.summary
        except (GRPCError, OSError) as e:
            raise _translate(e) from e
