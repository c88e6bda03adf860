"""The Programmed condition: one reason per state of a proxy group's Envoys, in a fixed order of
precedence (Invalid, NoProxies, Rejected, Pending, Programmed), True only when every connected
Envoy holds the current snapshot, and kept True for the same generation while a later snapshot
is pushed; `with_programmed` gives it to exactly the objects that own a group (NotTranslated for
an owner without one), replacing an older Programmed condition."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.translate._cases import load_case
from tsgw.model import Condition, ObjectStatus
from tsgw.pipeline import ACTIONABLE, PROGRAMMED, GroupState, held, programmed, with_programmed
from tsgw.translate import translate
from tsgw.xds import ClusterDiscovery, ListenerDiscovery, Nack, NodeSync, Sync

KEY = ("demo", "web-tssvc")
CLUSTER = "web-tssvc.demo"


def state(*nodes: NodeSync, refused: str = "", version: str = "g3") -> GroupState:
    return GroupState(KEY, CLUSTER, version, refused, tuple(nodes))


def node(i: int, sync: Sync, *, detail: str = "", type_url: str = "") -> NodeSync:
    nack = Nack("v7", detail) if sync is Sync.REJECTED else None
    return NodeSync(i, f"web-{i}", sync, nack, type_url if sync is Sync.REJECTED else "")


def test_every_envoy_holding_the_snapshot_is_programmed() -> None:
    cond = programmed(state(node(1, Sync.SYNCED), node(2, Sync.SYNCED)))
    assert cond == Condition(PROGRAMMED, True, "Programmed", "2 Envoy(s) hold its configuration")


def test_no_connected_envoy_is_no_proxies() -> None:
    cond = programmed(state())
    assert (cond.status, cond.reason) == (False, "NoProxies")
    assert repr(CLUSTER) in cond.message


def test_an_envoy_not_yet_holding_it_is_pending_and_named() -> None:
    cond = programmed(state(node(1, Sync.SYNCED), node(2, Sync.PENDING)))
    assert (cond.status, cond.reason) == (False, "Pending")
    assert cond.message.startswith("1 of 2 Envoys hold its configuration")
    assert "web-2" in cond.message
    assert "web-1" not in cond.message


def test_a_nack_is_rejected_with_envoys_message() -> None:
    cond = programmed(
        state(
            node(1, Sync.PENDING),
            node(
                2, Sync.REJECTED, detail="  Proto constraint validation failed \n", type_url=ClusterDiscovery
            ),
        )
    )
    assert (cond.status, cond.reason) == (False, "Rejected")
    assert cond.message == "Envoy 'web-2' rejected cds version v7 of g3: Proto constraint validation failed"


def test_a_refused_snapshot_is_invalid_whatever_the_envoys_hold() -> None:
    cond = programmed(state(node(1, Sync.SYNCED), refused="snapshot g4 refused: route to missing cluster"))
    assert cond == Condition(PROGRAMMED, False, "Invalid", "snapshot g4 refused: route to missing cluster")


def test_a_huge_envoy_message_is_bounded() -> None:
    cond = programmed(state(node(1, Sync.REJECTED, detail="x" * 50_000, type_url=ListenerDiscovery)))
    assert cond.reason == "Rejected"
    assert len(cond.message) <= 1000
    assert cond.message.endswith("characters)")


def test_only_rejected_and_invalid_need_a_person() -> None:
    assert frozenset({"Rejected", "Invalid"}) == ACTIONABLE


_syncs = st.lists(st.sampled_from(list(Sync)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(syncs=_syncs, refused=st.booleans(), holding=st.booleans())
def test_the_reason_follows_a_fixed_precedence(syncs: list[Sync], refused: bool, holding: bool) -> None:
    nodes = [node(i, s, detail="bad", type_url=ClusterDiscovery) for i, s in enumerate(syncs)]
    cond = programmed(state(*nodes, refused="refused" if refused else ""), holding=holding)
    if refused:
        expected = "Invalid"
    elif not syncs:
        expected = "NoProxies"
    elif Sync.REJECTED in syncs:
        expected = "Rejected"
    elif Sync.PENDING in syncs and not holding:
        expected = "Pending"
    else:
        expected = "Programmed"
    assert cond.type == PROGRAMMED
    assert cond.reason == expected
    assert cond.status is (expected == "Programmed")


def test_with_programmed_adds_the_condition_to_group_owners_only() -> None:
    result = translate(load_case("examples"))
    groups = {(g.owner.kind, g.owner.name): (g.namespace, g.name) for g in result.model.groups}
    web = groups[("TailscaleServices", "web")]
    backends = groups[("TailscaleEndpoints", "backends")]
    states = {
        web: GroupState(web, "web-tssvc.apps", "g1", nodes=(node(1, Sync.SYNCED),)),
        backends: GroupState(backends, "backends-tsep.apps", "g1"),
    }
    out = {s.ref.name: s for s in with_programmed(result.model.statuses, result.model.groups, states)}

    def prog(name: str) -> Condition | None:
        return next((c for c in out[name].conditions if c.type == PROGRAMMED), None)

    assert prog("web") == Condition(PROGRAMMED, True, "Programmed", "1 Envoy(s) hold its configuration")
    backends_cond = prog("backends")
    assert backends_cond is not None
    assert backends_cond.reason == "NoProxies"
    # A TailscaleGateway whose Gateway is missing owns no group: NotTranslated, not NoProxies.
    gateway = prog("public")
    assert gateway is not None
    assert (gateway.status, gateway.reason) == (False, "NotTranslated")
    # Route policies own no group and get no Programmed condition.
    assert prog("web-access") is None
    # The other conditions are kept, in order, before it.
    before = next(s for s in result.model.statuses if s.ref.name == "web")
    assert out["web"].conditions[:-1] == before.conditions


def test_with_programmed_replaces_an_older_programmed_condition() -> None:
    result = translate(load_case("examples"))
    web = next(g for g in result.model.groups if g.owner.name == "web")
    gk = (web.namespace, web.name)
    old = Condition(PROGRAMMED, False, "Pending", "earlier")
    statuses = [
        dataclasses.replace(s, conditions=(*s.conditions, old)) if s.ref.name == "web" else s
        for s in result.model.statuses
    ]
    st_by_name: dict[str, ObjectStatus] = {
        s.ref.name: s
        for s in with_programmed(statuses, result.model.groups, {gk: GroupState(gk, "c", "g2", "bad")})
    }
    progs = [c for c in st_by_name["web"].conditions if c.type == PROGRAMMED]
    assert [(c.status, c.reason) for c in progs] == [(False, "Invalid")]


def test_a_held_generation_stays_programmed_while_a_later_snapshot_is_pushed() -> None:
    cond = programmed(state(node(1, Sync.SYNCED), node(2, Sync.PENDING), version="g9"), holding=True)
    assert cond == Condition(PROGRAMMED, True, "Programmed", "2 Envoy(s) hold its configuration")


def test_messages_name_no_snapshot_label() -> None:
    """The label differs per push and per replica: naming it rewrote every status on each."""
    for syncs in ([Sync.SYNCED], [Sync.SYNCED, Sync.PENDING]):
        nodes = [node(i, s) for i, s in enumerate(syncs)]
        a = programmed(state(*nodes, version="g3"))
        b = programmed(state(*nodes, version="g4711"))
        assert a == b


def _numbered(statuses: tuple[ObjectStatus, ...], generation: int = 1) -> list[ObjectStatus]:
    """The examples' statuses as the API server's objects have them (generation >= 1; files
    have none)."""
    return [dataclasses.replace(s, ref=dataclasses.replace(s.ref, generation=generation)) for s in statuses]


def _web_outcome(
    states_of: dict[tuple[str, str], GroupState], holding: frozenset[tuple[str, str, str, str, int]]
) -> tuple[Condition, frozenset[tuple[str, str, str, str, int]]]:
    result = translate(load_case("examples"))
    out = with_programmed(_numbered(result.model.statuses), result.model.groups, states_of, holding)
    web = next(s for s in out if s.ref.name == "web")
    return next(c for c in web.conditions if c.type == PROGRAMMED), held(out)


def test_the_hold_spans_pushes_of_one_generation_and_ends_with_the_proxies() -> None:
    result = translate(load_case("examples"))
    web = next(g for g in result.model.groups if g.owner.name == "web")
    gk = (web.namespace, web.name)

    def at(*syncs: Sync, version: str) -> dict[tuple[str, str], GroupState]:
        return {
            gk: GroupState(
                gk, "web-tssvc.apps", version, nodes=tuple(node(i, s) for i, s in enumerate(syncs))
            )
        }

    # First configuration: Pending until every Envoy holds it, then Programmed and held.
    cond, hold = _web_outcome(at(Sync.SYNCED, Sync.PENDING, version="g1"), frozenset())
    assert (cond.status, cond.reason) == (False, "Pending")
    assert not hold
    cond, hold = _web_outcome(at(Sync.SYNCED, Sync.SYNCED, version="g1"), hold)
    assert (cond.status, cond.reason) == (True, "Programmed")
    assert len(hold) == 1
    # A later push of the same generation: still Programmed, the same message.
    later, hold = _web_outcome(at(Sync.PENDING, Sync.PENDING, version="g2"), hold)
    assert later == cond
    # The Envoys gone: NoProxies ends the hold; back, they are Pending until they hold it.
    cond, hold = _web_outcome(at(version="g2"), hold)
    assert cond.reason == "NoProxies"
    assert not hold
    cond, hold = _web_outcome(at(Sync.PENDING, version="g2"), hold)
    assert cond.reason == "Pending"
    # A NACK of a later push shows at once, held or not.
    _, hold = _web_outcome(at(Sync.SYNCED, version="g2"), hold)
    cond, hold = _web_outcome(at(Sync.REJECTED, version="g3"), hold)
    assert cond.reason == "Rejected"


def test_the_hold_is_per_generation() -> None:
    result = translate(load_case("examples"))
    web = next(g for g in result.model.groups if g.owner.name == "web")
    gk = (web.namespace, web.name)
    synced = {gk: GroupState(gk, "c", "g1", nodes=(node(1, Sync.SYNCED),))}
    pending = {gk: GroupState(gk, "c", "g2", nodes=(node(1, Sync.PENDING),))}
    _, hold = _web_outcome(synced, frozenset())
    ((kind, _ns, name, _uid, generation),) = hold
    assert (kind, name) == ("TailscaleServices", "web")
    # A new spec (generation + 1) is not held: Pending until the Envoys take it.
    bumped = _numbered(result.model.statuses, generation + 1)
    out = with_programmed(bumped, result.model.groups, pending, hold)
    cond = next(c for s in out if s.ref.name == "web" for c in s.conditions if c.type == PROGRAMMED)
    assert (cond.status, cond.reason) == (False, "Pending")


def test_objects_without_a_generation_are_never_held() -> None:
    """Standalone mode's files keep generation 0 across edits: a hold would hide a new spec."""
    result = translate(load_case("examples"))
    web = next(g for g in result.model.groups if g.owner.name == "web")
    gk = (web.namespace, web.name)
    synced = {gk: GroupState(gk, "c", "g1", nodes=(node(1, Sync.SYNCED),))}
    unnumbered = [
        dataclasses.replace(s, ref=dataclasses.replace(s.ref, generation=0)) for s in result.model.statuses
    ]
    assert held(with_programmed(unnumbered, result.model.groups, synced)) == frozenset()
