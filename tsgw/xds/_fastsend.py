"""One write per response: the DATA frames of a gRPC message framed by hand on grpclib's h2.

grpclib's ``Stream.send_data`` (grpclib/protocol.py) asks h2 for one DATA frame at a time
(``H2Connection.send_data``, h2/connection.py: which builds a frame object, serializes it into
its buffer and charges the flow-control windows) and writes each to the transport, a syscall
per 16 KiB frame: seven for a 1,000-cluster response, times every stream of a push. When the
flow-control windows admit the whole message, :meth:`FastSend.send` does what those two do,
in one write:

- h2's checks: the connection's and the stream's state machines take ``SEND_DATA`` (a closed
  stream raises as it would in h2's own ``send_data``);
- the frames (RFC 9113 §6.1): a 9-byte header per frame of at most
  ``max_outbound_frame_size`` over slices of the message, the first frame carrying the 5-byte
  gRPC prefix (uncompressed flag, length), no padding, no END_STREAM;
- h2's accounting: both outbound windows shrink by the bytes sent; whatever h2 had buffered
  (a WINDOW_UPDATE, a PING or SETTINGS ACK) goes out first, in the same write;
- grpclib's statistics (``data_sent``, ``messages_sent``, ``last_message_sent``, the keepalive
  ping counter through ``data_send_process``).

It needs private names of grpclib 0.4 and h2 4 (``Stream._stream``, ``_h2_connection``,
``_transport``, ``_messages_sent``; ``H2Connection._get_stream_by_id``, the state machines), so
``pyproject.toml`` bounds both to the versions checked, and the use of those names is ordered so
that a response is always written by exactly one path, exactly once:

1. at start-up, :func:`problem` probes the classes once (``AdsServer`` logs what it finds and
   uses grpclib's path throughout if anything is missing);
2. per stream, :meth:`FastSend.of` looks up every object and bound method before the first
   response; a stream whose objects are not as expected uses grpclib's path for its life;
3. per response, :meth:`FastSend.send` reads everything it needs before it changes anything.
   Once it has changed something (a state machine, h2's buffer, a window) it only writes to
   attributes it has already read and calls methods it already holds, so it cannot fail half
   way and leave grpclib's path to send the response again or charge the windows twice.

Every response grpclib's path sends instead is counted in ``tsgw_xds_send_fallbacks_total``
by reason.
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Callable
from typing import Any

import grpclib.protocol
import grpclib.server
from h2.config import H2Configuration
from h2.connection import ConnectionInputs, H2Connection
from h2.stream import StreamInputs

_GRPC_PREFIX = struct.Struct(">?I")  # gRPC message prefix: compressed flag, length
_DATA_HEADER = struct.Struct(">BHBBI")  # HTTP/2 frame header: 24-bit length, type 0 (DATA), flags, stream

INTERNALS = "internals"
"""Fallback reason: grpclib's or h2's objects are not as this module expects."""
FLOW_CONTROL = "flow_control"
"""Fallback reason: the flow-control window or the write buffer cannot take the whole response."""
DISABLED = "disabled"
"""Fallback reason: ``ServerOptions.fast_send`` is off."""

# What the fast path uses, by the class that holds it (instance attributes are checked on an
# instance: per connection below for h2, per stream in FastSend.of for grpclib's objects).
_CLASS_ATTRIBUTES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (grpclib.server.Stream, ("send_initial_metadata", "send_message", "_messages_sent")),
    (grpclib.protocol.Stream, ("data_sent",)),
    (grpclib.protocol.Connection, ("data_sent", "messages_sent", "last_message_sent", "data_send_process")),
    (H2Connection, ("_get_stream_by_id", "data_to_send")),
)
_H2_INSTANCE_ATTRIBUTES = ("state_machine", "outbound_flow_control_window", "max_outbound_frame_size")


@functools.cache
def problem() -> str | None:
    """Why the fast path cannot be used with the installed grpclib and h2, or None if it can.

    Probed once per process: the classes' attributes, the two state-machine inputs, and the
    instance attributes of a fresh server-side ``H2Connection``.
    """
    return _probe()


def _probe() -> str | None:
    for cls, names in _CLASS_ATTRIBUTES:
        for name in names:
            if not hasattr(cls, name):
                return f"{cls.__module__}.{cls.__qualname__} has no {name!r}"
    for enum, member in ((ConnectionInputs, "SEND_DATA"), (StreamInputs, "SEND_DATA")):
        if not hasattr(enum, member):
            return f"h2 {enum.__qualname__} has no {member}"
    h2c = H2Connection(H2Configuration(client_side=False))
    for name in _H2_INSTANCE_ATTRIBUTES:
        if not hasattr(h2c, name):
            return f"h2.connection.H2Connection instances have no {name!r}"
    if not callable(getattr(h2c.state_machine, "process_input", None)):
        return "h2's connection state machine has no process_input"
    return None


class FastSend:
    """The objects of one grpclib server stream the fast path writes through, found once.

    ``headers_sent`` is True once the response headers are out (by :meth:`start` or by
    grpclib's ``send_message``); :meth:`send` is only valid after that.
    """

    __slots__ = (
        "_conn",
        "_conn_input",
        "_get_stream",
        "_h2c",
        "_pending",
        "_ps",
        "_sid",
        "_stream",
        "_write",
        "_write_ready",
        "headers_sent",
    )

    def __init__(self, stream: Any) -> None:
        ps = stream._stream
        conn = ps.connection
        h2c = ps._h2_connection
        sid = ps.id
        if not isinstance(sid, int):
            raise TypeError(f"stream id {sid!r}")
        self._stream = stream
        self._ps = ps
        self._conn = conn
        self._h2c = h2c
        self._sid = sid
        self._write_ready = conn.write_ready
        self._write: Callable[[bytes], object] = ps._transport.write
        self._conn_input: Callable[[Any], object] = h2c.state_machine.process_input
        self._get_stream: Callable[[int], Any] = h2c._get_stream_by_id
        self._pending: Callable[[], bytes] = h2c.data_to_send
        h2s = h2c._get_stream_by_id(sid)
        # Everything send() reads or increments, read once here so a missing one shows now.
        for obj, names in (
            (stream, ("_messages_sent",)),
            (ps, ("data_sent",)),
            (conn, ("data_sent", "messages_sent", "last_message_sent")),
            (h2c, ("outbound_flow_control_window", "max_outbound_frame_size")),
            (h2s, ("outbound_flow_control_window",)),
        ):
            for name in names:
                getattr(obj, name)
        for method in (self._write_ready.is_set, conn.data_send_process, h2s.state_machine.process_input):
            if not callable(method):
                raise TypeError(f"{method!r} is not callable")
        self.headers_sent = False

    @classmethod
    def of(cls, stream: Any) -> FastSend | None:
        """The fast path for ``stream``, or None if grpclib's or h2's objects are not as expected.

        Call it once the request headers are in (h2 knows the stream); h2's errors for a stream
        it has already closed propagate, as they would from grpclib's path.
        """
        try:
            return cls(stream)
        except (AttributeError, TypeError):
            return None

    async def start(self) -> None:
        """Send the response headers (grpclib's public ``send_initial_metadata``)."""
        await self._stream.send_initial_metadata()
        self.headers_sent = True

    def send(self, msg: bytes) -> str | None:
        """Write ``msg`` as one gRPC message; None when written, else the reason it was not.

        When it returns a reason nothing has changed: the caller sends ``msg`` by grpclib's path.
        Errors h2 raises for a closed stream or connection propagate, as from grpclib's path.
        """
        # Reads: nothing is changed until all of these succeeded.
        try:
            if not self._write_ready.is_set():
                return FLOW_CONTROL  # the transport's buffer is full: grpclib's path waits
            sid = self._sid
            h2c = self._h2c
            h2s = self._get_stream(sid)
            size = len(msg) + 5
            if min(h2c.outbound_flow_control_window, h2s.outbound_flow_control_window) < size:
                return FLOW_CONTROL
            frame = h2c.max_outbound_frame_size
            stream_input = h2s.state_machine.process_input
        except AttributeError:
            return INTERNALS
        # Frames: every payload is a slice of ``msg`` (one copy of the response, in the join).
        view = memoryview(msg)
        head = view[: frame - 5]
        full = _DATA_HEADER.pack(frame >> 16, frame & 0xFFFF, 0, 0, sid)
        n = len(head) + 5
        frames: list[Any] = [
            full if n == frame else _DATA_HEADER.pack(n >> 16, n & 0xFFFF, 0, 0, sid),
            _GRPC_PREFIX.pack(False, len(msg)),
            head,
        ]
        for off in range(frame - 5, len(msg), frame):
            chunk = view[off : off + frame]
            n = len(chunk)
            frames.append(full if n == frame else _DATA_HEADER.pack(n >> 16, n & 0xFFFF, 0, 0, sid))
            frames.append(chunk)
        # Changes, in h2's order (send_data: connection input, stream input, frames, windows).
        self._conn_input(ConnectionInputs.SEND_DATA)
        stream_input(StreamInputs.SEND_DATA)
        pending = self._pending()
        h2s.outbound_flow_control_window -= size
        h2c.outbound_flow_control_window -= size
        self._write(b"".join((pending, *frames)))
        self._ps.data_sent += size
        conn = self._conn
        conn.data_sent += size
        conn.data_send_process()
        conn.messages_sent += 1
        conn.last_message_sent = time.monotonic()
        self._stream._messages_sent += 1
        return None
