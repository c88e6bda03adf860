"""The reconcilers, leader only: glue between the pipeline's latest result, the caches, the
Kubernetes API and (next) the Tailscale API. They never translate; they read what the pipeline
published and write what it asks for.

- :mod:`._status`: each object's conditions (Accepted, ResolvedRefs, Programmed) written to its
  status subresource when they change.
- :mod:`._proxygroup`: each proxy group's owned objects applied (only when the cache does not
  already hold them) and pruned.
- :mod:`._tailnets`: each tailnet's credentials checked (its Ready condition), its API client
  kept, its facts polled into a ConfigMap every replica reads.
- :mod:`._authkeys`: one auth key per replica, kept in its state Secret until the device
  registered; devices deleted before their state Secrets go (a finalizer); the owner's
  ``AuthKeysReady`` condition when no key can be minted.
- :mod:`._routeaccess`: the TailscaleRouteAccess of each TailscaleRoutePolicy on Gateway API
  routes (what Envoy Gateway passes to tsgw's extension) applied and pruned.
- :mod:`._services`: the Tailscale Service (``svc:<name>``) of each ingress group claimed on
  the tailnet, and released (deleted with its last claim) when the group goes (a finalizer).
"""

from tsgw.controllers._authkeys import (
    AUTHKEY_FIELD,
    AUTHKEYS_READY,
    AuthKeyReconciler,
    SecretStateStore,
    auth_keys_condition,
    auth_keys_from_secrets,
)
from tsgw.controllers._proxygroup import (
    MANAGED_SELECTOR,
    OWNED_RESOURCES,
    ProxyGroupReconciler,
    add_proxygroup_controllers,
    contains,
    enqueue_changed_groups,
    owner_of,
)
from tsgw.controllers._routeaccess import (
    ROUTE_ACCESSES,
    RouteAccessReconciler,
    add_route_access_controller,
    enqueue_changed_route_access,
    route_access_object,
)
from tsgw.controllers._services import (
    SERVICE_CLAIMED,
    SERVICE_FINALIZER,
    ClaimOutcome,
    ServiceReconciler,
    converge_claim,
    converge_release,
    enqueue_changed_services,
)
from tsgw.controllers._status import StatusReconciler, add_status_controllers, enqueue_changed
from tsgw.controllers._tailnets import (
    FACTS_KEY,
    TAILNET_LABEL,
    TailnetClients,
    TailnetReconciler,
    facts_configmap_name,
    facts_from_configmaps,
)

__all__ = [
    "AUTHKEYS_READY",
    "AUTHKEY_FIELD",
    "FACTS_KEY",
    "MANAGED_SELECTOR",
    "OWNED_RESOURCES",
    "ROUTE_ACCESSES",
    "SERVICE_CLAIMED",
    "SERVICE_FINALIZER",
    "TAILNET_LABEL",
    "AuthKeyReconciler",
    "ClaimOutcome",
    "ProxyGroupReconciler",
    "RouteAccessReconciler",
    "SecretStateStore",
    "ServiceReconciler",
    "StatusReconciler",
    "TailnetClients",
    "TailnetReconciler",
    "add_proxygroup_controllers",
    "add_route_access_controller",
    "add_status_controllers",
    "auth_keys_condition",
    "auth_keys_from_secrets",
    "contains",
    "converge_claim",
    "converge_release",
    "enqueue_changed",
    "enqueue_changed_groups",
    "enqueue_changed_route_access",
    "enqueue_changed_services",
    "facts_configmap_name",
    "facts_from_configmaps",
    "owner_of",
    "route_access_object",
]
