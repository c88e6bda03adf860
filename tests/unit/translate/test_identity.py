"""Proxy group identity: a node cluster (`<group>.<namespace>`) splits back into its parts, never
collides across namespaces or objects, is DNS-safe and at most 109 characters; and translation
turns a name that cannot form a group, two objects claiming one group, or an exception in one
object's translation into that object's Accepted=False condition while the rest is served."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tsgw.model import ObjectStatus
from tsgw.translate import (
    Inputs,
    _context,
    _translate,
    group_name,
    node_cluster,
    split_node_cluster,
    translate,
)
from tsgw.translate._identity import KIND_SUFFIX, name_problem

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "standalone"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
kinds = st.sampled_from(sorted(KIND_SUFFIX))


@settings(max_examples=300, deadline=None)
@given(namespace=labels, kind=kinds, name=labels)
def test_a_node_cluster_is_dns_safe_bounded_and_splits_back(namespace: str, kind: str, name: str) -> None:
    group = group_name(kind, name)
    cluster = node_cluster(namespace, group)
    assert DNS_LABEL.fullmatch(group), group
    assert len(group) <= 45
    assert len(cluster) <= 109
    assert all(DNS_LABEL.fullmatch(part) for part in cluster.split(".")), cluster
    assert split_node_cluster(cluster) == (namespace, group)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(labels, kinds, labels), b=st.tuples(labels, kinds, labels))
def test_different_objects_never_share_a_node_cluster(
    a: tuple[str, str, str], b: tuple[str, str, str]
) -> None:
    def cluster(ns: str, kind: str, name: str) -> str:
        return node_cluster(ns, group_name(kind, name))

    if a != b:
        assert cluster(*a) != cluster(*b)


def test_the_same_name_in_two_namespaces_gets_two_node_clusters() -> None:
    a = node_cluster("team-a", group_name("TailscaleServices", "web"))
    b = node_cluster("team-b", group_name("TailscaleServices", "web"))
    assert (a, b) == ("web-tssvc.team-a", "web-tssvc.team-b")


def test_a_long_name_is_shortened_with_a_hash_never_like_an_unshortened_one() -> None:
    long = "a" * 60
    g = group_name("TailscaleServices", long)
    assert len(g) == 45
    assert re.fullmatch(r"a{36}-[0-9a-f]{8}", g)
    assert group_name("TailscaleServices", long + "b") != g
    assert not g.endswith(tuple(KIND_SUFFIX.values()))


@pytest.mark.parametrize("foreign", ["envoy-by-hand", "Web.Demo", ".demo", "web.", "a.b_c"])
def test_a_cluster_tsgw_did_not_make_splits_to_no_namespace(foreign: str) -> None:
    assert split_node_cluster(foreign) == ("", foreign)


def test_a_dotted_group_keeps_its_dots_in_the_group_part() -> None:
    # The namespace is the last label: a group part with dots (never made by group_name) stays whole.
    assert split_node_cluster("a.b.demo") == ("demo", "a.b")


@pytest.mark.parametrize("name", ["web", "web-2", "0x", "a" * 63, "a" * 100])
def test_a_dns_label_names_a_group(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("web.v2", "not a DNS label"),
        ("Web", "not a DNS label"),
        ("-web", "not a DNS label"),
        ("web-", "not a DNS label"),
        ("web_2", "not a DNS label"),
        ("a" * 254, "254 characters long"),
    ],
)
def test_a_name_that_cannot_name_a_group_says_why(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert why in problem


# --- translation ------------------------------------------------------------------------------


def _example_inputs(*extra_web_names: str) -> Inputs:
    """examples/standalone's ingress (web + its backends + tailnet), plus copies of web."""
    objects: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    for f in ("tailnet.yaml", "web.yaml", "backends.yaml"):
        for doc in yaml.safe_load_all((EXAMPLE / f).read_text()):
            {"Service": services, "EndpointSlice": slices}.get(doc["kind"], objects).append(doc)
    web = next(o for o in objects if o["kind"] == "TailscaleServices")
    for name in extra_web_names:
        copied = copy.deepcopy(web)
        copied["metadata"]["name"] = name
        objects.append(copied)
    return Inputs(objects=objects, services=services, endpoint_slices=slices)


def _accepted(statuses: tuple[ObjectStatus, ...], name: str) -> tuple[bool, str, str]:
    (st_,) = [s for s in statuses if s.ref.kind == "TailscaleServices" and s.ref.name == name]
    (cond,) = [c for c in st_.conditions if c.type == "Accepted"]
    return cond.status, cond.reason, cond.message


def test_a_dotted_name_is_invalid_name_and_the_others_are_served() -> None:
    result = translate(_example_inputs("web.v2"))
    ok, reason, message = _accepted(result.model.statuses, "web.v2")
    assert (ok, reason) == (False, "InvalidName")
    assert "not a DNS label" in message
    assert _accepted(result.model.statuses, "web")[:2] == (True, "Accepted")
    assert sorted(result.xds) == [("demo", "web-tssvc")]


def test_two_objects_claiming_one_group_the_later_gets_group_name_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # group_name never maps two objects to one group (kind suffixes differ, shortened names end in
    # a hash), so force a collision to see what translation does if it ever happens.
    real = _context.group_name

    def colliding(kind: str, name: str) -> str:
        return real(kind, "web" if name == "web2" else name)

    monkeypatch.setattr(_context, "group_name", colliding)
    result = translate(_example_inputs("web2"))
    assert _accepted(result.model.statuses, "web")[:2] == (True, "Accepted")
    ok, reason, message = _accepted(result.model.statuses, "web2")
    assert (ok, reason) == (False, "GroupNameConflict")
    assert "'web-tssvc.demo'" in message
    assert "TailscaleServices 'web'" in message
    assert sorted(result.xds) == [("demo", "web-tssvc")]
    (group,) = result.model.groups
    assert group.owner.name == "web"


def test_an_exception_translating_one_object_is_its_condition_and_the_rest_is_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _translate.translate_object

    def failing(ctx: Any, obj: Any) -> Any:
        if obj.metadata.name == "boom":
            raise RuntimeError("a bug in translation")
        return real(ctx, obj)

    monkeypatch.setattr(_translate, "translate_object", failing)
    result = translate(_example_inputs("boom"))
    ok, reason, message = _accepted(result.model.statuses, "boom")
    assert (ok, reason) == (False, "TranslationFailed")
    assert "RuntimeError: a bug in translation" in message
    assert "the rest is served" in message
    assert sorted(result.xds) == [("demo", "web-tssvc")]
    assert _accepted(result.model.statuses, "web")[:2] == (True, "Accepted")
