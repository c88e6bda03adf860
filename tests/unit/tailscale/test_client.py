"""TailscaleClient against the fake hosted API: every call, with the documented JSON."""

from __future__ import annotations

import re

import pytest

from tests.fake_tailscale import FakeTailscale
from tests.unit.tailscale.conftest import Clock, Sleeps, make_client
from tsgw.tailscale import (
    APIKey,
    AuthKeyRequest,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    OAuthClientCredentials,
    TailscaleClient,
    TailscaleService,
)

pytestmark = pytest.mark.anyio


async def test_create_auth_key_sends_the_documented_capabilities_and_returns_the_secret(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    key = await ts.create_auth_key(
        AuthKeyRequest(tags=("tag:k8s",), expiry_seconds=3600, description="tsgw proxy-0")
    )
    assert key.key.startswith(f"tskey-auth-{key.id}-")
    assert key.tags == ("tag:k8s",)
    assert (key.reusable, key.ephemeral, key.preauthorized) == (False, False, True)
    # The description carries a mark that finds the key again if this answer were lost.
    assert re.fullmatch(r"tsgw proxy-0 [0-9]{6}", key.description)
    assert key.created is not None
    assert key.expires is not None
    assert (key.expires - key.created).total_seconds() == 3600
    [call] = [c for c in fake.calls if c.path == "/api/v2/tailnet/-/keys"]
    assert call.body == {
        "capabilities": {
            "devices": {
                "create": {"reusable": False, "ephemeral": False, "preauthorized": True, "tags": ["tag:k8s"]}
            }
        },
        "expirySeconds": 3600,
        "description": key.description,
    }


async def test_listed_and_fetched_keys_never_carry_the_secret(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    created = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
    [listed] = await ts.list_auth_keys()
    fetched = await ts.get_auth_key(created.id)
    assert listed.id == fetched.id == created.id
    assert listed.key == fetched.key == ""
    assert fetched.tags == ("tag:k8s",)


async def test_deleting_a_key_revokes_it_and_a_second_delete_is_not_found(ts: TailscaleClient) -> None:
    key = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
    assert await ts.delete_auth_key(key.id) is True
    with pytest.raises(NotFoundError) as e:
        await ts.delete_auth_key(key.id)
    assert e.value.status == 404
    assert await ts.delete_auth_key(key.id, missing_ok=True) is False
    assert await ts.list_auth_keys() == []


async def test_a_tag_the_oauth_client_does_not_own_is_refused_without_retry(
    fake: FakeTailscale, ts: TailscaleClient, sleeps: Sleeps
) -> None:
    fake.tag_owners["tag:other"] = ["autogroup:admin"]
    with pytest.raises(InvalidRequestError) as e:
        await ts.create_auth_key(AuthKeyRequest(tags=("tag:other",)))
    assert e.value.status == 400
    assert "requested tags [tag:other] are invalid or not permitted" in e.value.message
    assert fake.count("POST", "/api/v2/tailnet/-/keys") == 1
    assert sleeps.waits == []


async def test_an_untagged_key_cannot_be_minted_with_an_oauth_client(ts: TailscaleClient) -> None:
    with pytest.raises(InvalidRequestError, match="tags are required"):
        await ts.create_auth_key(AuthKeyRequest())


async def test_a_user_api_key_may_mint_an_untagged_key(
    fake: FakeTailscale, sleeps: Sleeps, clock: Clock
) -> None:
    async with make_client(fake, sleeps, clock, APIKey(fake.add_api_key())) as client:
        key = await client.create_auth_key(AuthKeyRequest(reusable=True))
    assert key.reusable
    assert key.tags == ()
    assert fake.calls[-1].principal == "api-key"


async def test_a_token_without_the_auth_keys_scope_is_forbidden(
    fake: FakeTailscale, sleeps: Sleeps, clock: Clock
) -> None:
    cid, secret = fake.add_oauth_client(scopes=("devices:core",))
    async with make_client(fake, sleeps, clock, OAuthClientCredentials(cid, secret)) as client:
        assert await client.list_devices() == []
        with pytest.raises(ForbiddenError) as e:
            await client.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
    assert e.value.status == 403


async def test_devices_are_listed_fetched_retagged_and_deleted(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    key = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
    joined = fake.register_device(key.key, "proxy-0")
    [dev] = await ts.list_devices()
    assert dev.id == joined["nodeId"]
    assert dev.legacy_id == joined["id"]
    assert dev.hostname == "proxy-0"
    assert dev.name == "proxy-0.example.ts.net"
    assert dev.tags == ("tag:k8s",)
    assert dev.addresses == tuple(joined["addresses"])
    assert dev.online is True
    assert dev.authorized is True
    assert await ts.get_device(dev.id) == dev
    assert await ts.find_devices(hostname="proxy-0", tags=("tag:k8s",)) == [dev]
    assert await ts.find_devices(hostname="proxy-1") == []

    fake.tag_owners["tag:web"] = ["tag:k8s-operator"]
    await ts.set_device_tags(dev.id, ["tag:k8s", "tag:web"])
    assert (await ts.get_device(dev.id)).tags == ("tag:k8s", "tag:web")

    assert await ts.delete_device(dev.id) is True
    with pytest.raises(NotFoundError):
        await ts.get_device(dev.id)
    assert await ts.delete_device(dev.id, missing_ok=True) is False
    assert fake.count("DELETE", f"/api/v2/device/{dev.id}") == 2


async def test_a_single_use_key_joins_exactly_one_device(fake: FakeTailscale, ts: TailscaleClient) -> None:
    key = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
    fake.register_device(key.key, "proxy-0")
    with pytest.raises(ValueError, match="already used"):
        fake.register_device(key.key, "proxy-1")
    assert (await ts.get_auth_key(key.id)).invalid is True


async def test_ensure_service_creates_it_and_keeps_the_assigned_addresses_on_update(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    created = await ts.ensure_service(
        "svc:web", ports=["tcp:80"], tags=["tag:k8s"], comment="managed by tsgw", annotations={"a": "1"}
    )
    assert len(created.addrs) == 2
    create = next(c for c in fake.calls if c.method == "PUT")
    assert create.body == {
        "name": "svc:web",
        "comment": "managed by tsgw",
        "annotations": {"a": "1"},
        "ports": ["tcp:80"],
        "tags": ["tag:k8s"],
    }
    assert created.ports == ("tcp:80",)
    assert created.annotations == {"a": "1"}

    updated = await ts.ensure_service("svc:web", ports=["tcp:80", "tcp:443"], tags=["tag:k8s"])
    assert updated.addrs == created.addrs
    assert updated.ports == ("tcp:80", "tcp:443")
    [put] = [c for c in fake.calls if c.method == "PUT"][1:]
    assert put.body["addrs"] == list(created.addrs)

    puts = fake.count("PUT", "/api/v2/tailnet/-/vip-services/svc:web")
    again = await ts.ensure_service("svc:web", ports=["tcp:80", "tcp:443"], tags=["tag:k8s"])
    assert again == updated
    assert fake.count("PUT", "/api/v2/tailnet/-/vip-services/svc:web") == puts  # no write when equal


async def test_an_update_without_the_current_addresses_is_refused(ts: TailscaleClient) -> None:
    await ts.ensure_service("svc:web", ports=["tcp:80"])
    with pytest.raises(InvalidRequestError, match="addrs"):
        await ts.put_service(TailscaleService(name="svc:web", ports=("tcp:80",)))


async def test_services_are_listed_fetched_and_deleted(ts: TailscaleClient) -> None:
    await ts.ensure_service("svc:a", ports=["tcp:80"])
    await ts.ensure_service("svc:b", ports=["do-not-validate"])
    assert sorted(s.name for s in await ts.list_services()) == ["svc:a", "svc:b"]
    assert (await ts.get_service("svc:b")).ports == ("do-not-validate",)
    assert await ts.delete_service("svc:a") is True
    with pytest.raises(NotFoundError):
        await ts.get_service("svc:a")
    assert await ts.delete_service("svc:a", missing_ok=True) is False
    assert [s.name for s in await ts.list_services()] == ["svc:b"]


async def test_a_malformed_service_name_is_refused_before_any_request(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    with pytest.raises(ValueError, match="svc:"):
        await ts.get_service("web")
    assert fake.calls == []


async def test_the_tailnet_name_goes_into_the_path(fake: FakeTailscale, sleeps: Sleeps, clock: Clock) -> None:
    import httpx

    from tsgw.tailscale import ClientOptions

    cid, secret = fake.add_oauth_client()
    async with TailscaleClient(
        OAuthClientCredentials(cid, secret),
        ClientOptions(base_url="http://fake", tailnet="example.com"),
        transport=httpx.ASGITransport(app=fake),
        sleep=sleeps,
        clock=clock,
    ) as client:
        await client.list_devices()
    assert fake.calls[-1].path == "/api/v2/tailnet/example.com/devices"
    assert fake.calls[-1].status == 200


async def test_the_client_id_is_derived_from_the_secret_when_omitted(
    fake: FakeTailscale, sleeps: Sleeps, clock: Clock
) -> None:
    cid, secret = fake.add_oauth_client()
    async with make_client(fake, sleeps, clock, OAuthClientCredentials("", secret)) as client:
        await client.list_devices()
    assert fake.calls[-1].principal == f"oauth:{cid}"
