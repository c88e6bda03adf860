"""Snapshots: Envoy resources by type, each encoded once, with a version per type.

A :class:`Snapshot` is immutable. Building one serializes every resource (deterministically) and
precomputes the wire fragments that responses are assembled from; the per-type version is a hash
of that type's content, so a type whose resources did not change keeps its version and is not
pushed again. Consistency (every EDS and RDS name that CDS and LDS reference exists, nothing
unreferenced) is checked on construction.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from tsgw.xds import _wire
from tsgw.xds._errors import InconsistentSnapshotError, SnapshotError
from tsgw.xds._redact import redact_secret
from tsgw.xds._types import (
    HCM_TYPE,
    MESSAGE_CLASSES,
    ClusterDiscovery,
    EndpointDiscovery,
    ListenerDiscovery,
    RouteDiscovery,
    SecretDiscovery,
    import_message_package,
    short_name,
)

_NAME_FIELD = {EndpointDiscovery: "cluster_name"}


class Resource:
    """One encoded resource: its name, serialized bytes and content version (a hash).

    Immutable by convention; a plain slotted class because building thousands of them per
    snapshot is on the push path (a frozen dataclass's ``__init__`` costs several times more).
    """

    __slots__ = ("any", "data", "name", "sotw_field", "type_url", "version")

    def __init__(
        self, type_url: str, name: str, data: bytes, version: str, any: bytes, sotw_field: bytes
    ) -> None:
        self.type_url = type_url
        self.name = name
        self.data = data
        self.version = version
        self.any = any
        self.sotw_field = sotw_field

    def __repr__(self) -> str:
        return f"<Resource {short_name(self.type_url)} {self.name!r} {self.version}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and (self.type_url, self.data) == (other.type_url, other.data)

    def __hash__(self) -> int:
        return hash((self.type_url, self.data))

    @classmethod
    def encode(
        cls, type_url: str, message: Message, previous: Mapping[str, Resource] | None = None
    ) -> Resource:
        """Serialize ``message``; reuse the entry of ``previous`` (by name) if the bytes are equal."""
        return _encode(type_url, message, previous, _NAME_FIELD.get(type_url, "name"))

    def delta_field(self) -> bytes:
        return _wire.delta_resource_field(self.name, self.version, self.any)

    def message(self) -> Message:
        """Decode the bytes back into a protobuf message (for dumps; not on the hot path)."""
        msg: Message = MESSAGE_CLASSES[self.type_url]()
        msg.ParseFromString(self.data)
        return msg

    def to_dict(self) -> dict[str, Any]:
        """The resource as JSON for people (dumps, the admin API): an SDS secret's keys redacted."""
        out: dict[str, Any] = json_format.MessageToDict(self.message(), preserving_proto_field_name=True)
        if self.type_url == SecretDiscovery:
            out = redact_secret(out)
        return out


def _encode(
    type_url: str, message: Message, previous: Mapping[str, Resource] | None, name_field: str
) -> Resource:
    # On the push path once per resource (thousands per snapshot): kept to plain calls.
    name = str(getattr(message, name_field))
    if not name:
        raise SnapshotError(f"a {short_name(type_url)} resource has no name")
    data = message.SerializeToString(deterministic=True)
    if previous:
        old = previous.get(name)
        if old is not None and old.data == data:
            return old
    any_msg = _wire.any_bytes(type_url, data)
    return Resource(
        type_url,
        name,
        data,
        hashlib.sha256(data).hexdigest()[:16],
        any_msg,
        _wire.sotw_resource_field(any_msg),
    )


_EMPTY_VERSION = hashlib.sha256(b"").hexdigest()[:16]


class TypeResources:
    """All resources of one type in a snapshot, by name, with the type's version."""

    __slots__ = ("_all_sotw", "_delta_fields", "items", "type_url", "version")

    def __init__(self, type_url: str, items: Mapping[str, Resource]) -> None:
        self.type_url = type_url
        self.items: dict[str, Resource] = dict(sorted(items.items())) if len(items) > 1 else dict(items)
        # One hash over "name\0version\0" of every item, in name order.
        if self.items:
            text = "".join(f"{name}\0{r.version}\0" for name, r in self.items.items())
            self.version = hashlib.sha256(text.encode()).hexdigest()[:16]
        else:
            self.version = _EMPTY_VERSION
        self._all_sotw: bytes | None = None
        self._delta_fields: dict[str, bytes] = {}

    def all_sotw(self) -> bytes:
        """The concatenated ``resources`` fields of every item (cached: shared by all streams)."""
        if self._all_sotw is None:
            self._all_sotw = b"".join(r.sotw_field for r in self.items.values())
        return self._all_sotw

    def delta_field(self, name: str) -> bytes:
        f = self._delta_fields.get(name)
        if f is None:
            f = self._delta_fields[name] = self.items[name].delta_field()
        return f

    def __len__(self) -> int:
        return len(self.items)


def _to_message(type_url: str, value: Message | Mapping[str, Any]) -> Message:
    cls = MESSAGE_CLASSES.get(type_url)
    if cls is None:
        raise SnapshotError(f"unsupported resource type {type_url}")
    if isinstance(value, Message):
        if value.DESCRIPTOR.full_name != cls.DESCRIPTOR.full_name:
            raise SnapshotError(f"a {value.DESCRIPTOR.full_name} given as {short_name(type_url)}")
        return value
    msg: Message = cls()
    for _ in range(20):
        try:
            json_format.ParseDict(dict(value), msg)
            return msg
        except json_format.ParseError as e:
            # An Any whose type's module was not imported yet: import its package, retry.
            text = str(e)
            marker = "Can not find message descriptor by type_url: "
            if marker not in text:
                raise SnapshotError(f"invalid {short_name(type_url)} resource: {text}") from e
            url = text.split(marker, 1)[1].split()[0].rstrip(".,")
            import_message_package(url.rsplit("/", 1)[-1])
            msg = cls()
    raise SnapshotError(f"invalid {short_name(type_url)} resource: unresolvable Any types")


def _cluster_eds_name(msg: Message) -> str | None:
    c: Any = msg
    if c.WhichOneof("cluster_discovery_type") == "type" and c.type == 3:  # Cluster.EDS
        return str(c.eds_cluster_config.service_name or c.name)
    return None


_DOWNSTREAM_TLS = "type.googleapis.com/" + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name


def _listener_secret_names(msg: Message) -> list[str]:
    """The SDS secrets a listener's TLS filter chains name (their certificates)."""
    lst: Any = msg
    names: list[str] = []
    for chain in lst.filter_chains:
        ts = chain.transport_socket
        if ts.HasField("typed_config") and ts.typed_config.type_url == _DOWNSTREAM_TLS:
            ctx = tls_pb2.DownstreamTlsContext.FromString(ts.typed_config.value)
            names.extend(str(s.name) for s in ctx.common_tls_context.tls_certificate_sds_secret_configs)
    return names


def _listener_route_names(msg: Message) -> list[str]:
    lst: Any = msg
    chains = list(lst.filter_chains)
    if lst.HasField("default_filter_chain"):
        chains.append(lst.default_filter_chain)
    names = []
    for chain in chains:
        for flt in chain.filters:
            if flt.HasField("typed_config") and flt.typed_config.type_url == HCM_TYPE:
                hcm = http_connection_manager_pb2.HttpConnectionManager()
                hcm.ParseFromString(flt.typed_config.value)
                if hcm.HasField("rds"):
                    names.append(str(hcm.rds.route_config_name))
    return names


class Snapshot:
    """An immutable, consistent set of Envoy resources by type URL.

    ``resources`` maps a type URL (see :data:`ClusterDiscovery` and friends) to protobuf
    messages of ``xds-protos`` (the upb backend) or to JSON-shaped dicts, which are parsed into
    those messages. ``version`` is a label for people (the CLI and the admin API show it); the
    wire versions are per type and derived from content. ``check=False`` skips the consistency
    check (for tests of a deliberately broken configuration). ``reuse`` is the group's previous
    snapshot: resources whose bytes did not change share its encoded entries (less work and
    memory per push).
    """

    _types: dict[str, TypeResources]

    def __init__(
        self,
        resources: Mapping[str, Iterable[Message | Mapping[str, Any]]],
        *,
        version: str = "",
        check: bool = True,
        reuse: Snapshot | None = None,
    ) -> None:
        by_type: dict[str, TypeResources] = {}
        refs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for type_url, cls in MESSAGE_CLASSES.items():
            items: dict[str, Resource] = {}
            previous = reuse._types[type_url].items if reuse is not None else {}
            name_field = _NAME_FIELD.get(type_url, "name")
            for value in resources.get(type_url, ()):
                # The usual case, a message of exactly the type's class, skips the checks.
                msg = value if type(value) is cls else _to_message(type_url, value)
                r = _encode(type_url, msg, previous, name_field)
                if r.name in items:
                    raise SnapshotError(f"duplicate {short_name(type_url)} resource {r.name!r}")
                items[r.name] = r
                if type_url == ClusterDiscovery:
                    eds = _cluster_eds_name(msg)
                    if eds is not None:
                        refs.setdefault((EndpointDiscovery, eds), []).append((type_url, r.name))
                elif type_url == ListenerDiscovery:
                    for rds in _listener_route_names(msg):
                        refs.setdefault((RouteDiscovery, rds), []).append((type_url, r.name))
                    for sds in _listener_secret_names(msg):
                        refs.setdefault((SecretDiscovery, sds), []).append((type_url, r.name))
            by_type[type_url] = TypeResources(type_url, items)
        unknown = set(resources) - set(MESSAGE_CLASSES)
        if unknown:
            raise SnapshotError(f"unsupported resource types: {sorted(unknown)}")
        self._types = by_type
        self.references = refs
        h = hashlib.sha256("".join(t.version for t in by_type.values()).encode()).hexdigest()[:12]
        self.version = version or h
        self.created = time.time()
        if check:
            self.check_consistency()

    def check_consistency(self) -> None:
        """Raise :class:`InconsistentSnapshotError` naming the missing or unreferenced resources."""
        missing: list[tuple[str, str]] = []
        problems: list[str] = []
        for (type_url, name), referrers in sorted(self.references.items()):
            if name not in self._types[type_url].items:
                missing.append((type_url, name))
                by = ", ".join(f"{short_name(t)} {n!r}" for t, n in referrers)
                problems.append(f"{short_name(type_url)} {name!r} (referenced by {by}) is missing")
        dangling: list[tuple[str, str]] = []
        for type_url in (EndpointDiscovery, RouteDiscovery):
            for name in self._types[type_url].items:
                if (type_url, name) not in self.references:
                    dangling.append((type_url, name))
                    problems.append(f"{short_name(type_url)} {name!r} is referenced by nothing")
        if problems:
            raise InconsistentSnapshotError(
                f"inconsistent snapshot {self.version}: " + "; ".join(problems),
                missing=tuple(missing),
                dangling=tuple(dangling),
            )

    def resources(self, type_url: str) -> TypeResources:
        """The resources of one type (empty, with its own version, when the snapshot has none)."""
        try:
            return self._types[type_url]
        except KeyError:
            raise SnapshotError(f"unsupported resource type {type_url}") from None

    def type_version(self, type_url: str) -> str:
        return self.resources(type_url).version

    @property
    def type_urls(self) -> tuple[str, ...]:
        return tuple(self._types)

    def versions(self) -> dict[str, str]:
        """Per-type versions, by type URL."""
        return {t: r.version for t, r in self._types.items()}

    def counts(self) -> dict[str, int]:
        return {t: len(r) for t, r in self._types.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-shaped view for dumps: version, per-type versions and decoded resources."""
        return {
            "version": self.version,
            "types": {
                short_name(t): {
                    "version": r.version,
                    "resources": {n: res.to_dict() for n, res in r.items.items()},
                }
                for t, r in self._types.items()
                if r.items
            },
        }

    def __repr__(self) -> str:
        counts = ", ".join(f"{short_name(t)}={len(r)}" for t, r in self._types.items() if r.items)
        return f"<Snapshot {self.version} {counts}>"
