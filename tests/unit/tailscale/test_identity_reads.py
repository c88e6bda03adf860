"""Users and the policy file, as the caller-identity facts read them: Tailscale's
``/tailnet/-/users`` and ``/tailnet/-/acl`` (against the fake hosted API), Headscale's
``/api/v1/user`` and ``/api/v1/policy`` (HuJSON text), and the HuJSON reader itself."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake_tailscale import FakeTailscale
from tests.unit.tailscale.conftest import Clock, Sleeps, make_client
from tsgw.tailscale import (
    APIKey,
    ClientOptions,
    ForbiddenError,
    HeadscaleClient,
    OAuthClientCredentials,
    ServerError,
    User,
)
from tsgw.tailscale._hujson import loads

pytestmark = pytest.mark.anyio


async def test_tailscale_lists_users_and_reads_the_policy_file_with_their_scopes(
    fake: FakeTailscale, sleeps: Sleeps, clock: Clock
) -> None:
    fake.users["alice@example.com"] = {"id": "u1", "displayName": "Alice Liddell"}
    fake.devices["n1"] = {"nodeId": "n1", "id": "1", "user": "bob@example.com", "addresses": ["100.64.0.2"]}
    fake.set_policy({"groups": {"group:eng": ["alice@example.com"]}, "tagOwners": {"tag:k8s": []}})
    key = fake.add_api_key()
    async with make_client(fake, sleeps, clock, credentials=APIKey(key)) as ts:
        users = await ts.list_users()
        assert users == [
            User("alice@example.com", "Alice Liddell", id="u1"),
            User("bob@example.com", "bob@example.com", id="u2"),
        ]
        assert (await ts.get_policy())["groups"] == {"group:eng": ["alice@example.com"]}
    cid, secret = fake.add_oauth_client(scopes=("devices:core",))
    async with make_client(fake, sleeps, clock, credentials=OAuthClientCredentials(cid, secret)) as ts:
        with pytest.raises(ForbiddenError, match="users:read"):
            await ts.list_users()
        with pytest.raises(ForbiddenError, match="policy_file:read"):
            await ts.get_policy()


async def test_headscale_users_and_its_stored_hujson_policy() -> None:
    policy = '{\n  // who is who\n  "groups": {"group:eng": ["alice@", "carol@example.com",],},\n}\n'

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/user":
            users = [
                {"id": "1", "name": "alice", "displayName": "Alice Liddell", "email": ""},
                {"id": "2", "name": "carol", "email": "carol@example.com"},
            ]
            return httpx.Response(200, json={"users": users})
        if request.url.path == "/api/v1/policy":
            return httpx.Response(200, json={"policy": policy, "updatedAt": "2026-01-01T00:00:00Z"})
        return httpx.Response(404, json={"code": 5, "message": "not found"})

    hs = HeadscaleClient(
        APIKey("hskey-api-x"), ClientOptions(base_url="http://hs"), transport=httpx.MockTransport(handler)
    )
    async with hs:
        assert await hs.list_users() == [
            User("alice", "Alice Liddell", id="1"),
            User("carol", "", email="carol@example.com", id="2"),
        ]
        assert await hs.get_policy() == {"groups": {"group:eng": ["alice@", "carol@example.com"]}}


def test_hujson_drops_comments_and_trailing_commas_but_not_inside_strings() -> None:
    text = '{ /* a */ "a": ["x // not a comment", "y,]",], // end\n "b": {"c": 1,},}'
    assert loads(text) == {"a": ["x // not a comment", "y,]"], "b": {"c": 1}}
    assert loads(json.dumps({"k": "\\"})) == {"k": "\\"}
    with pytest.raises(ValueError, match="unterminated"):
        loads('{"a": 1 /* open')


async def test_headscale_in_file_mode_answers_its_policy_read_with_500_once_not_retried() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500, json={"code": 2, "message": 'reading policy from path "": no such file'})

    hs = HeadscaleClient(
        APIKey("hskey-api-x"), ClientOptions(base_url="http://hs"), transport=httpx.MockTransport(handler)
    )
    async with hs:
        with pytest.raises(ServerError, match="reading policy"):
            await hs.get_policy()
    assert len(sent) == 1
