"""The facts' users: display names from the API, groups from the policy file (PolicyGroups)."""

from __future__ import annotations

import pytest

from tsgw.controllers._tailnets import REFUSED_READ_RETRY, PolicyGroups, _facts, _identities
from tsgw.tailscale import Device, ForbiddenError, User
from tsgw.translate import User as FactsUser


def test_policy_groups_name_users_as_tailscale_and_headscale_write_them() -> None:
    groups = PolicyGroups.from_policy(
        {
            "groups": {
                "group:eng": ["alice@example.com", "bob@", "autogroup:admin"],
                "group:ops": ["carol@example.org"],
                "not-a-group": ["alice@example.com"],
            }
        }
    )
    assert groups.of("alice@example.com") == ("group:eng",)
    assert groups.of("bob") == ("group:eng",)  # Headscale: the user's name, then "@"
    assert groups.of("carol", "carol@example.org") == ("group:ops",)  # Headscale: the email
    assert groups.of("dave@example.com") == ()
    assert PolicyGroups.from_policy({"groups": "nonsense"}) == PolicyGroups()


def test_facts_carry_each_owners_display_name_and_groups_but_no_user_for_tagged_devices() -> None:
    devices = [
        Device("1", name="a.tail.test", addresses=("100.64.0.1",), user="alice@example.com"),
        Device("2", name="b.tail.test", addresses=("100.64.0.2",), user="bob@example.com"),
        Device(
            "3", name="ci.tail.test", addresses=("100.64.0.3",), tags=("tag:ci",), user="ci-maker@example.com"
        ),
    ]
    users = [User("alice@example.com", "Alice Liddell")]
    groups = PolicyGroups({"group:eng": ("alice@example.com", "bob@example.com", "ci-maker@example.com")})
    facts = _facts(devices, [], "", users, groups)
    assert dict(facts.users) == {
        "alice@example.com": FactsUser("Alice Liddell", ("group:eng",)),
        "bob@example.com": FactsUser("", ("group:eng",)),
    }
    assert _facts(devices, []).users == {}


class _Refusing:
    """A client whose users and policy reads are refused (a credential without the scopes)."""

    def __init__(self) -> None:
        self.calls = 0

    async def list_users(self) -> list[User]:
        self.calls += 1
        raise ForbiddenError(403, "users:read missing")

    async def get_policy(self) -> dict[str, object]:
        self.calls += 1
        raise ForbiddenError(403, "policy_file:read missing")


@pytest.mark.anyio
async def test_a_refused_read_is_said_and_not_repeated_before_its_retry_time() -> None:
    ts = _Refusing()
    refused: dict[str, tuple[float, str]] = {}
    users, groups, notes = await _identities(ts, refused, now=1000.0)  # type: ignore[arg-type]
    assert (users, groups, ts.calls) == ([], PolicyGroups(), 2)
    assert [n.split(" (")[0] for n in notes] == [
        "display names unknown",
        "policy groups unknown, groups rules match nobody",
    ]
    _, _, again = await _identities(ts, refused, now=1000.0 + REFUSED_READ_RETRY - 1)  # type: ignore[arg-type]
    assert (again, ts.calls) == (notes, 2)
    await _identities(ts, refused, now=1000.0 + REFUSED_READ_RETRY)  # type: ignore[arg-type]
    assert ts.calls == 4
