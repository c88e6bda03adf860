"""Pure translation: api objects + Services + EndpointSlices + Gateways + tailnet facts → model;
model → xDS resources per proxy group (protobuf messages, upb backend); model → owned Kubernetes
objects (plain dicts for server-side apply).

No I/O. Errors are values: every input object gets conditions in the model, and one bad object
never blocks the others. The same input gives byte-identical output.
"""

from tsgw.translate._egress import egress_service_ports
from tsgw.translate._identity import egress_service_name, group_name, node_cluster, split_node_cluster
from tsgw.translate._inputs import Device, Inputs, Options, TailnetFacts, User
from tsgw.translate._objects import DEVICE_FINALIZER, owned_objects
from tsgw.translate._policy import ROUTE_ACCESS_KIND, ROUTE_KINDS, resolve_access, route_access_objects
from tsgw.translate._status import status_body
from tsgw.translate._translate import Result, Translator, translate
from tsgw.translate._xds import XdsResources, access_rules, xds_resources

__all__ = [
    "DEVICE_FINALIZER",
    "ROUTE_ACCESS_KIND",
    "ROUTE_KINDS",
    "Device",
    "Inputs",
    "Options",
    "Result",
    "TailnetFacts",
    "Translator",
    "User",
    "XdsResources",
    "access_rules",
    "egress_service_name",
    "egress_service_ports",
    "group_name",
    "node_cluster",
    "owned_objects",
    "resolve_access",
    "route_access_objects",
    "split_node_cluster",
    "status_body",
    "translate",
    "xds_resources",
]
