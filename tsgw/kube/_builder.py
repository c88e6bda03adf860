"""The builder: ``controller_managed_by(mgr).for_(X).owns(Y).watches(Z, fn).complete(r)``.

* :meth:`Builder.for_` — the reconciled kind; each event enqueues the object itself (once only).
* :meth:`Builder.owns` — objects this controller creates; events enqueue their controller
  owner of the ``for_`` kind (every matching owner with ``match_every_owner``), in the child's
  namespace, or in none when the ``for_`` kind is cluster-scoped.
* :meth:`Builder.watches` — anything else, through a map function.
* :meth:`Builder.with_event_filter` — predicates applied to every watch.

Informers come from the manager, so two controllers watching the same kind share one cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsgw.kube._controller import Controller, ControllerOptions, MapFunc, enqueue_object, enqueue_owner
from tsgw.kube._informer import InformerOptions
from tsgw.kube._manager import Manager
from tsgw.kube._predicates import Predicate
from tsgw.kube._reconcile import Reconciler
from tsgw.kube._resources import Resource

__all__ = ["Builder", "controller_managed_by"]


@dataclass
class _Watch:
    resource: Resource
    map_func: MapFunc | None
    predicates: tuple[Predicate, ...]
    informer_options: InformerOptions | None
    owner_all: bool = False


@dataclass
class Builder:
    """Collects what a controller watches; :meth:`complete` builds and registers it."""

    manager: Manager
    _for: _Watch | None = None
    _watches: list[_Watch] = field(default_factory=list)
    _filters: list[Predicate] = field(default_factory=list)
    _options: ControllerOptions = field(default_factory=ControllerOptions)
    _name: str | None = None

    def for_(
        self, resource: Resource, *predicates: Predicate, informer: InformerOptions | None = None
    ) -> Builder:
        if self._for is not None:
            raise ValueError("for_() may be called only once")
        self._for = _Watch(resource, enqueue_object, predicates, informer)
        return self

    def owns(
        self,
        resource: Resource,
        *predicates: Predicate,
        match_every_owner: bool = False,
        informer: InformerOptions | None = None,
    ) -> Builder:
        self._watches.append(_Watch(resource, None, predicates, informer, match_every_owner))
        return self

    def watches(
        self,
        resource: Resource,
        map_func: MapFunc,
        *predicates: Predicate,
        informer: InformerOptions | None = None,
    ) -> Builder:
        self._watches.append(_Watch(resource, map_func, predicates, informer))
        return self

    def with_event_filter(self, *predicates: Predicate) -> Builder:
        self._filters.extend(predicates)
        return self

    def with_options(self, options: ControllerOptions) -> Builder:
        self._options = options
        return self

    def named(self, name: str) -> Builder:
        self._name = name
        return self

    def complete(self, reconciler: Reconciler) -> Controller:
        """Build the controller, wire its watches to shared informers, add it to the manager."""
        if self._for is None and self._name is None:
            raise ValueError("a controller needs for_() or named()")
        name = self._name or (self._for.resource.kind.lower() if self._for else "")
        ctrl = Controller(name, reconciler, self._options, clock=self.manager.clock)
        filters = tuple(self._filters)
        if self._for is not None:
            f = self._for
            ctrl.watch(
                self.manager.informer(f.resource, f.informer_options), enqueue_object, f.predicates + filters
            )
        for w in self._watches:
            map_func = w.map_func
            if map_func is None:
                if self._for is None:
                    raise ValueError("owns() needs for_(): it maps to owners of that kind")
                owner = self._for.resource
                map_func = enqueue_owner(
                    owner.api_version,
                    owner.kind,
                    only_controller=not w.owner_all,
                    namespaced=owner.namespaced,
                )
            ctrl.watch(
                self.manager.informer(w.resource, w.informer_options), map_func, w.predicates + filters
            )
        self.manager.add_controller(ctrl)
        return ctrl


def controller_managed_by(manager: Manager) -> Builder:
    """Start building a controller that ``manager`` will run."""
    return Builder(manager)
