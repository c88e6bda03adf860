"""tsgw.kube's public surface is curated: adding a name is a decision, and every error is a KubeError."""

from __future__ import annotations

import tsgw.kube as kube
from tsgw.kube import _errors

EXPECTED = [
    "CONFIGMAPS", "CUSTOMRESOURCEDEFINITIONS", "ENDPOINTSLICES", "EVENTS", "LEASES", "LOW_PRIORITY",
    "NAMESPACES", "PODTEMPLATES", "SECRETS", "SERVICES", "APIError", "AlreadyExists",
    "AlreadyOwnedError", "AnnotationChanged", "BadRequest", "BucketRateLimiter", "Builder",
    "CacheSyncError", "Client", "ClientOptions", "Clock", "Conflict", "Controller", "ControllerOptions",
    "DeletedFinalStateUnknown",
    "EventHandler", "EventRecorder", "EventRecorderOptions", "FakeClock", "Forbidden", "GenerationChanged",
    "Gone", "HandlerFuncs", "HealthServer", "Informer", "InformerOptions", "Invalid",
    "ItemExponentialRateLimiter", "KubeError", "LabelChanged", "LabelSelectorPredicate",
    "LeaderElectionLost", "LeaderElectionOptions", "LeaderElector", "Manager", "ManagerOptions", "MapFunc",
    "MaxOfRateLimiter", "NotFound", "ObjectKey", "ObjectList", "Predicate", "RateLimiter", "RawObject",
    "RealClock", "Reconciler", "ReconcilerFunc", "Request", "Resource", "ResourceVersionChanged", "Result",
    "Runnable", "ServerError", "ServerTimeout", "ShutDown", "Store", "TerminalError", "TokenBucket",
    "TooManyRequests", "TransportError", "Unauthorized", "WatchEvent", "WatchStream", "WorkQueue",
    "WorkQueueOptions", "add_finalizer", "all_of", "any_of", "controller_managed_by", "deep_copy",
    "enqueue_object", "enqueue_owner", "find_condition", "has_finalizer", "is_condition_true", "negate",
    "object_key",
    "owner_reference", "predicate_funcs", "remove_finalizer", "retry_on_conflict", "set_condition",
    "set_controller_reference", "set_owner_reference", "strip_managed_fields",
]  # fmt: skip


def test_kube_exports_exactly_the_curated_names() -> None:
    assert kube.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(kube, name), name


def test_every_exception_in_the_tree_is_a_kube_error_and_exported() -> None:
    for name in _errors.__all__:
        obj = getattr(_errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, kube.KubeError)
            assert name in kube.__all__
