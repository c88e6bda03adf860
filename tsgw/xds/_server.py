"""The aggregated discovery service (ADS) on grpclib: state-of-the-world and delta.

Requests are decoded with protobuf's upb backend (Envoy's messages from ``xds-protos``);
responses are assembled from the snapshot's cached wire bytes (see ``_wire``), and grpclib is
given a pass-through codec so nothing is encoded twice. Each stream runs one task that owns its
protocol state (``_state``) and a reader task feeding it; snapshot changes arrive as
notifications on the same queue, so a stream's responses are strictly ordered: secrets, then
clusters, endpoints, listeners and routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Stream

from tsgw import _grpc
from tsgw.xds import _auth, _fastsend, _metrics, _wire
from tsgw.xds._cache import SnapshotCache
from tsgw.xds._errors import ProtocolError
from tsgw.xds._events import EventKind, StreamEvent, Subscriber
from tsgw.xds._snapshot import Snapshot
from tsgw.xds._state import DeltaPlan, DeltaType, Nack, SotwPlan, SotwType, Sync, Verdict
from tsgw.xds._types import PUSH_ORDER, ClusterDiscovery, EndpointDiscovery, short_name

log = structlog.get_logger("tsgw.xds.server")

SOTW_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


class _Inbox:
    """A stream's queue: requests from its reader task and snapshot notices, in arrival order.

    A deque and at most one waiting future. anyio's memory object stream costs an Event and
    several checkpoints per wait; at 100 streams every push waits twice per stream (the notice,
    then the ACK), which had been a sixth of a push's CPU. grpclib ties this server to asyncio
    anyway. ``get`` returns what was queued before ``close`` and then None; ``put`` after
    ``close`` is dropped (a notice for a stream that is ending).
    """

    __slots__ = ("_closed", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[tuple[str, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def put(self, kind: str, data: bytes = b"") -> None:
        if not self._closed:
            self._items.append((kind, data))
            self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def get(self) -> tuple[str, bytes] | None:
        """The next item without yielding to the loop when one is queued; else wait for one."""
        while not self._items:
            if self._closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class _Denied(Exception):
    """A stream without the token of the group its node claims."""

    def __init__(self, reason: str, group: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.group = group


class RawCodec(CodecBase):
    """A grpclib codec that passes bytes through: we decode and encode ourselves."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


@dataclass(frozen=True)
class ServerOptions:
    """Settings of :class:`AdsServer`."""

    control_plane_id: str = "tsgw"
    """Sent as ``control_plane.identifier`` in every response (Envoy shows it as a text
    readout). Default ``"tsgw"``."""
    max_request_bytes: int = 4 * 1024 * 1024
    """Largest request accepted (Envoy's first request, with its node, is ~60 KB). Default 4 MiB."""
    write_buffer_bytes: int = 8 * 1024 * 1024
    """Per-connection write buffer before the server waits for the socket to drain; large
    enough for a whole response so a push is written in one go. Default 8 MiB."""
    socket_send_buffer_bytes: int = 1024 * 1024
    """``SO_SNDBUF`` of each connection, so the kernel accepts a whole response in one write
    (0 keeps the kernel's autotuned size, which starts at 16 KiB). Default 1 MiB."""
    auth_key: bytes | None = None
    """Authenticate every stream (``tsgw.xds._auth``): a stream must carry the bearer token of
    the node group it claims, or it is refused with PERMISSION_DENIED before anything is sent.
    None: no authentication (standalone mode on loopback). Default None."""
    fast_send: bool = True
    """Write each response's HTTP/2 DATA frames in one go on grpclib's h2 connection (see
    ``tsgw/xds/_fastsend.py``) when the installed grpclib and h2 are as that code expects;
    False sends every response by grpclib's own path. Default True."""


