"""Caller identity: the header table from the facts, the filters Envoy runs, and identity in
access rules (groups; tagged devices have no user)."""

from __future__ import annotations

import pytest
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.http.composite.v3 import composite_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2

from tsgw import api
from tsgw.translate import Device, TailnetFacts, User, resolve_access
from tsgw.translate._caller import (
    NODE_NAME,
    NODE_TAGS,
    USER_LOGIN,
    USER_NAME,
    caller_filters,
    caller_identity,
)

FACTS = TailnetFacts(
    "tail.test",
    (
        Device("alice-laptop.tail.test", ("100.64.0.1", "fd7a:115c:a1e0:0:0::1"), user="alice@example.com"),
        Device("bob-phone.tail.test.", ("100.64.0.2",), user="bob@example.com"),
        Device("ci.tail.test", ("100.64.0.3",), tags=("tag:ci", "tag:k8s"), user="alice@example.com"),
        Device("nobody.tail.test", ("not-an-ip",)),
    ),
    users={
        "alice@example.com": User("Alice Liddell", ("group:eng",)),
        "bob@example.com": User("Bøb Ñandú", ("group:sales",)),
    },
)


def _table(facts: TailnetFacts) -> dict[str, dict[str, str]]:
    return {addr: dict(headers) for addr, headers in caller_identity(facts).callers}


def test_an_owned_device_is_named_by_its_user_a_tagged_one_by_its_tags_only() -> None:
    t = _table(FACTS)
    assert t["100.64.0.1"] == {
        USER_LOGIN: "alice@example.com",
        USER_NAME: "Alice Liddell",
        NODE_NAME: "alice-laptop.tail.test",
    }
    # Envoy's text form of the IPv6 address (RFC 5952), which is what its source_ip input gives.
    assert t["fd7a:115c:a1e0::1"] == t["100.64.0.1"]
    # The creator of a tagged device is never named.
    assert t["100.64.0.3"] == {NODE_TAGS: "tag:ci,tag:k8s", NODE_NAME: "ci.tail.test"}
    assert "not-an-ip" not in t


def test_a_display_name_that_is_not_ascii_is_q_encoded_and_an_unknown_user_is_named_by_login() -> None:
    t = _table(FACTS)
    assert t["100.64.0.2"][USER_NAME] == "=?utf-8?q?B=C3=B8b_=C3=91and=C3=BA?="
    assert t["100.64.0.2"][NODE_NAME] == "bob-phone.tail.test"
    bare = TailnetFacts(devices=(Device("x.t", ("100.64.9.9",), user="carol@example.com"),))
    assert _table(bare)["100.64.9.9"][USER_NAME] == "carol@example.com"
    sly = TailnetFacts(
        devices=(Device("y.t", ("100.64.9.8",), user="eve@example.com"),),
        users={"eve@example.com": User("=?utf-8?q?Admin?=")},
    )
    assert _table(sly)["100.64.9.8"][USER_NAME] == "=?utf-8?q?=3D=3Futf=2D8=3Fq=3FAdmin=3F=3D?="


def test_the_same_facts_give_the_same_table_object() -> None:
    assert caller_identity(FACTS) is caller_identity(FACTS)
    other = TailnetFacts("tail.test", FACTS.devices, users=FACTS.users)
    assert caller_identity(other) == caller_identity(FACTS)


def test_filters_strip_every_tailscale_header_then_set_the_callers_by_source_address() -> None:
    strip, identify = caller_filters(caller_identity(FACTS))
    hm = header_mutation_pb2.HeaderMutation()
    assert strip.typed_config.Unpack(hm)
    prefixes = [
        (m.remove_on_match.key_matcher.prefix, m.remove_on_match.key_matcher.ignore_case)
        for m in hm.mutations.request_mutations
    ]
    assert prefixes == [("tailscale-", True), ("tailscale_", True)]
    ewm = extension_matcher_pb2.ExtensionWithMatcher()
    assert identify.typed_config.Unpack(ewm)
    tree = ewm.xds_matcher.matcher_tree
    assert tree.input.name == "envoy.matching.inputs.source_ip"
    assert sorted(tree.exact_match_map.map) == ["100.64.0.1", "100.64.0.2", "100.64.0.3", "fd7a:115c:a1e0::1"]
    action = composite_pb2.ExecuteFilterAction()
    assert tree.exact_match_map.map["100.64.0.3"].action.typed_config.Unpack(action)
    mutation = header_mutation_pb2.HeaderMutation()
    assert action.typed_config.typed_config.Unpack(mutation)
    assert {m.append.header.key: m.append.header.value for m in mutation.mutations.request_mutations} == {
        NODE_NAME: "ci.tail.test",
        NODE_TAGS: "tag:ci,tag:k8s",
    }


def test_no_known_device_still_strips() -> None:
    filters = caller_filters(caller_identity(TailnetFacts()))
    assert [f.name for f in filters] == ["tsgw.caller.strip"]


def _rule(**kw: object) -> api.Access:
    return api.parse(api.Access, {"defaultAction": "Deny", "rules": [{"action": "Allow", **kw}]})


def test_groups_match_their_members_untagged_devices_and_users_never_match_a_tagged_device() -> None:
    eng = resolve_access(_rule(groups=["group:eng"]), FACTS)
    assert eng.rules[0].cidrs == ("100.64.0.1/32", "fd7a:115c:a1e0::1/128")
    alice = resolve_access(_rule(users=["alice@example.com"]), FACTS)
    assert alice.rules[0].cidrs == eng.rules[0].cidrs
    tagged = resolve_access(_rule(tags=["tag:ci"]), FACTS)
    assert tagged.rules[0].cidrs == ("100.64.0.3/32",)
    assert resolve_access(_rule(groups=["group:nobody"]), FACTS).rules[0].cidrs == ()


def test_facts_keep_users_through_their_json() -> None:
    assert TailnetFacts.from_json(FACTS.to_json()) == FACTS
    assert "users" not in TailnetFacts().to_json()


def test_proxy_protocol_is_for_tcp_ports_only() -> None:
    assert api.parse(api.IngressPort, {"port": 5432, "proxyProtocol": True}).proxy_protocol
    with pytest.raises(api.ValidationError, match="proxyProtocol is for TCP ports"):
        api.parse(api.IngressPort, {"port": 80, "protocol": "HTTP", "proxyProtocol": True})
