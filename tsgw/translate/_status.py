"""Translation's verdict on an object → the `.status` to write, by Kubernetes conventions.

The verdict (tsgw.model's typed conditions and details) becomes the kind's status class in
tsgw.api, which `api.to_json` writes. Each condition carries observedGeneration; its
lastTransitionTime changes only when its status or reason changes, so writing the same verdict
twice writes the same bytes (no status churn, the prototype's hot loop).

The body is a server-side apply configuration for one field manager (the status controller's):
its top-level conditions are only translation's (and the pipeline's Programmed). Conditions
other controllers write (``AuthKeysReady``, ``TailscaleServiceClaimed``) are theirs, applied
under their own field managers; ``conditions`` is a map list keyed by type, so the API server
keeps them whatever this body says. Copying them from a cached status would re-apply a stale
copy under this manager and undo a newer write (two writers flipping a status back and forth,
seen on the bed). Status fields translation leaves unset (e.g. after a failed translation:
dnsName, listeners) are kept as the current status has them, and so are other conditions per
listener and per policy target (translation is their only writer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tsgw import api
from tsgw.model import (
    AncestorVerdict,
    Condition,
    EndpointsDetails,
    GatewayDetails,
    ListenerVerdict,
    ObjectStatus,
    PolicyDetails,
    ServicesDetails,
)

__all__ = ["status_body"]

_CONTROLLER = "gateway.tailscale.com/tsgw"
"""The controllerName of the policy ancestor entries tsgw writes."""

_POLICY = "TailscaleRoutePolicy"


def status_body(status: ObjectStatus, current: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The status translation computed for one object, merged into its `current` status.

    `now` is the RFC 3339 time to stamp on conditions that transition (the caller's clock:
    translation reads none)."""
    current = current or {}
    stamp = _Stamp(status.ref.generation, now)
    listed = "ancestors" if status.ref.kind == _POLICY else "conditions"
    ours = api.to_json(_typed(status, current, stamp))
    # What translation owns replaces the current value in place; what it leaves out (None in the
    # status class, e.g. dnsName after a failed translation) stays; the conditions or ancestors
    # come last.
    body: dict[str, Any] = {k: v for k, v in current.items() if k not in ("conditions", "ancestors")}
    body.update((k, v) for k, v in ours.items() if k != listed)
    body[listed] = ours[listed]
    return body


def _typed(status: ObjectStatus, current: Mapping[str, Any], stamp: _Stamp) -> Any:
    """The api status class for `status`, holding what translation owns (its conditions merged
    with the current ones); just the conditions when translation got no further."""
    details = status.details
    if status.ref.kind == _POLICY:
        ancestors = details.ancestors if isinstance(details, PolicyDetails) else ()
        return api.RoutePolicyStatus(ancestors=_ancestors(ancestors, current.get("ancestors"), stamp))
    conditions = stamp.merged(status.conditions, current.get("conditions"), others=False)
    match details:
        case EndpointsDetails(service_name, targets):
            return api.EndpointsStatus(
                conditions=conditions,
                service_name=service_name,
                targets=tuple(api.TargetStatus(name=t.name, addresses=t.addresses) for t in targets),
            )
        case ServicesDetails(service_name, dns_name, addresses):
            return api.ServicesStatus(
                conditions=conditions,
                service_name=service_name or None,  # none on a control plane without them
                dns_name=dns_name,
                addresses=addresses,
            )
        case GatewayDetails(dns_name, addresses, listeners):
            return api.GatewayStatus(
                conditions=conditions,
                dns_name=dns_name,
                addresses=addresses,
                listeners=_listeners(listeners, current.get("listeners"), stamp),
            )
    return {"conditions": conditions}


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What every condition of one status body is stamped with."""

    generation: int
    now: str

    def merged(
        self, ours: Iterable[Condition], current: Any, *, others: bool = True
    ) -> tuple[api.Condition, ...]:
        """`current` (raw conditions) with `ours` applied: ours replace theirs by type (keeping
        their lastTransitionTime when status and reason hold), the other types stay unless
        `others` is False; sorted by type."""
        previous = {str(c.get("type")): _read(c, self.now) for c in current or ()}
        by_type = dict(previous) if others else {}
        for c in ours:
            by_type[c.type] = self._written(c, previous.get(c.type))
        return tuple(by_type[t] for t in sorted(by_type))

    def _written(self, c: Condition, previous: api.Condition | None) -> api.Condition:
        status = "True" if c.status else "False"
        since = self.now
        if previous is not None and previous.status == status and previous.reason == c.reason:
            since = previous.last_transition_time
        return api.Condition(
            type=c.type,
            status=status,
            reason=c.reason,
            message=c.message,
            observed_generation=self.generation,
            last_transition_time=since,
        )


def _read(raw: Mapping[str, Any], now: str) -> api.Condition:
    """A condition of the current status as the status class holds it (leniently: whatever is
    there is kept, even if another writer left it short of the schema)."""
    generation = raw.get("observedGeneration")
    return api.Condition(
        type=str(raw.get("type")),
        status=str(raw.get("status") or "Unknown"),
        reason=str(raw.get("reason") or ""),
        message=str(raw.get("message") or ""),
        observed_generation=generation if isinstance(generation, int) else None,
        last_transition_time=str(raw.get("lastTransitionTime") or now),
    )


def _listeners(
    ours: Sequence[ListenerVerdict], current: Any, stamp: _Stamp
) -> tuple[api.ListenerStatus, ...]:
    """A Gateway's per-listener status; each listener's conditions merged with what it had."""
    previous = {str(li.get("name")): li for li in current or ()}
    return tuple(
        api.ListenerStatus(
            name=v.name,
            port=v.port,
            conditions=stamp.merged(v.conditions, previous.get(v.name, {}).get("conditions")),
        )
        for v in ours
    )


def _ancestors(
    ours: Sequence[AncestorVerdict], current: Any, stamp: _Stamp
) -> tuple[api.PolicyAncestorStatus, ...]:
    """A policy's per-target status; each target's conditions merged with what it had."""
    previous = {_key(a.get("ancestorRef") or {}): a for a in current or ()}
    out = []
    for v in ours:
        ref = api.AncestorRef(
            group=v.group, kind=v.kind, name=v.name, namespace=v.namespace, section_name=v.section_name
        )
        before = previous.get(_key(api.to_json(ref)), {}).get("conditions")
        out.append(
            api.PolicyAncestorStatus(
                ancestor_ref=ref, controller_name=_CONTROLLER, conditions=stamp.merged(v.conditions, before)
            )
        )
    return tuple(out)


def _key(ref: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(ref.get(k) or "") for k in ("group", "kind", "namespace", "name", "sectionName"))
