"""The admin API server (proto/tsgw/admin/v1) over the xDS cache and server.

It runs on its own port so a debugging client never shares a connection (or a flow-control
window) with the Envoys' ADS streams.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from tsgw import _grpc
from tsgw._proto.tsgw.admin.v1 import admin_pb2 as pb
from tsgw.xds import (
    AdsServer,
    SnapshotCache,
    SnapshotInfo,
    UnknownGroupError,
    UnknownVersionError,
    short_name,
)

log = structlog.get_logger("tsgw.admin")
_PREFIX = "/tsgw.admin.v1.Admin/"


def summary(info: SnapshotInfo, current: bool) -> pb.SnapshotSummary:
    snap = info.snapshot
    return pb.SnapshotSummary(
        group=info.group,
        generation=info.generation,
        version=snap.version,
        created=snap.created,
        type_versions={short_name(t): v for t, v in snap.versions().items()},
        counts={short_name(t): n for t, n in snap.counts().items()},
        current=current,
    )


class AdminService:
    """Answers the admin API from a :class:`SnapshotCache` and (optionally) an :class:`AdsServer`."""

    def __init__(
        self,
        cache: SnapshotCache,
        ads: AdsServer | None = None,
        *,
        sources: Callable[[], Sequence[pb.Source]] | None = None,
    ) -> None:
        self.cache = cache
        self.ads = ads
        self.sources = sources
        """Reports where desired state comes from and its problems (standalone mode's folder)."""

    def __mapping__(self) -> dict[str, Handler]:
        return {
            _PREFIX + "ListNodes": Handler(
                self._list_nodes, Cardinality.UNARY_UNARY, pb.ListNodesRequest, pb.ListNodesResponse
            ),
            _PREFIX + "ListSnapshots": Handler(
                self._list_snapshots,
                Cardinality.UNARY_UNARY,
                pb.ListSnapshotsRequest,
                pb.ListSnapshotsResponse,
            ),
            _PREFIX + "GetSnapshot": Handler(
                self._get_snapshot, Cardinality.UNARY_UNARY, pb.GetSnapshotRequest, pb.GetSnapshotResponse
            ),
            _PREFIX + "WatchSnapshots": Handler(
                self._watch_snapshots, Cardinality.UNARY_STREAM, pb.WatchSnapshotsRequest, pb.SnapshotEvent
            ),
            _PREFIX + "ListSources": Handler(
                self._list_sources, Cardinality.UNARY_UNARY, pb.ListSourcesRequest, pb.ListSourcesResponse
            ),
        }

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the bound port through ``task_status``."""
        await _grpc.serve([self], host, port, task_status=task_status)

    # handlers --------------------------------------------------------------------------------

    async def _list_nodes(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        nodes = []
        for s in self.ads.streams() if self.ads is not None else []:
            types = []
            for t in s.types:
                nack = rejection = None
                if t.nack is not None:
                    nack = pb.Nack(version=t.nack.version, detail=t.nack.detail, time=t.nack.at)
                if t.rejection is not None:
                    r = t.rejection
                    rejection = pb.Nack(version=r.version, detail=r.detail, time=r.at)
                types.append(
                    pb.TypeStatus(
                        type_url=t.type_url,
                        sent_version=t.sent_version or "",
                        acked_version=t.acked_version or "",
                        last_nack=nack,
                        pushes=t.pushes,
                        subscribed=t.subscribed,
                        wildcard=t.wildcard,
                        sync=t.sync.value,
                        rejection=rejection,
                    )
                )
            nodes.append(
                pb.Node(
                    stream_id=s.stream_id,
                    variant=s.variant,
                    node_id=s.node_id,
                    cluster=s.cluster,
                    group=s.group,
                    metadata_json=json.dumps(s.metadata, sort_keys=True),
                    peer=s.peer,
                    opened_at=s.opened_at,
                    snapshot_version=s.snapshot_version or "",
                    types=types,
                )
            )
        await stream.send_message(pb.ListNodesResponse(nodes=nodes))

    def _summaries(self, group: str) -> list[pb.SnapshotSummary]:
        groups = [group] if group else self.cache.groups()
        out = []
        try:
            for g in groups:
                current = self.cache.current(g).generation
                out += [summary(i, i.generation == current) for i in self.cache.history(g)]
        except UnknownGroupError as e:
            raise GRPCError(Status.NOT_FOUND, str(e)) from None
        return out

    async def _list_snapshots(self, stream: Stream[Any, Any]) -> None:
        req: Any = await stream.recv_message()
        await stream.send_message(pb.ListSnapshotsResponse(snapshots=self._summaries(req.group)))

    async def _get_snapshot(self, stream: Stream[Any, Any]) -> None:
        req: Any = await stream.recv_message()
        try:
            current = self.cache.current(req.group)
            info = self.cache.find(req.group, req.version) if req.version else current
        except (UnknownGroupError, UnknownVersionError) as e:
            raise GRPCError(Status.NOT_FOUND, str(e)) from None
        resources = info.snapshot.to_dict()["types"]
        await stream.send_message(
            pb.GetSnapshotResponse(
                summary=summary(info, info.generation == current.generation),
                resources_json=json.dumps(resources, sort_keys=True),
            )
        )

    async def _list_sources(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        found = list(self.sources()) if self.sources is not None else []
        await stream.send_message(pb.ListSourcesResponse(sources=found))

    async def _watch_snapshots(self, stream: Stream[Any, Any]) -> None:
        req: Any = await stream.recv_message()
        send, receive = anyio.create_memory_object_stream[str](math.inf)

        def notify(group: str) -> None:
            if not req.group or group == req.group:
                send.send_nowait(group)

        cancel = self.cache.watch_all(notify)
        try:
            for s in self._summaries(req.group):
                if s.current:
                    await stream.send_message(pb.SnapshotEvent(summary=s))
            async with receive:
                async for group in receive:
                    info = self.cache.current(group)
                    await stream.send_message(pb.SnapshotEvent(summary=summary(info, True)))
        finally:
            cancel()
            send.close()
