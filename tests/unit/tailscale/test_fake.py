"""The fake's own documented behaviours that TailscaleClient does not exercise."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_tailscale import FakeTailscale

pytestmark = pytest.mark.anyio


def _raw(fake: FakeTailscale) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://fake")


async def test_basic_auth_works_for_the_grant_and_with_the_token_as_user_name(fake: FakeTailscale) -> None:
    cid, secret = fake.add_oauth_client()
    async with _raw(fake) as http:
        grant = await http.post("/api/v2/oauth/token", auth=(cid, secret), data={})
        assert grant.status_code == 200
        body = grant.json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        devices = await http.get("/api/v2/tailnet/-/devices", auth=(body["access_token"], ""))
    assert devices.status_code == 200
    assert devices.json() == {"devices": []}


async def test_read_scopes_allow_reads_only_and_other_tailnets_are_not_found(fake: FakeTailscale) -> None:
    token = fake.add_api_key(scopes=("auth_keys:read",))
    headers = {"Authorization": f"Bearer {token}"}
    async with _raw(fake) as http:
        assert (await http.get("/api/v2/tailnet/-/keys", headers=headers)).status_code == 200
        denied = await http.post(
            "/api/v2/tailnet/-/keys", headers=headers, json={"capabilities": {"devices": {}}}
        )
        other = await http.get("/api/v2/tailnet/other.example/keys", headers=headers)
    assert denied.status_code == 403
    assert "auth_keys" in denied.json()["message"]
    assert other.status_code == 404


async def test_the_grant_form_is_never_recorded(fake: FakeTailscale) -> None:
    cid, secret = fake.add_oauth_client()
    async with _raw(fake) as http:
        await http.post("/api/v2/oauth/token", data={"client_id": cid, "client_secret": secret})
    [call] = fake.calls
    assert call.body is None
    assert secret not in repr(fake.calls)


async def test_the_policy_file_sets_tag_ownership_and_refuses_a_stale_if_match(fake: FakeTailscale) -> None:
    headers = {"Authorization": f"Bearer {fake.add_api_key()}"}
    reader = {"Authorization": f"Bearer {fake.add_api_key(scopes=('policy_file:read',))}"}
    policy = {
        "tagOwners": {"tag:k8s-operator": [], "tag:edge": ["tag:k8s-operator"]},
        "autoApprovers": {"services": {"svc:web": ["tag:edge"]}},
    }
    async with _raw(fake) as http:
        first = await http.get("/api/v2/tailnet/-/acl", headers=headers)
        assert first.json() == {"tagOwners": {"tag:k8s-operator": [], "tag:k8s": ["tag:k8s-operator"]}}
        etag = first.headers["ETag"]
        denied = await http.post("/api/v2/tailnet/-/acl", headers=reader, json=policy)
        bad = await http.post(
            "/api/v2/tailnet/-/acl", headers=headers, json={"autoApprovers": {"services": {"web": []}}}
        )
        written = await http.post("/api/v2/tailnet/-/acl", headers={**headers, "If-Match": etag}, json=policy)
        stale = await http.post("/api/v2/tailnet/-/acl", headers={**headers, "If-Match": etag}, json={})
        after = await http.get("/api/v2/tailnet/-/acl", headers=reader)
    assert denied.status_code == 403
    assert bad.status_code == 400
    assert written.status_code == 200
    assert written.json() == after.json() == policy
    assert written.headers["ETag"] == after.headers["ETag"] != etag
    assert stale.status_code == 412
    assert fake.tag_owners == policy["tagOwners"]  # keys are now checked against it