@dataclass(frozen=True)
class TypeStatus:
    """What one Envoy holds of one resource type, as far as the server knows."""

    type_url: str
    sent_version: str | None
    acked_version: str | None
    nack: Nack | None
    """The Envoy's rejection of what it was sent last; None once it ACKs again."""
    pushes: int
    subscribed: tuple[str, ...]
    wildcard: bool
    sync: Sync = Sync.PENDING
    """Whether it holds this type of its group's current snapshot (see :meth:`SotwType.sync`)."""
    rejection: Nack | None = None
    """With ``sync`` REJECTED: its rejection of the current version (then or earlier)."""


@dataclass(frozen=True)
class StreamStatus:
    """One connected Envoy (one ADS stream)."""

    stream_id: int
    variant: str
    node_id: str
    cluster: str
    group: str
    metadata: dict[str, Any]
    peer: str
    opened_at: float
    snapshot_version: str | None
    types: tuple[TypeStatus, ...]

    @property
    def age(self) -> float:
        return time.time() - self.opened_at

    @property
    def sync(self) -> Sync:
        """REJECTED if any type is, else PENDING if any is, else SYNCED."""
        states = {t.sync for t in self.types}
        for s in (Sync.REJECTED, Sync.PENDING):
            if s in states:
                return s
        return Sync.SYNCED


@dataclass(frozen=True)
class NodeSync:
    """Whether one Envoy holds its group's current snapshot (:meth:`AdsServer.group_sync`)."""

    stream_id: int
    node_id: str
    sync: Sync
    rejection: Nack | None = None
    """With REJECTED: the first rejected type's URL is in ``type_url``, Envoy's reason here."""
    type_url: str = ""


@dataclass(eq=False)
class _Conn:
    id: int
    variant: str
    peer: str
    opened_at: float = field(default_factory=time.time)
    node_id: str = ""
    cluster: str = ""
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sotw: dict[str, SotwType] = field(default_factory=dict)
    delta: dict[str, DeltaType] = field(default_factory=dict)
    pushes: dict[str, int] = field(default_factory=dict)
    nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    snapshot_version: str | None = None
    fast: _fastsend.FastSend | None = None
    fast_reason: str | None = None  # why ``fast`` is None once looked up


