from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PostRouteExtensionContext(_message.Message):
    __slots__ = ("extension_resources", "hostnames", "extension_policies")
    EXTENSION_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_POLICIES_FIELD_NUMBER: _ClassVar[int]
    extension_resources: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    hostnames: _containers.RepeatedScalarFieldContainer[str]
    extension_policies: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    def __init__(self, extension_resources: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ..., hostnames: _Optional[_Iterable[str]] = ..., extension_policies: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ...) -> None: ...

class PostVirtualHostExtensionContext(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PostClusterExtensionContext(_message.Message):
    __slots__ = ("backend_extension_resources",)
    BACKEND_EXTENSION_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    backend_extension_resources: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    def __init__(self, backend_extension_resources: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ...) -> None: ...

class PostEndpointsExtensionContext(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PostHTTPListenerExtensionContext(_message.Message):
    __slots__ = ("extension_resources",)
    EXTENSION_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    extension_resources: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    def __init__(self, extension_resources: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ...) -> None: ...

class PostTranslateExtensionContext(_message.Message):
    __slots__ = ("extension_resources",)
    EXTENSION_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    extension_resources: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    def __init__(self, extension_resources: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ...) -> None: ...

class ExtensionResource(_message.Message):
    __slots__ = ("unstructured_bytes",)
    UNSTRUCTURED_BYTES_FIELD_NUMBER: _ClassVar[int]
    unstructured_bytes: bytes
    def __init__(self, unstructured_bytes: _Optional[bytes] = ...) -> None: ...
