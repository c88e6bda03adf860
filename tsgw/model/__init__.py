"""The intermediate model: proxy groups, listeners, routes, clusters with priorities, weights and
health checks, endpoints, access policies, and per-object conditions.

Pure data, no I/O, deterministic order and stable names: the same input gives equal models, so
the outputs derived from them are byte-identical.
"""

from tsgw.model._model import (
    AccessPolicy,
    AccessRule,
    Cluster,
    Condition,
    Direction,
    Endpoint,
    Failover,
    HeaderChanges,
    Listener,
    Model,
    ObjectRef,
    ObjectStatus,
    Protocol,
    ProxyGroup,
    ProxyPod,
    Retries,
    Route,
    ServicePort,
    TailscaleService,
)

__all__ = [
    "AccessPolicy",
    "AccessRule",
    "Cluster",
    "Condition",
    "Direction",
    "Endpoint",
    "Failover",
    "HeaderChanges",
    "Listener",
    "Model",
    "ObjectRef",
    "ObjectStatus",
    "Protocol",
    "ProxyGroup",
    "ProxyPod",
    "Retries",
    "Route",
    "ServicePort",
    "TailscaleService",
]
