"""What the ADS server tells its subscribers: streams opening and closing, and each Envoy's
verdict on each version it was sent.

Envoy answers every discovery response with a request: an ACK names the version it applied, a
NACK carries ``error_detail`` with the reason it kept its previous configuration (Envoy's
``xds_protocol.rst``, "ACK/NACK and resource type instance version"). The server turns those into
:class:`StreamEvent` values and calls every subscriber synchronously, in the order they happen,
from the stream's own task. A subscriber must not block; one that raises is logged and the rest
are still called. Versions are the server's per-type versions (content hashes), the same strings
:meth:`Snapshot.type_version` returns, so a subscriber can tell which snapshot an Envoy holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = ["EventKind", "StreamEvent", "Subscriber"]


class EventKind(Enum):
    """What happened on a stream."""

    OPENED = "opened"
    """The stream's first request named its node (``node_id``, ``group`` are set)."""
    ACK = "ack"
    """The Envoy applied ``version`` of ``type_url``."""
    NACK = "nack"
    """The Envoy rejected ``version`` of ``type_url`` with ``detail`` and keeps its last good one."""
    CLOSED = "closed"
    """The stream ended (the Envoy went away or the server stopped)."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of one ADS stream."""

    kind: EventKind
    stream_id: int
    node_id: str
    group: str
    """The node group (snapshot key) the stream reads."""
    type_url: str = ""
    version: str = ""
    """ACK: the version applied. NACK: the version rejected (the one the server sent)."""
    detail: str = ""
    """NACK: Envoy's error message."""


Subscriber = Callable[[StreamEvent], None]
"""Called with every event; see :meth:`AdsServer.subscribe`."""
