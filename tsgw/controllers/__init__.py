"""The reconcilers, leader only: glue between the pipeline's latest result, the caches, the
Kubernetes API and (next) the Tailscale API. They never translate; they read what the pipeline
published and write what it asks for.

- :mod:`._status`: each object's conditions (Accepted, ResolvedRefs, Programmed) written to its
  status subresource when they change.
- :mod:`._proxygroup`: each proxy group's owned objects applied (only when the cache does not
  already hold them) and pruned.
"""

from tsgw.controllers._proxygroup import (
    MANAGED_SELECTOR,
    OWNED_RESOURCES,
    ProxyGroupReconciler,
    add_proxygroup_controllers,
    contains,
    enqueue_changed_groups,
)
from tsgw.controllers._status import StatusReconciler, add_status_controllers, enqueue_changed

__all__ = [
    "MANAGED_SELECTOR",
    "OWNED_RESOURCES",
    "ProxyGroupReconciler",
    "StatusReconciler",
    "add_proxygroup_controllers",
    "add_status_controllers",
    "contains",
    "enqueue_changed",
    "enqueue_changed_groups",
]
