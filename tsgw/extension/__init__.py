"""The Envoy Gateway extension server: Envoy Gateway's hooks answered by tsgw (grpclib).

Upstream: Envoy Gateway v1.9.0's extension service (``proto/extension/service.proto``, vendored
in ``proto/envoygateway``) and its hook semantics (``internal/xds/translator/extension.go``).

The shape is that of ``tsgw/xds/_state.py``: the logic is pure functions of the request
(:func:`post_cluster_modify`, in ``_hooks.py``, property-tested), and :class:`ExtensionService`
is the grpclib edge that decodes, calls them and answers. It sits on Envoy Gateway's translation
path, synchronously, so it never calls an API or waits on anything while answering.

What it does today: a ``backendRefs`` entry of an HTTPRoute or GRPCRoute naming a
TailscaleEndpoints (``backendResources``) becomes a DNS cluster to the ClusterIP Service tsgw
owns for it, so Envoy Gateway's traffic reaches the tailnet through tsgw's egress proxies; a
TailscaleRouteAccess (``policyResources``) targeting a route becomes that route's HTTP RBAC
rules on the caller's address (:func:`post_route_modify`, with the filter
:func:`post_http_listener_modify` adds to every HTTP listener). Every resource that is not ours
is ignored: a route none of ours targets is returned unchanged.

Failing open or closed (Envoy Gateway's ``extensionManager.failOpen``, default false): tsgw's
hooks never answer an error for a bad object of ours (the cluster is left without endpoints and
only that route fails), so ``failOpen`` would only matter for an error the server answers. An
unreachable server is another matter: Envoy Gateway's client calls with ``waitForReady`` and no
deadline, so its translation waits for the server, with ``failOpen`` true or false (checked
against the real Envoy Gateway v1.9.0 in ``tests/integration/extension``). Meanwhile its Envoys
keep the last published configuration, and it converges once the server is back. Run the
server in every replica, beside the xDS server.
"""

from tsgw._proto.envoygateway.extension import context_pb2 as contexts
from tsgw._proto.envoygateway.extension import service_pb2 as messages
from tsgw.extension._hooks import (
    BACKEND_KIND,
    RBAC_FILTER,
    ROUTE_ACCESS_KIND,
    ClusterAnswer,
    ExtensionOptions,
    ListenerAnswer,
    RouteAnswer,
    TailnetBackend,
    post_cluster_modify,
    post_http_listener_modify,
    post_route_modify,
    post_translate_modify,
    route_access_policy,
    tailnet_backend,
)
from tsgw.extension._service import SERVICE, ExtensionService

__all__ = [
    "BACKEND_KIND",
    "RBAC_FILTER",
    "ROUTE_ACCESS_KIND",
    "SERVICE",
    "ClusterAnswer",
    "ExtensionOptions",
    "ExtensionService",
    "ListenerAnswer",
    "RouteAnswer",
    "TailnetBackend",
    "contexts",
    "messages",
    "post_cluster_modify",
    "post_http_listener_modify",
    "post_route_modify",
    "post_translate_modify",
    "route_access_policy",
    "tailnet_backend",
]
