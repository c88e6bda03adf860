"""Predicates filter events before they become work (controller-runtime ``pkg/predicate``).

They filter *events*, not the cache: a filtered object is still cached and readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tsgw.kube._resources import RawObject

__all__ = [
    "AnnotationChanged",
    "GenerationChanged",
    "LabelChanged",
    "LabelSelectorPredicate",
    "Predicate",
    "ResourceVersionChanged",
    "all_of",
    "any_of",
    "label_selector_matches",
    "negate",
    "predicate_funcs",
]


class Predicate:
    """Passes everything; subclasses override the event kinds they judge."""

    def create(self, obj: RawObject) -> bool:
        return True

    def update(self, old: RawObject, new: RawObject) -> bool:
        return True

    def delete(self, obj: RawObject) -> bool:
        return True


def _meta(obj: RawObject) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


class ResourceVersionChanged(Predicate):
    """Skips updates whose resourceVersion did not change (relists, resyncs)."""

    def update(self, old: RawObject, new: RawObject) -> bool:
        return _meta(old).get("resourceVersion") != _meta(new).get("resourceVersion")


class GenerationChanged(Predicate):
    """Skips updates that did not bump ``metadata.generation`` (status-only and metadata writes).

    For objects with a status subresource, generation changes only with the spec; a reconciler
    that also reacts to its own status being wiped should not use it.
    """

    def update(self, old: RawObject, new: RawObject) -> bool:
        return _meta(old).get("generation") != _meta(new).get("generation")


class LabelChanged(Predicate):
    def update(self, old: RawObject, new: RawObject) -> bool:
        return _meta(old).get("labels") != _meta(new).get("labels")


class AnnotationChanged(Predicate):
    def update(self, old: RawObject, new: RawObject) -> bool:
        return _meta(old).get("annotations") != _meta(new).get("annotations")


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (``matchLabels`` and ``matchExpressions``) against labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr["key"], expr["operator"], expr.get("values") or ()
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class LabelSelectorPredicate(Predicate):
    """Passes objects whose labels match a LabelSelector (on update: the new object)."""

    selector: Mapping[str, Any] = field(default_factory=dict)

    def _ok(self, obj: RawObject) -> bool:
        return label_selector_matches(self.selector, _meta(obj).get("labels") or {})

    def create(self, obj: RawObject) -> bool:
        return self._ok(obj)

    def update(self, old: RawObject, new: RawObject) -> bool:
        return self._ok(new)

    def delete(self, obj: RawObject) -> bool:
        return self._ok(obj)


@dataclass(frozen=True)
class _Funcs(Predicate):
    filter: Callable[[RawObject], bool]

    def create(self, obj: RawObject) -> bool:
        return self.filter(obj)

    def update(self, old: RawObject, new: RawObject) -> bool:
        return self.filter(new)

    def delete(self, obj: RawObject) -> bool:
        return self.filter(obj)


def predicate_funcs(filter: Callable[[RawObject], bool]) -> Predicate:
    """One function judging every event by its (new) object (``NewPredicateFuncs``)."""
    return _Funcs(filter)


@dataclass(frozen=True)
class _All(Predicate):
    preds: Sequence[Predicate]

    def create(self, obj: RawObject) -> bool:
        return all(p.create(obj) for p in self.preds)

    def update(self, old: RawObject, new: RawObject) -> bool:
        return all(p.update(old, new) for p in self.preds)

    def delete(self, obj: RawObject) -> bool:
        return all(p.delete(obj) for p in self.preds)


@dataclass(frozen=True)
class _Any(Predicate):
    preds: Sequence[Predicate]

    def create(self, obj: RawObject) -> bool:
        return any(p.create(obj) for p in self.preds)

    def update(self, old: RawObject, new: RawObject) -> bool:
        return any(p.update(old, new) for p in self.preds)

    def delete(self, obj: RawObject) -> bool:
        return any(p.delete(obj) for p in self.preds)


@dataclass(frozen=True)
class _Not(Predicate):
    pred: Predicate

    def create(self, obj: RawObject) -> bool:
        return not self.pred.create(obj)

    def update(self, old: RawObject, new: RawObject) -> bool:
        return not self.pred.update(old, new)

    def delete(self, obj: RawObject) -> bool:
        return not self.pred.delete(obj)


def all_of(*preds: Predicate) -> Predicate:
    return _All(preds)


def any_of(*preds: Predicate) -> Predicate:
    return _Any(preds)


def negate(pred: Predicate) -> Predicate:
    return _Not(pred)