class AdsServer:
    """Aggregated xDS over one stream per Envoy, serving snapshots from a :class:`SnapshotCache`.

    Mount it on a grpclib :class:`~grpclib.server.Server` with :data:`RawCodec` (or call
    :meth:`serve`). It answers ``StreamAggregatedResources`` (SotW) and
    ``DeltaAggregatedResources`` (incremental).
    """

    def __init__(self, cache: SnapshotCache, options: ServerOptions | None = None) -> None:
        self.cache = cache
        self.options = options or ServerOptions()
        self._subscribers: list[Subscriber] = []
        self._conns: dict[int, _Conn] = {}
        self._by_group: dict[str, dict[int, _Conn]] = {}
        self._transports: set[Any] = set()
        self._ids = itertools.count(1)
        self._sotw_cp = _wire.sotw_control_plane(self.options.control_plane_id)
        self._delta_cp = _wire.delta_control_plane(self.options.control_plane_id)
        # Why no stream uses the fast send path, if none does: checked once, here.
        self._fast_off: str | None = None
        if not self.options.fast_send:
            self._fast_off = _fastsend.DISABLED
        elif (problem := _fastsend.problem()) is not None:
            log.warning("xds: sending every response by grpclib's path", reason=problem)
            self._fast_off = _fastsend.INTERNALS
        self._warned_internals = False
        _metrics.register_envoys(self, self._envoy_counts)

    # grpclib ---------------------------------------------------------------------------------

    def __mapping__(self) -> dict[str, Handler]:
        return {
            SOTW_PATH: Handler(self._sotw_stream, Cardinality.STREAM_STREAM, bytes, bytes),
            DELTA_PATH: Handler(self._delta_stream, Cardinality.STREAM_STREAM, bytes, bytes),
        }

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; reports the bound port through ``task_status``."""
        await _grpc.serve(
            [self], host, port, codec=RawCodec(), closing=self._close_connections, task_status=task_status
        )

    def _close_connections(self) -> None:
        # grpclib stops accepting and cancels handlers but leaves connections open: close them so
        # Envoy sees the server go away (and nothing leaks a socket).
        for connection in list(self._transports):
            connection.close()
        self._transports.clear()

    # status ----------------------------------------------------------------------------------

    def stream_count(self) -> int:
        """How many ADS streams are open (cheap; :meth:`streams` builds full status)."""
        return len(self._conns)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every :class:`StreamEvent` (stream opened or closed, a
        version ACKed or NACKed), synchronously and in order; returns a function that ends the
        subscription. A subscriber must not block; one that raises is logged and skipped."""
        self._subscribers.append(subscriber)

        def cancel() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return cancel

    def _emit(self, event: StreamEvent) -> None:
        for sub in list(self._subscribers):
            try:
                sub(event)
            except Exception:
                log.exception("xds event subscriber failed", event=event.kind.value)

    def group_sync(self, group: str) -> list[NodeSync]:
        """Per connected Envoy of ``group``: does it hold the group's current snapshot? Cheap
        (only that group's streams); the pipeline asks after each event of the group."""
        snap = self.cache.get_snapshot(group)
        out = []
        for c in sorted(self._by_group.get(group, {}).values(), key=lambda c: c.id):
            state, nack, type_url = Sync.SYNCED, None, ""
            if snap is None:
                state = Sync.PENDING
            else:
                for t, ts in self._type_states(c):
                    st, n = ts.sync(snap.resources(t))
                    if st is Sync.REJECTED:
                        state, nack, type_url = st, n, t
                        break
                    if st is Sync.PENDING:
                        state = Sync.PENDING
                if not c.sotw and not c.delta:
                    state = Sync.PENDING
            out.append(NodeSync(c.id, c.node_id, state, nack, type_url))
        return out

    def _envoy_counts(self) -> dict[str, dict[str, int]]:
        """Per group with a connected Envoy: how many are synced, pending, rejected
        (``tsgw_xds_envoys``, computed when scraped; the metrics endpoint runs on the server's
        event loop, so no stream changes while this reads)."""
        out: dict[str, dict[str, int]] = {}
        for group in list(self._by_group):
            counts = out.setdefault(group, {})
            for node in self.group_sync(group):
                state = node.sync.value.lower()
                counts[state] = counts.get(state, 0) + 1
        return out

    @staticmethod
    def _type_states(c: _Conn) -> list[tuple[str, SotwType | DeltaType]]:
        table: Mapping[str, SotwType | DeltaType] = c.sotw if c.variant == "sotw" else c.delta
        return [(t, table[t]) for t in PUSH_ORDER if t in table]

    def streams(self) -> list[StreamStatus]:
        """The connected Envoys, ordered by stream id."""
        out = []
        for c in sorted(self._conns.values(), key=lambda c: c.id):
            types: list[TypeStatus] = []
            snap = self.cache.get_snapshot(c.group) if c.group is not None else None
            for t, ts in self._type_states(c):
                sync, rejection = ts.sync(snap.resources(t)) if snap is not None else (Sync.PENDING, None)
                types.append(
                    TypeStatus(
                        t,
                        ts.sent_version,
                        ts.acked_version,
                        ts.nack,
                        c.pushes.get(t, 0),
                        tuple(sorted(ts.names)),
                        ts.wildcard,
                        sync,
                        rejection,
                    )
                )
            out.append(
                StreamStatus(
                    c.id,
                    c.variant,
                    c.node_id,
                    c.cluster,
                    c.group or "",
                    dict(c.metadata),
                    c.peer,
                    c.opened_at,
                    c.snapshot_version,
                    tuple(types),
                )
            )
        return out

    # streams ---------------------------------------------------------------------------------

    async def _sotw_stream(self, stream: Stream[Any, Any]) -> None:
        await self._run(stream, "sotw")

    async def _delta_stream(self, stream: Stream[Any, Any]) -> None:
        await self._run(stream, "delta")

    async def _run(self, stream: Stream[Any, Any], variant: str) -> None:
        peer = stream.peer.addr() if stream.peer else None
        conn = _Conn(next(self._ids), variant, f"{peer[0]}:{peer[1]}" if peer else "")
        connection = getattr(getattr(stream, "_stream", None), "connection", None)
        if connection is not None:
            self._transports.add(connection)
            transport = getattr(connection, "_transport", None)
            if transport is not None:
                # A 1,000-cluster response is ~100 KiB, above asyncio's 64 KiB high-water mark:
                # without this every push pauses and resumes writing per stream.
                transport.set_write_buffer_limits(high=self.options.write_buffer_bytes)
                # And a kernel send buffer that takes a whole push at once: with TCP's initial
                # 16 KiB a write is split and its tail waits for the loop to notice the socket
                # writable again, behind every other stream's push.
                sock = transport.get_extra_info("socket")
                if sock is not None and self.options.socket_send_buffer_bytes:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_SNDBUF, self.options.socket_send_buffer_bytes
                        )
        self._conns[conn.id] = conn
        _metrics.CONNECTED_STREAMS.labels(variant).inc()
        inbox = _Inbox()
        dirty = [False]
        cancel_watch: Callable[[], None] | None = None

        def on_snapshot() -> None:
            if not dirty[0]:
                dirty[0] = True
                inbox.put("snapshot")  # dropped if the stream is closing

        async def reader() -> None:
            try:
                while True:
                    try:
                        data = await stream.recv_message()
                    except StreamTerminatedError:
                        break  # the Envoy went away (reset or connection lost)
                    if data is None:
                        break
                    if len(data) > self.options.max_request_bytes:
                        inbox.put("refuse", f"request of {len(data)} bytes exceeds the limit".encode())
                        break
                    inbox.put("request", data)
            finally:
                inbox.close()

        refused = ""
        denied: _Denied | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                while True:
                    item = await inbox.get()
                    if item is None:
                        break
                    kind, data = item
                    if kind == "snapshot":
                        dirty[0] = False
                        await self._push(stream, conn, PUSH_ORDER)
                        continue
                    if kind == "refuse":
                        refused = data.decode()
                        break
                    try:
                        type_url = await self._on_request(stream, conn, data)
                    except ProtocolError as e:
                        refused = str(e)
                        break
                    except _Denied as e:
                        denied = e
                        break
                    if cancel_watch is None and conn.group is not None:
                        cancel_watch = self.cache.watch(conn.group, on_snapshot)
                    if type_url:
                        extra = (EndpointDiscovery,) if type_url == ClusterDiscovery else ()
                        await self._push(stream, conn, (type_url, *extra))
                tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            # An escaping error would end Envoy's stream with INTERNAL and make it back off; log
            # it and end the stream cleanly instead (Envoy reconnects at once).
            log.exception("xds stream failed", stream=conn.id, node=conn.node_id)
        else:
            if denied is not None:
                _metrics.AUTH_REFUSED.labels(denied.reason).inc()
                log.warning(
                    "xds stream refused: no valid token for its group",
                    stream=conn.id,
                    peer=conn.peer,
                    group=denied.group,
                    reason=denied.reason,
                )
                raise GRPCError(
                    Status.PERMISSION_DENIED, f"not authorized for this node group ({denied.reason})"
                )
            if refused:
                log.warning("xds protocol error", stream=conn.id, node=conn.node_id, error=refused)
                raise GRPCError(Status.INVALID_ARGUMENT, refused)
        finally:
            if cancel_watch is not None:
                cancel_watch()
            self._conns.pop(conn.id, None)
            if conn.group is not None:
                members = self._by_group.get(conn.group)
                if members is not None:
                    members.pop(conn.id, None)
                    if not members:
                        del self._by_group[conn.group]
                self._emit(StreamEvent(EventKind.CLOSED, conn.id, conn.node_id, conn.group))
            if connection is not None and connection.is_closing():
                self._transports.discard(connection)
            _metrics.CONNECTED_STREAMS.labels(variant).dec()
            log.info("xds stream closed", stream=conn.id, node=conn.node_id, variant=variant)

    def _set_node(self, conn: _Conn, node: Any) -> None:
        conn.node_id = str(node.id)
        conn.cluster = str(node.cluster)
        conn.group = self.cache.node_group(node)
        if node.HasField("metadata"):
            conn.metadata = json_format.MessageToDict(node.metadata)
        self._by_group.setdefault(conn.group, {})[conn.id] = conn
        log.info(
            "xds stream opened", stream=conn.id, node=conn.node_id, group=conn.group, variant=conn.variant
        )
        self._emit(StreamEvent(EventKind.OPENED, conn.id, conn.node_id, conn.group))

    async def _on_request(self, stream: Stream[Any, Any], conn: _Conn, data: bytes) -> str | None:
        """Apply one request to the stream state; returns its type URL when a push may follow."""
        if conn.variant == "sotw":
            sreq = discovery_pb2.DiscoveryRequest.FromString(data)
            node, type_url = sreq, str(sreq.type_url)
        else:
            dreq = discovery_pb2.DeltaDiscoveryRequest.FromString(data)
            node, type_url = dreq, str(dreq.type_url)
        if conn.group is None:
            if not node.HasField("node"):
                raise ProtocolError("the first request of a stream carries no node")
            key = self.options.auth_key
            if key is not None:
                group = self.cache.node_group(node.node)
                reason = _auth.refusal(key, stream.metadata, group)
                if reason is not None:
                    raise _Denied(reason, group)
            self._set_node(conn, node.node)
        if not type_url:
            raise ProtocolError("a request on an aggregated stream must name its type_url")
        short = short_name(type_url)
        error = None
        if conn.variant == "sotw":
            st = conn.sotw.get(type_url) or conn.sotw.setdefault(type_url, SotwType(type_url))
            if sreq.HasField("error_detail"):
                error = sreq.error_detail.message
            verdict = st.on_request(sreq.version_info, sreq.response_nonce, sreq.resource_names, error)
            version = sreq.version_info
        else:
            dt = conn.delta.get(type_url) or conn.delta.setdefault(type_url, DeltaType(type_url))
            if dreq.HasField("error_detail"):
                error = dreq.error_detail.message
            verdict = dt.on_request(
                dreq.resource_names_subscribe,
                dreq.resource_names_unsubscribe,
                dreq.initial_resource_versions,
                dreq.response_nonce,
                error,
            )
            version = dt.acked_version or ""
        if verdict is Verdict.STALE:
            _metrics.STALE_REQUESTS.labels(short).inc()
            if conn.variant == "sotw":
                return None  # SotW: a stale request is ignored whole
        elif verdict is Verdict.NACK:
            _metrics.NACKS.labels(short).inc()
            nack = conn.sotw[type_url].nack if conn.variant == "sotw" else conn.delta[type_url].nack
            log.warning(
                "xds NACK: the Envoy rejected a version and keeps its last good config",
                stream=conn.id,
                node=conn.node_id,
                type=short,
                version=nack.version if nack else "",
                error=error,
            )
            self._emit(
                StreamEvent(
                    EventKind.NACK,
                    conn.id,
                    conn.node_id,
                    conn.group or "",
                    type_url,
                    nack.version if nack else "",
                    error or "",
                )
            )
        elif verdict is Verdict.ACK and self._subscribers:
            self._emit(StreamEvent(EventKind.ACK, conn.id, conn.node_id, conn.group or "", type_url, version))
        return type_url

    async def _push(self, stream: Stream[Any, Any], conn: _Conn, type_urls: tuple[str, ...]) -> None:
        if conn.group is None:
            return
        snap = self.cache.get_snapshot(conn.group)
        if snap is None:
            return
        conn.snapshot_version = snap.version
        for t in type_urls:
            if conn.variant == "sotw":
                st = conn.sotw.get(t)
                if st is not None:
                    await self._push_sotw(stream, conn, snap, st)
            else:
                dt = conn.delta.get(t)
                if dt is not None:
                    await self._push_delta(stream, conn, snap, dt)

    async def _send(self, stream: Stream[Any, Any], conn: _Conn, msg: bytes) -> None:
        """Send one response, writing all of its HTTP/2 frames to the socket at once.

        h2 builds a frame object per 16 KiB DATA frame and grpclib writes (a syscall) per frame;
        a 1,000-cluster response is seven frames, times every stream of a push. ``_fastsend``
        frames the message itself and writes once when the flow-control windows take it whole;
        otherwise, or when grpclib's or h2's objects are not as it expects, grpclib's own path
        sends it (counted in ``tsgw_xds_send_fallbacks_total`` by reason).
        """
        fast = conn.fast
        reason = conn.fast_reason or self._fast_off
        if fast is None and reason is None:  # the stream's first response: look its objects up
            fast = conn.fast = _fastsend.FastSend.of(stream)
            if fast is None:
                reason = conn.fast_reason = _fastsend.INTERNALS
                if not self._warned_internals:
                    self._warned_internals = True
                    log.warning(
                        "xds: grpclib's or h2's objects are not as the fast send path expects; "
                        "sending by grpclib's path",
                        stream=conn.id,
                        node=conn.node_id,
                    )
        if fast is not None:
            if not fast.headers_sent:
                await fast.start()
            reason = fast.send(msg)
            if reason is None:
                return
        _metrics.SEND_FALLBACKS.labels(reason).inc()
        await stream.send_message(msg)

    async def _push_sotw(self, stream: Stream[Any, Any], conn: _Conn, snap: Snapshot, st: SotwType) -> None:
        res = snap.resources(st.type_url)
        suppressed = st.suppressed
        plan: SotwPlan | None = st.plan(res)
        if st.suppressed != suppressed:
            _metrics.NACK_RESENDS_SUPPRESSED.labels(short_name(st.type_url)).inc()
        if plan is None:
            return
        started = time.perf_counter()
        nonce = str(next(conn.nonces))
        if len(plan.names) == len(res.items):
            body = [res.all_sotw()]
        else:
            items = res.items
            body = [items[n].sotw_field for n in plan.names]
        msg = _wire.sotw_response(plan.version, body, st.type_url, nonce, self._sotw_cp)
        st.sent(plan, nonce)
        if st.type_url == ClusterDiscovery and EndpointDiscovery in conn.sotw:
            conn.sotw[EndpointDiscovery].force = True  # updated clusters warm until EDS arrives
        await self._send(stream, conn, msg)
        self._count(conn, st.type_url, started)

    async def _push_delta(self, stream: Stream[Any, Any], conn: _Conn, snap: Snapshot, dt: DeltaType) -> None:
        res = snap.resources(dt.type_url)
        suppressed = dt.suppressed
        plan: DeltaPlan | None = dt.plan(res)
        if dt.suppressed != suppressed:
            _metrics.NACK_RESENDS_SUPPRESSED.labels(short_name(dt.type_url)).inc()
        if plan is None:
            return
        started = time.perf_counter()
        nonce = str(next(conn.nonces))
        body = [res.delta_field(n) for n in plan.names]
        msg = _wire.delta_response(
            plan.system_version, body, dt.type_url, plan.removed, nonce, self._delta_cp
        )
        dt.sent(plan, nonce)
        await self._send(stream, conn, msg)
        self._count(conn, dt.type_url, started)

    def _count(self, conn: _Conn, type_url: str, started: float) -> None:
        conn.pushes[type_url] = conn.pushes.get(type_url, 0) + 1
        short = short_name(type_url)
        _metrics.PUSHES.labels(short).inc()
        _metrics.PUSH_DURATION.labels(short).observe(time.perf_counter() - started)
