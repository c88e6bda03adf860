"""Store indexes, predicates and the object helpers (pure functions, no I/O)."""

from __future__ import annotations

import pytest

from tsgw.kube import (
    AlreadyOwnedError,
    GenerationChanged,
    LabelSelectorPredicate,
    ObjectKey,
    Request,
    ResourceVersionChanged,
    Store,
    add_finalizer,
    all_of,
    enqueue_owner,
    find_condition,
    has_finalizer,
    negate,
    remove_finalizer,
    set_condition,
    set_controller_reference,
)


def obj(name: str, ns: str = "a", rv: str = "1", gen: int = 1, **meta: object) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "test.tsgw.io/v1",
        "kind": "Widget",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv,
            "generation": gen,
            "uid": f"u-{name}",
            **meta,
        },
    }


def test_store_indexes_by_namespace_owner_and_custom_functions_and_keeps_them_in_step() -> None:
    store = Store({"size": lambda o: [str(o.get("spec", {}).get("size"))]})
    parent = obj("p")
    child = obj("c", ownerReferences=[{"uid": "u-p", "name": "p", "kind": "Widget"}])
    store.upsert(parent)
    store.upsert({**child, "spec": {"size": 2}})
    store.upsert(obj("x", ns="b"))
    assert {o["metadata"]["name"] for o in store.list("a")} == {"p", "c"}
    assert [o["metadata"]["name"] for o in store.by_index("owner", "u-p")] == ["c"]
    assert store.index_keys("size", "2") == [ObjectKey("a", "c")]
    store.upsert({**child, "spec": {"size": 3}})  # re-indexed on update
    assert store.index_keys("size", "2") == []
    store.delete(ObjectKey("a", "c"))
    assert store.by_index("owner", "u-p") == []
    store.replace([obj("y", ns="b")])
    assert store.keys() == [ObjectKey("b", "y")]
    assert store.list("a") == []


def test_generation_and_resource_version_predicates_judge_updates() -> None:
    assert not GenerationChanged().update(obj("a", rv="1"), obj("a", rv="2"))
    assert GenerationChanged().update(obj("a", gen=1), obj("a", gen=2))
    assert not ResourceVersionChanged().update(obj("a", rv="5"), obj("a", rv="5"))
    assert ResourceVersionChanged().update(obj("a", rv="5"), obj("a", rv="6"))


def test_label_selector_predicate_supports_match_labels_and_expressions() -> None:
    p = LabelSelectorPredicate(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}],
        }
    )
    assert p.create(obj("a", labels={"app": "web", "tier": "fe"}))
    assert not p.create(obj("a", labels={"app": "web", "tier": "be"}))
    assert not p.create(obj("a"))
    assert negate(p).create(obj("a"))
    assert not all_of(p, GenerationChanged()).update(obj("a"), obj("a", labels={"app": "web", "tier": "fe"}))


def test_owns_maps_a_child_to_its_controller_owner_of_the_for_kind_only() -> None:
    child = obj(
        "c",
        ownerReferences=[
            {"apiVersion": "test.tsgw.io/v1", "kind": "Widget", "name": "w", "uid": "1", "controller": True},
            {"apiVersion": "test.tsgw.io/v1", "kind": "Widget", "name": "other", "uid": "2"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "3", "controller": True},
        ],
    )
    assert list(enqueue_owner("test.tsgw.io/v1", "Widget")(child)) == [Request("a", "w")]
    assert list(enqueue_owner("test.tsgw.io/v1", "Widget", only_controller=False)(child)) == [
        Request("a", "w"),
        Request("a", "other"),
    ]


def test_a_cluster_scoped_owner_is_enqueued_without_the_childs_namespace() -> None:
    child = obj(
        "c",
        ownerReferences=[
            {"apiVersion": "v1", "kind": "Namespace", "name": "a", "uid": "1", "controller": True}
        ],
    )
    assert list(enqueue_owner("v1", "Namespace", namespaced=False)(child)) == [Request("", "a")]


