"""Groups and display names from a real Headscale v0.29.2 in database policy mode: the policy
set through ``PUT /api/v1/policy`` (HuJSON, with a comment and trailing commas), read back by
HeadscaleClient and turned into the facts' users by the tailnet controller's own functions, with
a real tailscaled joined as each user; a tagged node has no user in the facts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.tailnet import Tailnet
from tsgw.controllers._tailnets import _facts, _identities
from tsgw.tailscale import APIKey, ClientOptions, HeadscaleClient

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

POLICY = """{
  // who is who: Headscale names a user "<name>@" (or by email)
  "groups": {
    "group:eng": ["alice@",],
    "group:sales": ["bob@"],
  },
  "tagOwners": {"tag:ci": ["alice@"]},
  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
}
"""


@pytest.fixture(scope="module")
def hs_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tailnet]:
    tn = Tailnet(tmp_path_factory.mktemp("tailnet-db"), policy_mode="database")
    try:
        yield tn
    finally:
        tn.close()


async def test_groups_and_users_come_from_headscales_policy_and_users(hs_db: Tailnet) -> None:
    alice, bob = hs_db.create_user("alice"), hs_db.create_user("bob")
    key = hs_db.api_key()
    async with httpx.AsyncClient(base_url=hs_db.api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        r = await http.put("/api/v1/policy", json={"policy": POLICY})
        assert r.status_code == 200, r.text
    hs_db.join("alice-laptop", hs_db.preauth_key(alice))
    hs_db.join("bob-phone", hs_db.preauth_key(bob))
    hs_db.join("alice-ci", hs_db.preauth_key(alice, tags=("tag:ci",)))
    async with HeadscaleClient(APIKey(key), ClientOptions(base_url=hs_db.api_url)) as hs:
        users, groups, notes = await _identities(hs)
        assert notes == []
        assert {u.login for u in users} >= {"alice", "bob"}
        devices = await hs.list_devices()
        facts = _facts(devices, [], "", users, groups)
    assert facts.users["alice"].groups == ("group:eng",)
    assert facts.users["bob"].groups == ("group:sales",)
    by_host = {d.name.split(".")[0]: d for d in facts.devices}
    assert by_host["alice-laptop"].user == "alice"
    assert by_host["alice-ci"].tags == ("tag:ci",)


async def test_a_headscale_in_file_mode_without_a_policy_gives_no_groups_and_says_why(
    tailnet: Tailnet,
) -> None:
    async with HeadscaleClient(APIKey(tailnet.api_key()), ClientOptions(base_url=tailnet.api_url)) as hs:
        _, groups, notes = await _identities(hs)
    assert groups.members == {}
    (note,) = notes
    assert note.startswith("policy groups unknown"), note
    assert "500" in note, note
