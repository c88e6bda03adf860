"""Translation's verdict on an object → the `.status` to write, by Kubernetes conventions.

Each condition carries observedGeneration; its lastTransitionTime changes only when its status
or reason changes, so writing the same verdict twice writes the same bytes (no status churn, the
prototype's hot loop). Condition types translation does not own (e.g. Ready, which the
controller derives from the proxies) are kept as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tsgw.model import Condition, ObjectStatus

__all__ = ["status_body"]


def _condition(c: Condition, generation: int, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    status = "True" if c.status else "False"
    since = now
    if previous is not None and previous.get("status") == status and previous.get("reason") == c.reason:
        since = str(previous.get("lastTransitionTime") or now)
    return {
        "type": c.type,
        "status": status,
        "reason": c.reason,
        "message": c.message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def merge_conditions(
    ours: Sequence[Condition], current: Sequence[Mapping[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """`current` with `ours` applied: ours replace theirs by type, others stay; sorted by type."""
    by_type = {str(c.get("type")): dict(c) for c in current}
    for c in ours:
        by_type[c.type] = _condition(c, generation, by_type.get(c.type), now)
    return [by_type[t] for t in sorted(by_type)]


def status_body(status: ObjectStatus, current: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The status translation computed for one object, merged into its `current` status.

    `now` is the RFC 3339 time to stamp on conditions that transition (the caller's clock:
    translation reads none)."""
    current = current or {}
    body: dict[str, Any] = {k: v for k, v in current.items() if k not in ("conditions", "ancestors")}
    generation = status.ref.generation
    for key, value in status.facts:
        if key == "ancestors":
            continue
        if key == "listeners":
            body[key] = _listeners(value, current.get("listeners") or [], generation, now)
            continue
        body[key] = list(value) if isinstance(value, tuple) else value
    if status.ref.kind == "TailscaleRoutePolicy":
        body["ancestors"] = _ancestors(status, current.get("ancestors") or [], generation, now)
    else:
        body["conditions"] = merge_conditions(
            status.conditions, current.get("conditions") or [], generation, now
        )
    return body


def _ancestors(
    status: ObjectStatus, current: Sequence[Mapping[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    previous = {_key(a.get("ancestorRef") or {}): a for a in current}
    out = []
    for a in dict(status.facts).get("ancestors", ()):
        ref = a["ancestorRef"]
        ours = [
            Condition(c["type"], c["status"] == "True", c["reason"], c["message"]) for c in a["conditions"]
        ]
        before = previous.get(_key(ref), {}).get("conditions") or []
        out.append(
            {
                "ancestorRef": ref,
                "controllerName": "gateway.tailscale.com/tsgw",
                "conditions": merge_conditions(ours, before, generation, now),
            }
        )
    return out


def _listeners(
    ours: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """A Gateway's per-listener status; each listener's conditions merged with what it had."""
    previous = {str(li.get("name")): li for li in current}
    out = []
    for li in ours:
        conds = [
            Condition(c["type"], c["status"] == "True", c["reason"], c["message"]) for c in li["conditions"]
        ]
        before = previous.get(str(li["name"]), {}).get("conditions") or []
        out.append(
            {
                "name": li["name"],
                "port": li["port"],
                "conditions": merge_conditions(conds, before, generation, now),
            }
        )
    return out


def _key(ref: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(ref.get(k) or "") for k in ("group", "kind", "namespace", "name", "sectionName"))
