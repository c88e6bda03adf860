from envoy.config.cluster.v3 import cluster_pb2 as _cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2 as _endpoint_pb2
from envoy.config.listener.v3 import listener_pb2 as _listener_pb2
from envoy.config.route.v3 import route_components_pb2 as _route_components_pb2
from envoy.config.route.v3 import route_pb2 as _route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2 as _secret_pb2
from tsgw._proto.envoygateway.extension import context_pb2 as _context_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PostRouteModifyRequest(_message.Message):
    __slots__ = ("route", "post_route_context")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    POST_ROUTE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    route: _route_components_pb2.Route
    post_route_context: _context_pb2.PostRouteExtensionContext
    def __init__(self, route: _Optional[_Union[_route_components_pb2.Route, _Mapping]] = ..., post_route_context: _Optional[_Union[_context_pb2.PostRouteExtensionContext, _Mapping]] = ...) -> None: ...

class PostRouteModifyResponse(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: _route_components_pb2.Route
    def __init__(self, route: _Optional[_Union[_route_components_pb2.Route, _Mapping]] = ...) -> None: ...

class PostClusterModifyRequest(_message.Message):
    __slots__ = ("cluster", "post_cluster_context")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    POST_CLUSTER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    cluster: _cluster_pb2.Cluster
    post_cluster_context: _context_pb2.PostClusterExtensionContext
    def __init__(self, cluster: _Optional[_Union[_cluster_pb2.Cluster, _Mapping]] = ..., post_cluster_context: _Optional[_Union[_context_pb2.PostClusterExtensionContext, _Mapping]] = ...) -> None: ...

class PostClusterModifyResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: _cluster_pb2.Cluster
    def __init__(self, cluster: _Optional[_Union[_cluster_pb2.Cluster, _Mapping]] = ...) -> None: ...

class PostEndpointsModifyRequest(_message.Message):
    __slots__ = ("load_assignment", "post_endpoints_context")
    LOAD_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    POST_ENDPOINTS_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    load_assignment: _endpoint_pb2.ClusterLoadAssignment
    post_endpoints_context: _context_pb2.PostEndpointsExtensionContext
    def __init__(self, load_assignment: _Optional[_Union[_endpoint_pb2.ClusterLoadAssignment, _Mapping]] = ..., post_endpoints_context: _Optional[_Union[_context_pb2.PostEndpointsExtensionContext, _Mapping]] = ...) -> None: ...

class PostEndpointsModifyResponse(_message.Message):
    __slots__ = ("load_assignment",)
    LOAD_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    load_assignment: _endpoint_pb2.ClusterLoadAssignment
    def __init__(self, load_assignment: _Optional[_Union[_endpoint_pb2.ClusterLoadAssignment, _Mapping]] = ...) -> None: ...

class PostVirtualHostModifyRequest(_message.Message):
    __slots__ = ("virtual_host", "post_virtual_host_context")
    VIRTUAL_HOST_FIELD_NUMBER: _ClassVar[int]
    POST_VIRTUAL_HOST_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    virtual_host: _route_components_pb2.VirtualHost
    post_virtual_host_context: _context_pb2.PostVirtualHostExtensionContext
    def __init__(self, virtual_host: _Optional[_Union[_route_components_pb2.VirtualHost, _Mapping]] = ..., post_virtual_host_context: _Optional[_Union[_context_pb2.PostVirtualHostExtensionContext, _Mapping]] = ...) -> None: ...

class PostVirtualHostModifyResponse(_message.Message):
    __slots__ = ("virtual_host",)
    VIRTUAL_HOST_FIELD_NUMBER: _ClassVar[int]
    virtual_host: _route_components_pb2.VirtualHost
    def __init__(self, virtual_host: _Optional[_Union[_route_components_pb2.VirtualHost, _Mapping]] = ...) -> None: ...

class PostHTTPListenerModifyRequest(_message.Message):
    __slots__ = ("listener", "post_listener_context")
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    POST_LISTENER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    listener: _listener_pb2.Listener
    post_listener_context: _context_pb2.PostHTTPListenerExtensionContext
    def __init__(self, listener: _Optional[_Union[_listener_pb2.Listener, _Mapping]] = ..., post_listener_context: _Optional[_Union[_context_pb2.PostHTTPListenerExtensionContext, _Mapping]] = ...) -> None: ...

class PostHTTPListenerModifyResponse(_message.Message):
    __slots__ = ("listener",)
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    listener: _listener_pb2.Listener
    def __init__(self, listener: _Optional[_Union[_listener_pb2.Listener, _Mapping]] = ...) -> None: ...

class PostTranslateModifyRequest(_message.Message):
    __slots__ = ("post_translate_context", "clusters", "secrets", "listeners", "routes")
    POST_TRANSLATE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    post_translate_context: _context_pb2.PostTranslateExtensionContext
    clusters: _containers.RepeatedCompositeFieldContainer[_cluster_pb2.Cluster]
    secrets: _containers.RepeatedCompositeFieldContainer[_secret_pb2.Secret]
    listeners: _containers.RepeatedCompositeFieldContainer[_listener_pb2.Listener]
    routes: _containers.RepeatedCompositeFieldContainer[_route_pb2.RouteConfiguration]
    def __init__(self, post_translate_context: _Optional[_Union[_context_pb2.PostTranslateExtensionContext, _Mapping]] = ..., clusters: _Optional[_Iterable[_Union[_cluster_pb2.Cluster, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_secret_pb2.Secret, _Mapping]]] = ..., listeners: _Optional[_Iterable[_Union[_listener_pb2.Listener, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[_route_pb2.RouteConfiguration, _Mapping]]] = ...) -> None: ...

class PostTranslateModifyResponse(_message.Message):
    __slots__ = ("clusters", "secrets", "listeners", "routes")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[_cluster_pb2.Cluster]
    secrets: _containers.RepeatedCompositeFieldContainer[_secret_pb2.Secret]
    listeners: _containers.RepeatedCompositeFieldContainer[_listener_pb2.Listener]
    routes: _containers.RepeatedCompositeFieldContainer[_route_pb2.RouteConfiguration]
    def __init__(self, clusters: _Optional[_Iterable[_Union[_cluster_pb2.Cluster, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_secret_pb2.Secret, _Mapping]]] = ..., listeners: _Optional[_Iterable[_Union[_listener_pb2.Listener, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[_route_pb2.RouteConfiguration, _Mapping]]] = ...) -> None: ...
