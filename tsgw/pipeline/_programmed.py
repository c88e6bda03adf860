"""The `Programmed` condition: has every Envoy of an object's proxy group taken the
configuration that includes the object's current generation? Pure functions, no I/O.

Gateway API's meaning of Programmed (GEP-1364: "the resource has been programmed into the data
plane") applied to tsgw's proxies: the xDS server judges per connected Envoy whether it holds
the group's current snapshot (:meth:`tsgw.xds.AdsServer.group_sync`), and this module turns
those verdicts into one condition per object that owns a group:

====================  =======  =====================================================================
reason                status   when
====================  =======  =====================================================================
``Programmed``        True     every connected Envoy of the group ACKed the current snapshot
``Pending``           False    some have not yet (being sent, or awaiting the ACK)
``NoProxies``         False    no Envoy of the group is connected
``Rejected``          False    an Envoy NACKed it; the message is Envoy's (it keeps its last good
                               configuration)
``Invalid``           False    the xDS server refused the snapshot as inconsistent (a bug); the
                               previous one is served
``NotTranslated``     False    the object forms no proxy group (see its other conditions)
====================  =======  =====================================================================

Only ``Rejected`` and ``Invalid`` are problems a user must act on; the others pass by themselves.
Route policies and tailnets own no group and get no Programmed condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tsgw.model import Condition, ObjectStatus, ProxyGroup
from tsgw.xds import NodeSync, Sync, short_name

__all__ = ["ACTIONABLE", "PROGRAMMED", "GroupState", "programmed", "with_programmed"]

PROGRAMMED = "Programmed"
ACTIONABLE = frozenset({"Rejected", "Invalid"})
"""Programmed=False reasons that need a person (the rest resolve themselves)."""

_OWNING_KINDS = frozenset({"TailscaleEndpoints", "TailscaleServices", "TailscaleGateway"})
_MAX_DETAIL = 1000

ObjectKey = tuple[str, str, str]
GroupKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the data plane holds of one proxy group."""

    key: GroupKey
    """(namespace, group name)."""
    node_cluster: str
    version: str
    """The label of the snapshot being served ("" before the first)."""
    refused: str = ""
    """Why the xDS server refused the group's latest snapshot ("" when it took it)."""
    nodes: tuple[NodeSync, ...] = ()
    """Per connected Envoy: does it hold the current snapshot?"""


def programmed(state: GroupState) -> Condition:
    """The Programmed condition of the object that owns the group ``state`` describes."""
    if state.refused:
        return Condition(PROGRAMMED, False, "Invalid", _bounded(state.refused))
    if not state.nodes:
        return Condition(
            PROGRAMMED, False, "NoProxies", f"no Envoy of node cluster {state.node_cluster!r} is connected"
        )
    for n in state.nodes:
        if n.sync is Sync.REJECTED:
            detail = n.rejection.detail.strip() if n.rejection is not None else ""
            version = n.rejection.version if n.rejection is not None else ""
            what = short_name(n.type_url) if n.type_url else "configuration"
            return Condition(
                PROGRAMMED,
                False,
                "Rejected",
                _bounded(
                    f"Envoy {n.node_id!r} rejected {what} version {version} of {state.version}: {detail}"
                ),
            )
    behind = [n.node_id for n in state.nodes if n.sync is not Sync.SYNCED]
    total = len(state.nodes)
    if behind:
        return Condition(
            PROGRAMMED,
            False,
            "Pending",
            f"{total - len(behind)} of {total} Envoys hold {state.version}; waiting for {sorted(behind)[:5]}",
        )
    return Condition(PROGRAMMED, True, "Programmed", f"{total} Envoy(s) hold {state.version}")


def with_programmed(
    statuses: Iterable[ObjectStatus], groups: Iterable[ProxyGroup], states: Mapping[GroupKey, GroupState]
) -> tuple[ObjectStatus, ...]:
    """``statuses`` with each group owner's Programmed condition added (replacing an old one)."""
    by_owner: dict[ObjectKey, GroupKey] = {
        (g.owner.kind, g.owner.namespace, g.owner.name): (g.namespace, g.name) for g in groups
    }
    out = []
    for st in statuses:
        ref = st.ref
        if ref.kind not in _OWNING_KINDS:
            out.append(st)
            continue
        gk = by_owner.get((ref.kind, ref.namespace, ref.name))
        state = states.get(gk) if gk is not None else None
        if state is None:
            cond = Condition(
                PROGRAMMED, False, "NotTranslated", "it forms no proxy group: see its other conditions"
            )
        else:
            cond = programmed(state)
        kept = tuple(c for c in st.conditions if c.type != PROGRAMMED)
        out.append(replace(st, conditions=(*kept, cond)))
    return tuple(out)


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else f"{text[: _MAX_DETAIL - 24]}... ({len(text)} characters)"
