"""Property tests of the per-stream version/nonce state machines (SotW and delta)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tsgw.xds import ClusterDiscovery, Resource, TypeResources
from tsgw.xds._state import DeltaType, SotwType, Sync, Verdict

T = ClusterDiscovery
NAMES = ["a", "b", "c"]


def resources(contents: dict[str, int]) -> TypeResources:
    items = {n: Resource(T, n, b"", f"{n}{v}", b"", b"") for n, v in contents.items()}
    return TypeResources(T, items)


contents_st = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2), max_size=3)
sotw_action = st.one_of(
    st.tuples(st.just("snapshot"), contents_st),
    st.tuples(st.just("ack"), st.booleans()),
    st.tuples(st.just("nack"), st.booleans()),
    st.tuples(st.just("stale"), st.booleans()),
    st.tuples(st.just("rerequest"), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(first=contents_st, actions=st.lists(sotw_action, max_size=30), wildcard=st.booleans())
def test_sotw_never_resends_a_rejected_version_and_keeps_one_response_outstanding(
    first: dict[str, int], actions: list[tuple[str, Any]], wildcard: bool
) -> None:
    s = SotwType(T)
    names = [] if wildcard else ["a", "b"]
    res = resources(first)
    sent: list[tuple[str, str]] = []  # (version, nonce)
    rejected: set[str] = set()
    outstanding = False
    nonces = iter(range(1, 10_000))
    s.on_request("", "", names, None)

    def push() -> None:
        nonlocal outstanding
        plan = s.plan(res)
        if plan is None:
            # liveness: silence only if nothing is owed
            owed = s.pending and res.version not in rejected and (wildcard or names)
            if owed and s.sent_version is not None:
                assert res.version == s.sent_version or res.version in s.rejected
            return
        assert not outstanding, "a second response before the first was answered"
        assert plan.version not in rejected, "a rejected version was sent again"
        if wildcard:
            assert plan.names == tuple(sorted(res.items))
        nonce = str(next(nonces))
        s.sent(plan, nonce)
        sent.append((plan.version, nonce))
        outstanding = True

    push()
    for kind, arg in actions:
        if kind == "snapshot":
            res = resources(arg)
        elif kind in ("ack", "nack") and sent and outstanding:
            version, nonce = sent[-1]
            acked_before = s.acked_version
            good = acked_before or ""
            if kind == "ack":
                assert s.on_request(version, nonce, names, None) is Verdict.ACK
                assert s.acked_version == version
            else:
                assert s.on_request(good, nonce, names, "bad") is Verdict.NACK
                rejected.add(version)
                assert s.acked_version == acked_before
            outstanding = False
        elif kind == "stale" and len(sent) >= 2:
            before = copy.deepcopy(s.__dict__)
            version, nonce = sent[-2]
            assert s.on_request(version, nonce, names, None) is Verdict.STALE
            after = dict(s.__dict__)
            before.pop("stale")
            after.pop("stale")
            assert after == before, "a stale request changed the state"
        elif kind == "rerequest" and sent and not outstanding:
            version, nonce = sent[-1]
            s.on_request(s.acked_version or "", nonce, names, None)
        push()


delta_action = st.one_of(
    st.tuples(st.just("snapshot"), contents_st),
    st.tuples(st.just("ack"), st.booleans()),
    st.tuples(st.just("nack"), st.booleans()),
    st.tuples(st.just("subscribe"), st.sampled_from([*NAMES, "zz"])),
    st.tuples(st.just("unsubscribe"), st.sampled_from(NAMES)),
    st.tuples(st.just("stale_subscribe"), st.sampled_from(NAMES)),
)


@settings(max_examples=300, deadline=None)
@given(first=contents_st, actions=st.lists(delta_action, max_size=30), wildcard=st.booleans())
def test_delta_converges_honours_subscriptions_and_never_resends_a_rejected_resource_version(
    first: dict[str, int], actions: list[tuple[str, Any]], wildcard: bool
) -> None:
    d = DeltaType(T)
    res = resources(first)
    held: dict[str, str] = {}  # what the simulated client holds
    rejected: set[tuple[str, str]] = set()
    unanswered: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
    subscribed: set[str] = set()
    kept_despite_removal: set[str] = set()  # a NACKed removal is not retried
    nonces = iter(range(1, 10_000))
    if not wildcard:
        subscribed.add("b")
    d.on_request([] if wildcard else ["b"], [], {}, "", None)

    def push() -> None:
        plan = d.plan(res)
        if plan is None:
            return
        for n, v in zip(plan.names, plan.versions, strict=True):
            assert (n, v) not in rejected, "a rejected resource version was sent again"
            assert wildcard or n in subscribed, "sent a resource nobody subscribed to"
        nonce = str(next(nonces))
        d.sent(plan, nonce)
        unanswered.append((nonce, dict(zip(plan.names, plan.versions, strict=True)), plan.removed))
        assert d.plan(res) is None or d.owe_initial, "the same state was planned twice"

    push()
    for kind, arg in actions:
        if kind == "snapshot":
            res = resources(arg)
        elif kind in ("ack", "nack") and unanswered:
            nonce, versions, removed = unanswered.pop(0)
            if kind == "ack":
                assert d.on_request([], [], {}, nonce, None) is Verdict.ACK
                held.update(versions)
                rejected.difference_update(versions.items())  # accepted after all
                for n in removed:
                    held.pop(n, None)
            else:
                assert d.on_request([], [], {}, nonce, "bad") is Verdict.NACK
                rejected.update(versions.items())
                kept_despite_removal.update(removed)
        elif kind == "subscribe":
            subscribed.add(arg)
            d.on_request([arg], [], {}, "", None)
        elif kind == "unsubscribe":
            subscribed.discard(arg)
            d.on_request([], [arg], {}, "", None)
        elif kind == "stale_subscribe":
            subscribed.add(arg)
            assert d.on_request([arg], [], {}, "no-such-nonce", None) is Verdict.STALE
            assert arg in d.names, "a subscription with a stale nonce was not honoured"
        push()
    # Convergence: once every response is ACKed, the client holds exactly what it wants and
    # is allowed to have (rejected versions excepted).
    while unanswered:
        nonce, versions, removed = unanswered.pop(0)
        d.on_request([], [], {}, nonce, None)
        held.update(versions)
        rejected.difference_update(versions.items())
        for n in removed:
            held.pop(n, None)
        push()
    wanted = {
        n: r.version
        for n, r in res.items.items()
        if (wildcard or n in subscribed) and (n, r.version) not in rejected
    }
    for n, v in wanted.items():
        assert held.get(n) == v or (n, v) in rejected
    for n in held:
        assert n in res.items or n not in subscribed or n in kept_despite_removal


# --- sync(): does the client hold the current version? -----------------------------------------


def _sotw_sent(s: SotwType, res: TypeResources, nonce: str) -> str:
    plan = s.plan(res)
    assert plan is not None
    s.sent(plan, nonce)
    return plan.version


def test_sotw_sync_follows_acks_and_nacks_and_an_ack_clears_the_nack() -> None:
    good, bad, fixed = resources({"a": 0}), resources({"a": 1}), resources({"a": 2})
    s = SotwType(T)
    s.on_request("", "", [], None)
    assert s.sync(good) == (Sync.PENDING, None)  # nothing sent yet
    _sotw_sent(s, good, "1")
    assert s.sync(good) == (Sync.PENDING, None)  # sent, not yet ACKed
    assert s.on_request(good.version, "1", [], None) is Verdict.ACK
    assert s.sync(good) == (Sync.SYNCED, None)

    _sotw_sent(s, bad, "2")
    assert s.on_request(good.version, "2", [], "bad cluster") is Verdict.NACK
    state, nack = s.sync(bad)
    assert state is Sync.REJECTED
    assert nack is not None
    assert (nack.version, nack.detail) == (bad.version, "bad cluster")
    assert s.nack is not None
    # Envoy still holds the previous version: judged against it, it is in sync.
    assert s.sync(good) == (Sync.SYNCED, None)

    _sotw_sent(s, fixed, "3")
    assert s.sync(fixed) == (Sync.PENDING, None)
    assert s.on_request(fixed.version, "3", [], None) is Verdict.ACK
    assert s.sync(fixed) == (Sync.SYNCED, None)
    assert s.nack is None  # the ACK ended the current rejection

    # The rejected content again (same content, same version): rejected, not pending or synced,
    # and not sent again.
    state, nack = s.sync(bad)
    assert state is Sync.REJECTED
    assert nack is not None
    assert nack.detail == "bad cluster"
    assert s.plan(bad) is None
    assert s.nack is None  # what it rejects *now* is still nothing


def test_sotw_sync_of_a_reconnecting_client_holding_the_current_version() -> None:
    res = resources({"a": 0, "b": 1})
    s = SotwType(T)
    assert s.on_request(res.version, "", [], None) is Verdict.INITIAL
    assert s.sync(res) == (Sync.SYNCED, None)
    assert s.plan(res) is None  # and nothing to send
    other = SotwType(T)
    other.on_request("an-older-version", "", [], None)
    assert other.sync(res) == (Sync.PENDING, None)


def test_sotw_sync_of_a_client_that_wants_nothing_of_the_type() -> None:
    s = SotwType(T)
    s.on_request("", "", ["a"], None)
    s.on_request("", "", [], None)  # unsubscribes from everything
    assert s.sync(resources({"a": 0})) == (Sync.SYNCED, None)


def test_delta_sync_follows_acks_and_nacks_and_an_ack_clears_the_nack() -> None:
    good, bad, fixed = resources({"a": 0, "b": 0}), resources({"a": 1, "b": 0}), resources({"a": 2, "b": 0})
    d = DeltaType(T)
    d.on_request([], [], {}, "", None)  # wildcard
    assert d.sync(good) == (Sync.PENDING, None)

    def send(res: TypeResources, nonce: str) -> None:
        plan = d.plan(res)
        assert plan is not None
        d.sent(plan, nonce)

    send(good, "1")
    assert d.sync(good) == (Sync.PENDING, None)  # in flight
    assert d.on_request([], [], {}, "1", None) is Verdict.ACK
    assert d.sync(good) == (Sync.SYNCED, None)

    send(bad, "2")
    assert d.on_request([], [], {}, "2", "bad a") is Verdict.NACK
    state, nack = d.sync(bad)
    assert state is Sync.REJECTED
    assert nack is not None
    assert nack.detail == "bad a"
    assert d.nack is not None

    send(fixed, "3")
    assert d.on_request([], [], {}, "3", None) is Verdict.ACK
    assert d.sync(fixed) == (Sync.SYNCED, None)
    assert d.nack is None

    # Re-applying the rejected content reads REJECTED and the rejected resource is not sent again.
    state, nack = d.sync(bad)
    assert state is Sync.REJECTED
    assert nack is not None
    assert nack.detail == "bad a"
    assert d.plan(bad) is None


def test_delta_sync_of_a_reconnecting_client_holding_the_current_versions() -> None:
    res = resources({"a": 0, "b": 1})
    d = DeltaType(T)
    held = {n: r.version for n, r in res.items.items()}
    assert d.on_request(["*"], [], held, "", None) is Verdict.INITIAL
    assert d.sync(res) == (Sync.SYNCED, None)
    # Holding a resource the snapshot no longer has is not in sync (its removal is owed).
    stale = DeltaType(T)
    stale.on_request(["*"], [], {**held, "gone": "x"}, "", None)
    assert stale.sync(res) == (Sync.PENDING, None)
