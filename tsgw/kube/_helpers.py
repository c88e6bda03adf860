"""Owner references, finalizers, conditions and conflict retries (``controllerutil`` and friends).

These change the dict they are given and return whether something changed, so a reconciler
writes only when needed. An object read from a cache is frozen (see ``_store``): they refuse to
change it (``TypeError``); change a :func:`deep_copy` of it, so a failed write leaves the cache
true to the server.

Conditions follow the Kubernetes API conventions: ``lastTransitionTime`` changes only when the
status changes; ``observedGeneration`` records which spec the condition describes.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from tsgw.kube._errors import AlreadyOwnedError, Conflict
from tsgw.kube._resources import RawObject
from tsgw.kube._store import deep_copy

__all__ = [
    "add_finalizer",
    "deep_copy",
    "find_condition",
    "has_finalizer",
    "is_condition_true",
    "owner_reference",
    "remove_finalizer",
    "retry_on_conflict",
    "rfc3339_now",
    "set_condition",
    "set_controller_reference",
    "set_owner_reference",
]

T = TypeVar("T")


def rfc3339_now() -> str:
    """A metav1.Time: second precision, UTC."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- owner references ----------------------------------------------------------------------


def owner_reference(
    owner: RawObject, *, controller: bool = True, block_owner_deletion: bool = True
) -> dict[str, Any]:
    meta = owner["metadata"]
    ref: dict[str, Any] = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
    }
    if controller:
        ref["controller"] = True
    if block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    return ref


def _check_scope(owner: RawObject, obj: RawObject) -> None:
    owner_ns = owner["metadata"].get("namespace") or ""
    obj_ns = (obj.get("metadata") or {}).get("namespace") or ""
    if owner_ns and owner_ns != obj_ns:
        raise ValueError(
            f"cross-namespace owner references are disallowed: owner in {owner_ns!r}, object in {obj_ns!r}"
        )


def set_controller_reference(owner: RawObject, obj: RawObject) -> bool:
    """Make ``owner`` the controller of ``obj``; raises :class:`AlreadyOwnedError` if another is.

    Returns whether ``obj`` changed.
    """
    _check_scope(owner, obj)
    ref = owner_reference(owner)
    refs: list[dict[str, Any]] = obj.setdefault("metadata", {}).setdefault("ownerReferences", [])
    for i, existing in enumerate(refs):
        if existing.get("controller") and existing.get("uid") != ref["uid"]:
            name = obj["metadata"].get("name")
            raise AlreadyOwnedError(
                f"{name} is already controlled by {existing.get('kind')}/{existing.get('name')}"
            )
        if existing.get("uid") == ref["uid"]:
            if existing == ref:
                return False
            refs[i] = ref
            return True
    refs.append(ref)
    return True


def set_owner_reference(owner: RawObject, obj: RawObject) -> bool:
    """Add a non-controller owner reference (no-op when present)."""
    _check_scope(owner, obj)
    ref = owner_reference(owner, controller=False, block_owner_deletion=False)
    refs: list[dict[str, Any]] = obj.setdefault("metadata", {}).setdefault("ownerReferences", [])
    if any(r.get("uid") == ref["uid"] for r in refs):
        return False
    refs.append(ref)
    return True


# -- finalizers ----------------------------------------------------------------------------


def has_finalizer(obj: RawObject, finalizer: str) -> bool:
    return finalizer in ((obj.get("metadata") or {}).get("finalizers") or ())


def add_finalizer(obj: RawObject, finalizer: str) -> bool:
    """Add ``finalizer``; refuses (returns False) once deletion started, as the API server would."""
    meta = obj.setdefault("metadata", {})
    if meta.get("deletionTimestamp") or has_finalizer(obj, finalizer):
        return False
    meta.setdefault("finalizers", []).append(finalizer)
    return True


def remove_finalizer(obj: RawObject, finalizer: str) -> bool:
    meta = obj.get("metadata") or {}
    fins = meta.get("finalizers") or []
    if finalizer not in fins:
        return False
    meta["finalizers"] = [f for f in fins if f != finalizer]
    return True


# -- conditions ----------------------------------------------------------------------------


def find_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_condition_true(obj: RawObject, type_: str) -> bool:
    cond = find_condition((obj.get("status") or {}).get("conditions"), type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: str | None = None,
) -> bool:
    """Set one condition in place; ``lastTransitionTime`` moves only when ``status`` changes.

    Returns whether anything changed (so an unchanged status needs no write).
    """
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    new: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message}
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    existing = find_condition(conditions, type_)
    if existing is None:
        new["lastTransitionTime"] = now or rfc3339_now()
        conditions.append(new)
        return True
    if existing.get("status") != status:
        new["lastTransitionTime"] = now or rfc3339_now()
    else:
        new["lastTransitionTime"] = existing.get("lastTransitionTime") or now or rfc3339_now()
    if new == existing:
        return False
    existing.clear()
    existing.update(new)
    return True


# -- conflicts -----------------------------------------------------------------------------


async def retry_on_conflict(
    fn: Callable[[], Awaitable[T]], *, steps: int = 5, delay: float = 0.01, jitter: float = 0.1
) -> T:
    """Run ``fn`` again (re-reading inside it) while it raises :class:`Conflict`.

    client-go's ``retry.DefaultRetry``: 5 steps, 10 ms, factor 1, jitter 0.1.
    """
    for attempt in range(steps):
        try:
            return await fn()
        except Conflict:
            if attempt == steps - 1:
                raise
            await anyio.sleep(delay * (1 + random.random() * jitter))
    raise AssertionError("unreachable")
