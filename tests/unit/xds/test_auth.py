"""xDS bearer tokens as pure functions: a token opens its own group only, and every way of not
holding it has a reason."""

from __future__ import annotations

import pytest

from tsgw.xds import bootstrap, group_token
from tsgw.xds._auth import refusal

KEY = b"0123456789abcdef0123456789abcdef"


def test_a_token_opens_its_group_and_no_other() -> None:
    token = group_token(KEY, "web-tssvc.apps")
    assert refusal(KEY, {"authorization": f"Bearer {token}"}, "web-tssvc.apps") is None
    assert refusal(KEY, {"authorization": f"bearer {token}"}, "web-tssvc.apps") is None
    assert refusal(KEY, {"authorization": f"Bearer {token}"}, "db-tsep.apps") == "invalid"
    assert refusal(b"another key", {"authorization": f"Bearer {token}"}, "web-tssvc.apps") == "invalid"


def test_tokens_are_stable_distinct_and_printable() -> None:
    a, b = group_token(KEY, "a.ns"), group_token(KEY, "b.ns")
    assert a == group_token(KEY, "a.ns")
    assert a != b
    assert a.startswith("v1.")
    assert a.isascii()
    assert " " not in a


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (None, "missing"),
        ({}, "missing"),
        ({"authorization": "Basic eA=="}, "malformed"),
        ({"authorization": "Bearer x"}, "malformed"),
        ({"authorization": b"Bearer v1.x"}, "malformed"),
    ],
)
def test_every_refusal_has_a_reason(metadata: dict[str, object] | None, reason: str) -> None:
    assert refusal(KEY, metadata, "a.ns") == reason


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty key"):
        group_token(b"", "a.ns")


def test_the_bootstrap_carries_the_token_in_the_streams_metadata() -> None:
    b = bootstrap("n", "a.ns", "127.0.0.1:18000", token="v1.abc")
    (svc,) = b["dynamic_resources"]["ads_config"]["grpc_services"]
    assert svc["initial_metadata"] == [{"key": "authorization", "value": "Bearer v1.abc"}]
    plain = bootstrap("n", "a.ns", "127.0.0.1:18000")
    assert "initial_metadata" not in plain["dynamic_resources"]["ads_config"]["grpc_services"][0]