def test_set_controller_reference_refuses_a_second_controller_and_cross_namespace_owners() -> None:
    child = obj("c")
    assert set_controller_reference(obj("p"), child)
    assert not set_controller_reference(obj("p"), child)  # idempotent
    ref = child["metadata"]["ownerReferences"][0]
    assert ref["controller"] is True
    assert ref["blockOwnerDeletion"] is True
    with pytest.raises(AlreadyOwnedError):
        set_controller_reference(obj("q"), child)
    with pytest.raises(ValueError, match="cross-namespace"):
        set_controller_reference(obj("p", ns="other"), obj("c2"))


def test_finalizers_are_added_once_and_never_after_deletion_started() -> None:
    o = obj("a")
    assert add_finalizer(o, "tsgw.io/cleanup")
    assert not add_finalizer(o, "tsgw.io/cleanup")
    assert has_finalizer(o, "tsgw.io/cleanup")
    assert remove_finalizer(o, "tsgw.io/cleanup")
    assert not remove_finalizer(o, "tsgw.io/cleanup")
    deleting = obj("b", deletionTimestamp="2026-01-01T00:00:00Z")
    assert not add_finalizer(deleting, "tsgw.io/cleanup")


def test_condition_transition_time_moves_only_when_the_status_changes() -> None:
    conds: list[dict[str, object]] = []
    assert set_condition(conds, "Ready", "False", "Pending", now="t1", observed_generation=1)
    assert not set_condition(conds, "Ready", "False", "Pending", now="t2", observed_generation=1)
    assert set_condition(conds, "Ready", "False", "StillPending", "msg", now="t3", observed_generation=2)
    cond = find_condition(conds, "Ready")
    assert cond is not None
    assert cond["lastTransitionTime"] == "t1"
    assert cond["observedGeneration"] == 2
    assert set_condition(conds, "Ready", "True", "Done", now="t4", observed_generation=2)
    assert cond["lastTransitionTime"] == "t4"
    assert len(conds) == 1
    with pytest.raises(ValueError, match="True, False or Unknown"):
        set_condition(conds, "Ready", "yes", "x")


def test_cached_objects_cannot_be_mutated_and_a_deep_copy_can() -> None:
    import copy

    import orjson

    from tsgw.kube import deep_copy

    store = Store()
    store.upsert(obj("w", finalizers=["keep"], labels={"a": "1"}))
    cached = store.get(("a", "w"))
    assert cached is not None
    # The helpers' in-place changes (and any other) are refused instead of corrupting the cache.
    with pytest.raises(TypeError):
        add_finalizer(cached, "new")
    with pytest.raises(TypeError):
        cached["metadata"]["labels"]["a"] = "2"
    with pytest.raises(TypeError):
        cached["metadata"]["finalizers"].append("x")
    with pytest.raises(TypeError):
        set_condition(cached.setdefault("status", {}).setdefault("conditions", []), "Ready", "True", "R")
    assert store.get(("a", "w")) == obj("w", finalizers=["keep"], labels={"a": "1"})
    # Reads still behave as dicts and lists: isinstance, equality, JSON, spreading.
    assert isinstance(cached["metadata"]["finalizers"], list)
    assert orjson.loads(orjson.dumps({**cached, "x": 1}))["metadata"]["finalizers"] == ["keep"]
    # A deep copy is an ordinary, mutable object; writing it leaves the cache alone.
    for mine in (deep_copy(cached), copy.deepcopy(cached)):
        assert add_finalizer(mine, "new")
        mine["metadata"]["labels"]["a"] = "2"
        assert has_finalizer(mine, "new")
    assert not has_finalizer(store.get(("a", "w")) or {}, "new")
    store.replace([obj("v")])
    with pytest.raises(TypeError):
        (store.get(("a", "v")) or {})["metadata"]["name"] = "z"
