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

Once True, the condition holds for the object's generation (:func:`held`): a later snapshot of
the same generation (an endpoint, a device or a policy changed, or another replica translated
first) is not a reason to say ``Pending`` again, because every Envoy still holds a
configuration made from the object's current spec. ``Pending`` is for a new generation (or a
first configuration) not yet held everywhere, and for every push to an object without a
generation (standalone mode's files); ``NoProxies``, ``Rejected`` and ``Invalid`` end
the hold at once. Messages name no snapshot label, which differs per replica and per push, so a
steady object's status is written once, not on every push nor on a leader change. (Gateway API
controllers keep Programmed the same way: Envoy Gateway sets a Gateway's on its proxies'
readiness, not per xDS push.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, replace
from typing import Any

from tsgw.model import Condition, ObjectStatus, ProxyGroup
from tsgw.xds import Nack, NodeSync, Sync, short_name

__all__ = [
    "ACTIONABLE",
    "PROGRAMMED",
    "GroupState",
    "HeldKey",
    "held",
    "merge_remote",
    "programmed",
    "read_report",
    "report",
    "with_programmed",
]

PROGRAMMED = "Programmed"
ACTIONABLE = frozenset({"Rejected", "Invalid"})
"""Programmed=False reasons that need a person (the rest resolve themselves)."""

_OWNING_KINDS = frozenset({"TailscaleEndpoints", "TailscaleServices", "TailscaleGateway"})
_MAX_DETAIL = 1000

ObjectKey = tuple[str, str, str]
GroupKey = tuple[str, str]
HeldKey = tuple[str, str, str, str, int]
"""(kind, namespace, name, uid, generation) of an object whose Programmed is True."""


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
    """Per connected Envoy (of every replica that reported): does it hold the current snapshot?"""
    fingerprint: str = ""
    """The snapshot's content (a hash of its per-type versions): the same on every replica that
    translated the same inputs, whatever its version label."""
    local: tuple[NodeSync, ...] = ()
    """The Envoys connected to this replica's own xDS server (what it reports to the others)."""


def programmed(state: GroupState, *, holding: bool = False) -> Condition:
    """The Programmed condition of the object that owns the group ``state`` describes;
    ``holding``: it was True for the object's current generation already (Envoys still taking a
    later snapshot of that generation keep it True)."""
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
    if behind and not holding:
        return Condition(
            PROGRAMMED,
            False,
            "Pending",
            f"{total - len(behind)} of {total} Envoys hold its configuration;"
            f" waiting for {sorted(behind)[:5]}",
        )
    return Condition(PROGRAMMED, True, "Programmed", f"{total} Envoy(s) hold its configuration")


def with_programmed(
    statuses: Iterable[ObjectStatus],
    groups: Iterable[ProxyGroup],
    states: Mapping[GroupKey, GroupState],
    holding: Set[HeldKey] = frozenset(),
) -> tuple[ObjectStatus, ...]:
    """``statuses`` with each group owner's Programmed condition added (replacing an old one);
    ``holding``: the objects :func:`held` found Programmed in the previous outcome."""
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
            cond = programmed(state, holding=_held_key(st) in holding)
        kept = tuple(c for c in st.conditions if c.type != PROGRAMMED)
        out.append(replace(st, conditions=(*kept, cond)))
    return tuple(out)


def held(statuses: Iterable[ObjectStatus]) -> frozenset[HeldKey]:
    """The objects of ``statuses`` whose Programmed is True, at their generation: what the next
    :func:`with_programmed` keeps True while their Envoys take a later snapshot. Objects without
    a generation (standalone mode's files, whose edits keep generation 0) are never held: each
    of their pushes is Pending until ACKed, and no status is written for them."""
    return frozenset(
        _held_key(st)
        for st in statuses
        if st.ref.generation > 0 and any(c.type == PROGRAMMED and c.status for c in st.conditions)
    )


def _held_key(st: ObjectStatus) -> HeldKey:
    r = st.ref
    return (r.kind, r.namespace, r.name, r.uid, r.generation)


# --- what one replica tells the others ------------------------------------------------------
#
# Every replica serves xDS, and an Envoy is connected to whichever one the xDS Service gave it,
# so no replica sees every Envoy. Each replica reports the Envoys connected to it, per node
# cluster, against the content of its snapshot (:func:`report`); the others fold those reports
# into their own judgement (:func:`merge_remote`). An Envoy reported against other content than
# this replica's current snapshot (one of the two has not translated the latest inputs yet) is
# PENDING.

RemoteNodes = Mapping[str, tuple[str, tuple[NodeSync, ...]]]
"""Node cluster → (snapshot fingerprint, the Envoys connected to one replica)."""


def report(states: Iterable[GroupState]) -> dict[str, Any]:
    """A JSON document of this replica's own Envoys, per node cluster."""
    groups: dict[str, Any] = {}
    for st in sorted(states, key=lambda s: s.node_cluster):
        if not st.local:
            continue
        groups[st.node_cluster] = [
            st.fingerprint,
            [
                [
                    n.node_id,
                    n.sync.value,
                    n.type_url,
                    n.rejection.version if n.rejection else "",
                    n.rejection.detail if n.rejection else "",
                ]
                for n in st.local
            ],
        ]
    return {"v": 1, "groups": groups}


def read_report(doc: Mapping[str, Any]) -> dict[str, tuple[str, tuple[NodeSync, ...]]]:
    """The inverse of :func:`report`; ValueError on a document it cannot read."""
    if doc.get("v") != 1:
        raise ValueError(f"xDS report of an unknown version {doc.get('v')!r}")
    out: dict[str, tuple[str, tuple[NodeSync, ...]]] = {}
    for cluster, (fingerprint, nodes) in (doc.get("groups") or {}).items():
        out[str(cluster)] = (
            str(fingerprint),
            tuple(
                NodeSync(
                    0,
                    str(node),
                    Sync(sync),
                    Nack(str(version), str(detail)) if version or detail else None,
                    str(type_url),
                )
                for node, sync, type_url, version, detail in nodes
            ),
        )
    return out


def merge_remote(state: GroupState, remotes: Iterable[RemoteNodes]) -> tuple[NodeSync, ...]:
    """This replica's Envoys of ``state``'s group and every other replica's; a remote Envoy
    judged against other content is PENDING; an Envoy seen twice (while it moves between
    replicas) counts once, this replica's view first."""
    nodes = list(state.local)
    seen = {n.node_id for n in nodes}
    for remote in remotes:
        got = remote.get(state.node_cluster)
        if got is None:
            continue
        fingerprint, remote_nodes = got
        for n in remote_nodes:
            if n.node_id in seen:
                continue
            seen.add(n.node_id)
            if fingerprint != state.fingerprint:
                n = NodeSync(n.stream_id, n.node_id, Sync.PENDING)
            nodes.append(n)
    return tuple(nodes)


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else f"{text[: _MAX_DETAIL - 24]}... ({len(text)} characters)"
