"""Property tests of the per-stream version/nonce state machines (SotW and delta)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tsgw.xds import ClusterDiscovery, Resource, TypeResources
from tsgw.xds._state import DeltaType, SotwType, Verdict

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
