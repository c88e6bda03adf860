from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Nack(_message.Message):
    __slots__ = ("version", "detail", "time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    version: str
    detail: str
    time: float
    def __init__(self, version: _Optional[str] = ..., detail: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class TypeStatus(_message.Message):
    __slots__ = ("type_url", "sent_version", "acked_version", "last_nack", "pushes", "subscribed", "wildcard", "sync", "rejection")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    SENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_NACK_FIELD_NUMBER: _ClassVar[int]
    PUSHES_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    WILDCARD_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    REJECTION_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    sent_version: str
    acked_version: str
    last_nack: Nack
    pushes: int
    subscribed: _containers.RepeatedScalarFieldContainer[str]
    wildcard: bool
    sync: str
    rejection: Nack
    def __init__(self, type_url: _Optional[str] = ..., sent_version: _Optional[str] = ..., acked_version: _Optional[str] = ..., last_nack: _Optional[_Union[Nack, _Mapping]] = ..., pushes: _Optional[int] = ..., subscribed: _Optional[_Iterable[str]] = ..., wildcard: _Optional[bool] = ..., sync: _Optional[str] = ..., rejection: _Optional[_Union[Nack, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("stream_id", "variant", "node_id", "cluster", "group", "metadata_json", "peer", "opened_at", "snapshot_version", "types")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    stream_id: int
    variant: str
    node_id: str
    cluster: str
    group: str
    metadata_json: str
    peer: str
    opened_at: float
    snapshot_version: str
    types: _containers.RepeatedCompositeFieldContainer[TypeStatus]
    def __init__(self, stream_id: _Optional[int] = ..., variant: _Optional[str] = ..., node_id: _Optional[str] = ..., cluster: _Optional[str] = ..., group: _Optional[str] = ..., metadata_json: _Optional[str] = ..., peer: _Optional[str] = ..., opened_at: _Optional[float] = ..., snapshot_version: _Optional[str] = ..., types: _Optional[_Iterable[_Union[TypeStatus, _Mapping]]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class SnapshotSummary(_message.Message):
    __slots__ = ("group", "generation", "version", "created", "type_versions", "counts", "current")
    class TypeVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GROUP_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    TYPE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    group: str
    generation: int
    version: str
    created: float
    type_versions: _containers.ScalarMap[str, str]
    counts: _containers.ScalarMap[str, int]
    current: bool
    def __init__(self, group: _Optional[str] = ..., generation: _Optional[int] = ..., version: _Optional[str] = ..., created: _Optional[float] = ..., type_versions: _Optional[_Mapping[str, str]] = ..., counts: _Optional[_Mapping[str, int]] = ..., current: _Optional[bool] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[SnapshotSummary]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[SnapshotSummary, _Mapping]]] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("group", "version")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    group: str
    version: str
    def __init__(self, group: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("summary", "resources_json")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_JSON_FIELD_NUMBER: _ClassVar[int]
    summary: SnapshotSummary
    resources_json: str
    def __init__(self, summary: _Optional[_Union[SnapshotSummary, _Mapping]] = ..., resources_json: _Optional[str] = ...) -> None: ...

class WatchSnapshotsRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class SnapshotEvent(_message.Message):
    __slots__ = ("summary",)
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    summary: SnapshotSummary
    def __init__(self, summary: _Optional[_Union[SnapshotSummary, _Mapping]] = ...) -> None: ...

class ListSourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SourceProblem(_message.Message):
    __slots__ = ("file", "line", "reason")
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    file: str
    line: int
    reason: str
    def __init__(self, file: _Optional[str] = ..., line: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("kind", "location", "generation", "loaded_at", "objects", "problems")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    location: str
    generation: int
    loaded_at: float
    objects: int
    problems: _containers.RepeatedCompositeFieldContainer[SourceProblem]
    def __init__(self, kind: _Optional[str] = ..., location: _Optional[str] = ..., generation: _Optional[int] = ..., loaded_at: _Optional[float] = ..., objects: _Optional[int] = ..., problems: _Optional[_Iterable[_Union[SourceProblem, _Mapping]]] = ...) -> None: ...

class ListSourcesResponse(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    def __init__(self, sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ...) -> None: ...
