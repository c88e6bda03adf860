"""The whole pipeline: inputs → model → per-group xDS resources and owned objects, remembering
per-object results between calls so that a one-object change costs about one object.

Errors are values: an object whose name cannot form a proxy group, whose group name another
object of its namespace already holds, or whose translation raised (a bug) gets Accepted=False
with the reason, and the rest is translated and served as usual. Owned Kubernetes objects are
computed only when read (:class:`OwnedObjects`).

An object's result is reused while everything it was built from is unchanged: the object itself
(uid, resourceVersion, generation; or its content when it has no resourceVersion, as in
standalone mode), its tailnet object and facts (by identity: the controllers hand over a new
TailnetFacts when the facts change), and, for ingress, the Services and EndpointSlices of its
namespace (a Gateway's: all of them). Output is identical to a fresh translation.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from tsgw import api
from tsgw.model import Condition, Model, ObjectRef, ObjectStatus, ProxyGroup
from tsgw.translate._context import ACCEPTED, _Ctx, index, invalid_status
from tsgw.translate._identity import name_problem, node_cluster
from tsgw.translate._inputs import Inputs, Options
from tsgw.translate._kinds import translate_object
from tsgw.translate._objects import owned_objects
from tsgw.translate._policy import apply_policies, route_access_objects
from tsgw.translate._tls import LastGood, referenced, secret_deps
from tsgw.translate._xds import XdsResources, xds_resources

__all__ = ["OwnedObjects", "Result", "Translator", "translate"]

log = structlog.get_logger("tsgw.translate")

GroupKey = tuple[str, str]


class OwnedObjects(Mapping[GroupKey, list[dict[str, Any]]]):
    """The Kubernetes objects of each group, computed on first access and kept while the group
    is unchanged: standalone mode never asks, and builds no StatefulSet, RBAC or Secret."""

    __slots__ = ("_options", "_outputs")

    def __init__(self, outputs: Mapping[GroupKey, _Output], options: Options) -> None:
        self._outputs = outputs
        self._options = options

    def __getitem__(self, key: GroupKey) -> list[dict[str, Any]]:
        out = self._outputs[key]
        if out.objects is None:
            # Built acyclic, like translation's own output: no cyclic collection meanwhile.
            with _collector_paused(freeze=False):
                out.objects = owned_objects(out.group, self._options, dict(out.keys))
        return out.objects

    def __iter__(self) -> Iterator[GroupKey]:
        return iter(self._outputs)

    def values(self) -> ValuesView[list[dict[str, Any]]]:
        self._fill()
        return super().values()

    def items(self) -> ItemsView[GroupKey, list[dict[str, Any]]]:
        self._fill()
        return super().items()

    def _fill(self) -> None:
        """Every group's objects at once, in one pause of the collector (a pause per group
        lets the collections it postponed run between groups, over the whole heap)."""
        missing = [out for out in self._outputs.values() if out.objects is None]
        if missing:
            with _collector_paused(freeze=False):
                for out in missing:
                    out.objects = owned_objects(out.group, self._options, dict(out.keys))

    def __len__(self) -> int:
        return len(self._outputs)


@dataclass(frozen=True, slots=True)
class Result:
    """What one translation produced. `xds` and `objects` are keyed by (namespace, group name);
    the xDS node cluster of a group's Envoys is `node_cluster(namespace, group name)`.
    `objects` computes each group's owned objects on first access. `changed` names the groups
    whose resources or objects differ from the previous translation of the same Translator (all
    of them the first time), and the groups that disappeared."""

    model: Model
    xds: dict[GroupKey, XdsResources]
    objects: Mapping[GroupKey, list[dict[str, Any]]]
    changed: frozenset[GroupKey] = frozenset()
    route_access: tuple[dict[str, Any], ...] = ()
    """The TailscaleRouteAccess objects (Kubernetes JSON, sorted by namespace and name) derived
    from the policies on Gateway API routes, for Envoy Gateway (:func:`route_access_objects`)."""


def _fingerprint(raw: Mapping[str, Any]) -> Any:
    md = raw.get("metadata") or {}
    rv = md.get("resourceVersion") if type(md) is dict or isinstance(md, Mapping) else None
    if rv:
        return (md.get("uid"), rv, md.get("generation"))
    return hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).digest()


@contextmanager
def _collector_paused(freeze: bool) -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one translation.

    A cold translation allocates a few hundred thousand acyclic containers (dicts, lists,
    messages); every 700 of them start a generation-0 pass and some start full passes over the
    whole heap, including the informer caches. Measured on 1,000 + 1,000 objects, that is about
    a third of the CPU time. Reference counting frees everything translation drops; the collector
    resumes, in its previous state, when translation returns or raises.

    With `freeze`, a successful translation ends with ``gc.freeze()``, as the informer does after
    a list: what a cold translation built is the Translator's long-lived cache, and later full
    collections need not walk it again (nor a first pass over all of it run when the collector
    resumes). Frozen objects are still freed by reference counting when a change replaces them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze:
            gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Entry:
    deps: Any
    group: ProxyGroup | None
    status: ObjectStatus


@dataclass
class _Output:
    group: ProxyGroup
    xds: XdsResources
    keys: tuple[tuple[str, str], ...]
    objects: list[dict[str, Any]] | None = None
    """Computed on first access (:class:`OwnedObjects`)."""


@dataclass
class Translator:
    """Translates repeatedly, reusing what did not change. Not thread-safe; one per caller."""

    options: Options = field(default_factory=Options)
    _parsed: dict[Any, tuple[Any, api.Object[Any] | ObjectStatus | None]] = field(default_factory=dict)
    _entries: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)
    _outputs: dict[GroupKey, _Output] = field(default_factory=dict)
    _devices: dict[int, Any] = field(default_factory=dict)
    _ns_fp: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    _route_access: tuple[dict[str, Any], ...] = ()
    _last_good: LastGood = field(default_factory=LastGood)

    def _load(self, raw: Mapping[str, Any]) -> tuple[Any, Any, api.Object[Any] | ObjectStatus | None]:
        """(key, fingerprint, parsed object or its invalid status), parsed only when changed."""
        md = raw.get("metadata") or {}
        is_map = type(md) is dict or isinstance(md, Mapping)
        key = (raw.get("kind"), md.get("namespace"), md.get("name")) if is_map else None
        fp = _fingerprint(raw)
        hit = self._parsed.get(key)
        if hit is not None and hit[0] == fp:
            return key, fp, hit[1]
        value: api.Object[Any] | ObjectStatus | None
        try:
            value = api.load(raw)
        except api.ValidationError as e:
            value = invalid_status(raw, e)
        self._parsed[key] = (fp, value)
        return key, fp, value

    def translate(self, inputs: Inputs) -> Result:
        """Translate `inputs`, reusing every per-object and per-group result whose inputs did
        not change since the previous call. The cyclic garbage collector is paused meanwhile and,
        after a cold translation (the first, or one with no previous output), objects are frozen
        out of its reach: see `_collector_paused`."""
        with _collector_paused(freeze=not self._outputs):
            return self._translate(inputs)

    def _translate(self, inputs: Inputs) -> Result:
        live_facts = {id(f) for f in inputs.tailnets.values()}
        self._devices = {k: v for k, v in self._devices.items() if k in live_facts}
        ctx = index(inputs, self.options, self._devices)
        ctx.last_good = self._last_good
        statuses: list[ObjectStatus] = []
        loaded: list[tuple[api.Object[Any], Any]] = []
        live_parsed = set()
        for raw in inputs.objects:
            key, fp, value = self._load(raw)
            live_parsed.add(key)
            if isinstance(value, ObjectStatus):
                statuses.append(value)
            elif value is not None:
                loaded.append((value, fp))
        if len(live_parsed) != len(self._parsed):
            for k in [k for k in self._parsed if k not in live_parsed]:
                del self._parsed[k]
        loaded.sort(key=lambda o: o[0].key)
        tailnet_fp: dict[str, Any] = {}
        for obj, fp in loaded:
            if obj.kind == "TailscaleTailnet":
                ctx.tailnets[obj.metadata.name] = obj.spec
                tailnet_fp[obj.metadata.name] = fp
        # Keep last call's tuple where a namespace did not change: every object's dependency
        # check then compares it by identity instead of element by element.
        ns_fp = {
            ns: fp if fp != (old := self._ns_fp.get(ns)) else old
            for ns, fp in _namespace_fingerprints(ctx).items()
        }
        self._ns_fp = ns_fp
        all_fp = tuple(sorted(ns_fp.items()))

        groups: list[ProxyGroup] = []
        group_owner: dict[GroupKey, ObjectRef] = {}
        policies: list[api.Object[Any]] = []
        live: set[tuple[str, str, str]] = set()
        for obj, fp in loaded:
            if obj.kind == "TailscaleRoutePolicy":
                policies.append(obj)
                continue
            if obj.kind == "TailscaleTailnet":
                continue
            tailnet = obj.spec.tailnet_ref.name
            deps: tuple[Any, ...] = (fp, tailnet_fp.get(tailnet), id(ctx.inputs.tailnets.get(tailnet)))
            if obj.kind == "TailscaleServices":
                deps += (
                    ns_fp.get(obj.metadata.namespace),
                    secret_deps(ctx.secrets, obj.spec, obj.metadata.namespace),
                )
            elif obj.kind == "TailscaleGateway":
                deps += (all_fp, _gateway_fp(ctx, obj))
            key = obj.key
            live.add(key)
            entry = self._entries.get(key)
            if entry is None or entry.deps != deps:
                group, status = _translate_one(ctx, obj)
                entry = self._entries[key] = _Entry(deps, group, status)
            if entry.group is not None:
                gk = (entry.group.namespace, entry.group.name)
                holder = group_owner.get(gk)
                if holder is not None:
                    # Two objects would form one group: the first (kind, name order) keeps it.
                    statuses.append(_refused(entry.status, "GroupNameConflict", _conflict(gk, holder)))
                    continue
                group_owner[gk] = entry.group.owner
                groups.append(entry.group)
            statuses.append(entry.status)
        for k in [k for k in self._entries if k not in live]:
            del self._entries[k]
        self._last_good.prune(
            k
            for obj, _ in loaded
            if isinstance(obj.spec, api.TailscaleServicesSpec)
            for k in referenced(obj.spec, obj.metadata.namespace)
        )
        if policies:
            groups, policy_statuses = _apply_policies(ctx, groups, policies)
            statuses.extend(policy_statuses)
        try:
            self._route_access = tuple(route_access_objects(policies, inputs.tailnets))
        except Exception:  # a bug: keep the last objects rather than open the routes they guard
            log.exception("route access objects failed; keeping the previous ones")
        groups.sort(key=lambda g: (g.namespace, g.name))
        statuses.sort(key=lambda s: (s.ref.kind, s.ref.namespace, s.ref.name))

        xds: dict[GroupKey, XdsResources] = {}
        changed: set[GroupKey] = set()
        outputs: dict[GroupKey, _Output] = {}
        failed: dict[tuple[str, str, str], str] = {}
        for g in groups:
            gk = (g.namespace, g.name)
            keys: tuple[tuple[str, str], ...] = ()
            if inputs.auth_keys:
                # Keyed by namespace too: groups of the same name in two namespaces have
                # replicas of the same name, and one's key must never reach the other's config.
                keys = tuple(
                    sorted(
                        (p, inputs.auth_keys[f"{g.namespace}/{p}"])
                        for p in g.replica_names()
                        if f"{g.namespace}/{p}" in inputs.auth_keys
                    )
                )
            out = self._outputs.get(gk)
            if out is not None and out.keys == keys and (out.group is g or out.group == g):
                out.group = g
            else:
                try:
                    resources = xds_resources(g, connect_proxy_port=self.options.connect_proxy_port)
                except Exception as e:  # one group's failure is its owner's condition
                    failed[(g.owner.kind, g.owner.namespace, g.owner.name)] = _failure(e)
                    continue
                changed.add(gk)
                out = _Output(g, resources, keys)
            outputs[gk] = out
            xds[gk] = out.xds
        changed.update(k for k in self._outputs if k not in outputs)
        self._outputs = outputs
        if failed:
            groups = [g for g in groups if (g.namespace, g.name) in outputs]
            statuses = [
                _refused(st, "TranslationFailed", failed[k])
                if (k := (st.ref.kind, st.ref.namespace, st.ref.name)) in failed
                else st
                for st in statuses
            ]
        model = Model(groups=tuple(groups), statuses=tuple(statuses))
        return Result(
            model=model,
            xds=xds,
            objects=OwnedObjects(outputs, self.options),
            changed=frozenset(changed),
            route_access=self._route_access,
        )


_MAX_MESSAGE = 300


def _failure(e: BaseException) -> str:
    """A bug's message for a condition: the exception, bounded (it may quote a huge value)."""
    text = f"{type(e).__name__}: {e}"
    if len(text) > _MAX_MESSAGE:
        text = f"{text[: _MAX_MESSAGE - 20]}... ({len(text)} characters)"
    return f"tsgw could not translate this object ({text}); the rest is served"


