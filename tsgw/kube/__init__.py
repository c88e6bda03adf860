"""The controller framework: client, informer, store, workqueue, controller, builder, manager.

Knows Kubernetes and nothing of Tailscale or Envoy; it could be published on its own. It keeps
controller-runtime's semantics and vocabulary (Reconciler, Request, Result, Manager, Builder,
Predicate) on asyncio with anyio's structured concurrency: a reflector that lists then watches by
the resourceVersion rules, a store with indexers, a deduplicating rate-limited work queue,
leader election on a Lease, health probes, metrics and an Events recorder.

Objects are raw JSON dicts parsed with orjson (typed models cost ~30× more to build), described
by a :class:`Resource`. Every error is a :class:`KubeError` (see ``_errors`` for the tree).

Minimal use::

    client = await Client.from_environment()
    mgr = Manager(client, ManagerOptions(leader_election=LeaderElectionOptions("tsgw")))
    controller_managed_by(mgr).for_(WIDGETS).owns(CONFIGMAPS).complete(MyReconciler(mgr))
    await mgr.run()
"""

from tsgw.kube._builder import Builder, controller_managed_by
from tsgw.kube._client import Client, ClientOptions, ObjectList, WatchEvent, WatchStream
from tsgw.kube._clock import Clock, FakeClock, RealClock
from tsgw.kube._controller import Controller, ControllerOptions, MapFunc, enqueue_object, enqueue_owner
from tsgw.kube._errors import (
    AlreadyExists,
    AlreadyOwnedError,
    APIError,
    BadRequest,
    CacheSyncError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    LeaderElectionLost,
    NotFound,
    ServerError,
    ServerTimeout,
    ShutDown,
    TerminalError,
    TooManyRequests,
    TransportError,
    Unauthorized,
)
from tsgw.kube._events import EventRecorder, EventRecorderOptions
from tsgw.kube._healthz import HealthServer
from tsgw.kube._helpers import (
    add_finalizer,
    deep_copy,
    find_condition,
    has_finalizer,
    is_condition_true,
    owner_reference,
    remove_finalizer,
    retry_on_conflict,
    set_condition,
    set_controller_reference,
    set_owner_reference,
)
from tsgw.kube._informer import (
    DeletedFinalStateUnknown,
    EventHandler,
    HandlerFuncs,
    Informer,
    InformerOptions,
    strip_managed_fields,
)
from tsgw.kube._leaderelection import LeaderElectionOptions, LeaderElector
from tsgw.kube._manager import Manager, ManagerOptions, Runnable
from tsgw.kube._predicates import (
    AnnotationChanged,
    GenerationChanged,
    LabelChanged,
    LabelSelectorPredicate,
    Predicate,
    ResourceVersionChanged,
    all_of,
    any_of,
    negate,
    predicate_funcs,
)
from tsgw.kube._ratelimit import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    TokenBucket,
)
from tsgw.kube._reconcile import Reconciler, ReconcilerFunc, Request, Result
from tsgw.kube._resources import (
    CONFIGMAPS,
    CUSTOMRESOURCEDEFINITIONS,
    ENDPOINTSLICES,
    EVENTS,
    LEASES,
    NAMESPACES,
    PODTEMPLATES,
    SECRETS,
    SERVICES,
    ObjectKey,
    RawObject,
    Resource,
    object_key,
)
from tsgw.kube._store import Store
from tsgw.kube._workqueue import LOW_PRIORITY, WorkQueue, WorkQueueOptions

__all__ = [
    "CONFIGMAPS",
    "CUSTOMRESOURCEDEFINITIONS",
    "ENDPOINTSLICES",
    "EVENTS",
    "LEASES",
    "LOW_PRIORITY",
    "NAMESPACES",
    "PODTEMPLATES",
    "SECRETS",
    "SERVICES",
    "APIError",
    "AlreadyExists",
    "AlreadyOwnedError",
    "AnnotationChanged",
    "BadRequest",
    "BucketRateLimiter",
    "Builder",
    "CacheSyncError",
    "Client",
    "ClientOptions",
    "Clock",
    "Conflict",
    "Controller",
    "ControllerOptions",
    "DeletedFinalStateUnknown",
    "EventHandler",
    "EventRecorder",
    "EventRecorderOptions",
    "FakeClock",
    "Forbidden",
    "GenerationChanged",
    "Gone",
    "HandlerFuncs",
    "HealthServer",
    "Informer",
    "InformerOptions",
    "Invalid",
    "ItemExponentialRateLimiter",
    "KubeError",
    "LabelChanged",
    "LabelSelectorPredicate",
    "LeaderElectionLost",
    "LeaderElectionOptions",
    "LeaderElector",
    "Manager",
    "ManagerOptions",
    "MapFunc",
    "MaxOfRateLimiter",
    "NotFound",
    "ObjectKey",
    "ObjectList",
    "Predicate",
    "RateLimiter",
    "RawObject",
    "RealClock",
    "Reconciler",
    "ReconcilerFunc",
    "Request",
    "Resource",
    "ResourceVersionChanged",
    "Result",
    "Runnable",
    "ServerError",
    "ServerTimeout",
    "ShutDown",
    "Store",
    "TerminalError",
    "TokenBucket",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "WatchEvent",
    "WatchStream",
    "WorkQueue",
    "WorkQueueOptions",
    "add_finalizer",
    "all_of",
    "any_of",
    "controller_managed_by",
    "deep_copy",
    "enqueue_object",
    "enqueue_owner",
    "find_condition",
    "has_finalizer",
    "is_condition_true",
    "negate",
    "object_key",
    "owner_reference",
    "predicate_funcs",
    "remove_finalizer",
    "retry_on_conflict",
    "set_condition",
    "set_controller_reference",
    "set_owner_reference",
    "strip_managed_fields",
]