def _refused(status: ObjectStatus, reason: str, message: str) -> ObjectStatus:
    """`status` with Accepted=False for `reason`, its other conditions kept."""
    kept = tuple(c for c in status.conditions if c.type != ACCEPTED)
    return dataclasses.replace(status, conditions=(Condition(ACCEPTED, False, reason, message), *kept))


def _conflict(gk: GroupKey, holder: ObjectRef) -> str:
    return (
        f"its proxy group {gk[1]!r} (node cluster {node_cluster(*gk)!r}) is already "
        f"{holder.kind} {holder.name!r}'s; rename one of them"
    )


def _translate_one(ctx: _Ctx, obj: api.Object[Any]) -> tuple[ProxyGroup | None, ObjectStatus]:
    """One object's group and status; a name that cannot form a group, or an exception (a bug:
    translation of valid input should not raise), becomes its Accepted=False condition."""
    ref = ObjectRef(
        obj.kind, obj.metadata.namespace, obj.metadata.name, obj.metadata.uid, obj.metadata.generation
    )
    problem = name_problem(obj.metadata.name)
    if problem is not None:
        return None, ObjectStatus(ref, (Condition(ACCEPTED, False, "InvalidName", problem),))
    try:
        return translate_object(ctx, obj)
    except Exception as e:
        log.exception("translation of one object failed", kind=obj.kind, name=obj.metadata.name)
        return None, ObjectStatus(ref, (Condition(ACCEPTED, False, "TranslationFailed", _failure(e)),))


def _apply_policies(
    ctx: _Ctx, groups: list[ProxyGroup], policies: list[api.Object[Any]]
) -> tuple[list[ProxyGroup], list[ObjectStatus]]:
    """apply_policies, one policy at a time when applying them together raises: a failing
    policy gets a condition, the others still apply."""
    try:
        return apply_policies(ctx, groups, policies)
    except Exception:
        log.exception("route policies failed together; applying them one by one")
    statuses: list[ObjectStatus] = []
    for pol in sorted(
        policies, key=lambda p: (p.metadata.creation_timestamp, p.metadata.namespace, p.metadata.name)
    ):
        try:
            groups, st = apply_policies(ctx, groups, [pol])
            statuses.extend(st)
        except Exception as e:
            md = pol.metadata
            ref = ObjectRef(pol.kind, md.namespace, md.name, md.uid, md.generation)
            statuses.append(
                ObjectStatus(ref, (Condition(ACCEPTED, False, "TranslationFailed", _failure(e)),))
            )
    return groups, statuses


def _namespace_fingerprints(ctx: _Ctx) -> dict[str, tuple[Any, ...]]:
    """Per namespace: the fingerprints of its Services and EndpointSlices (what ingress reads)."""
    acc: dict[str, list[Any]] = {}
    for (ns, name), svc in ctx.services.items():
        acc.setdefault(ns, []).append(("s", name, _fingerprint(svc)))
    for (ns, name), slices in ctx.slices.items():
        acc.setdefault(ns, []).append(("e", name, tuple(_fingerprint(e) for e in slices)))
    return {ns: tuple(sorted(v, key=lambda x: (x[0], x[1]))) for ns, v in acc.items()}


def _gateway_fp(ctx: _Ctx, obj: api.Object[Any]) -> Any:
    gw = ctx.gateways.get((obj.metadata.namespace, obj.spec.gateway_ref.name))
    return None if gw is None else _fingerprint(gw)


def translate(inputs: Inputs, options: Options | None = None) -> Result:
    """Translate everything once. Pure and deterministic; never raises for a bad input object
    (its status in `result.model.statuses` says what is wrong)."""
    return Translator(options or Options()).translate(inputs)
