"""HeadscaleClient against a real Headscale v0.29.2 with real tailscaled, in a private namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.lossy import LossyTransport
from tests.support.tailnet import Tailnet
from tsgw.tailscale import (
    APIKey,
    AuthError,
    AuthKeyLifecycle,
    AuthKeyRequest,
    ClientOptions,
    HeadscaleClient,
    InvalidRequestError,
    MemoryStateStore,
    NotFoundError,
    StateKeys,
    UnsupportedError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TAG = "tag:tsgw-proxy"


@pytest.fixture(scope="module")
def api_key(tailnet: Tailnet) -> str:
    return tailnet.api_key()


@pytest.fixture
async def hs(tailnet: Tailnet, api_key: str) -> AsyncIterator[HeadscaleClient]:
    async with HeadscaleClient(APIKey(api_key), ClientOptions(base_url=tailnet.api_url)) as client:
        yield client


async def test_a_key_minted_by_the_client_joins_a_real_tailscaled_that_the_client_finds_and_deletes(
    tailnet: Tailnet, hs: HeadscaleClient
) -> None:
    key = await hs.create_auth_key(AuthKeyRequest(tags=(TAG,), expiry_seconds=3600))
    assert key.key.startswith("hskey-auth-")
    assert key.tags == (TAG,)
    assert key.reusable is False

    node = tailnet.join("hs-client-0", key.key)
    stable_id = node.status()["Self"]["ID"]  # what containerboot stores as device_id

    [dev] = await hs.find_devices(hostname="hs-client-0")
    assert dev.id == stable_id
    assert node.ip4() in dev.addresses
    assert dev.tags == (TAG,)
    got = await hs.get_device(dev.id)
    # (Headscale's list names tagged nodes' user "tagged-devices", its get leaves it empty.)
    assert (got.id, got.hostname, got.addresses, got.tags) == (dev.id, dev.hostname, dev.addresses, dev.tags)

    listed = {k.id: k for k in await hs.list_auth_keys()}
    assert listed[key.id].invalid is True  # single use: consumed by the join
    assert listed[key.id].key == ""  # listings never carry the secret

    assert await hs.delete_device(dev.id) is True
    with pytest.raises(NotFoundError) as e:
        await hs.get_device(dev.id)
    assert e.value.status == 404
    assert dev.id not in {d.id for d in await hs.list_devices()}
    assert await hs.delete_device(dev.id, missing_ok=True) is False
    node.process.stop()


async def test_new_device_tags_need_tag_owners_in_the_headscale_policy(
    tailnet: Tailnet, hs: HeadscaleClient
) -> None:
    # The test tailnet's Headscale has no policy: keys may carry tags, but changing a node's
    # tags is checked against tagOwners and refused, which surfaces as InvalidRequestError.
    key = await hs.create_auth_key(AuthKeyRequest(tags=(TAG,)))
    node = tailnet.join("hs-client-tags", key.key)
    [dev] = await hs.find_devices(hostname="hs-client-tags")
    with pytest.raises(InvalidRequestError) as e:
        await hs.set_device_tags(dev.id, [TAG, "tag:tsgw-extra"])
    assert e.value.status == 400
    assert "not permitted" in e.value.message
    assert (await hs.get_device(dev.id)).tags == (TAG,)
    await hs.delete_device(dev.id)
    node.process.stop()


async def test_auth_keys_are_listed_and_deleted(hs: HeadscaleClient) -> None:
    key = await hs.create_auth_key(AuthKeyRequest(tags=(TAG,), reusable=True, ephemeral=True))
    fetched = await hs.get_auth_key(key.id)
    assert (fetched.reusable, fetched.ephemeral, fetched.invalid) == (True, True, False)
    assert fetched.expires is not None
    assert await hs.delete_auth_key(key.id) is True
    with pytest.raises(NotFoundError):
        await hs.get_auth_key(key.id)
    assert await hs.delete_auth_key(key.id, missing_ok=True) is False


async def test_errors_from_real_headscale_map_onto_the_tree(tailnet: Tailnet, hs: HeadscaleClient) -> None:
    with pytest.raises(NotFoundError):
        await hs.get_device("987654")
    with pytest.raises(UnsupportedError):
        await hs.list_services()
    async with HeadscaleClient(
        APIKey("hskey-api-notakey-0000000000"), ClientOptions(base_url=tailnet.api_url)
    ) as wrong:
        with pytest.raises(AuthError) as e:
            await wrong.list_devices()
    assert e.value.status == 401


async def test_the_lifecycle_mints_once_and_deleting_the_proxy_removes_its_device(
    tailnet: Tailnet, hs: HeadscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(hs, store)
    req = AuthKeyRequest(tags=(TAG,))
    assert (await life.ensure("hs-life-0", req)).minted is True
    assert (await life.ensure("hs-life-0", req)).minted is False
    before = len(await hs.list_auth_keys())

    node = tailnet.join("hs-life-0", store.data["hs-life-0"][StateKeys.AUTHKEY])
    # What containerboot writes into the state Secret after login (no Kubernetes here).
    await store.save("hs-life-0", {StateKeys.DEVICE_ID: node.status()["Self"]["ID"], StateKeys.AUTHKEY: None})
    assert (await life.ensure("hs-life-0", req)).minted is False
    assert len(await hs.list_auth_keys()) == before

    result = await life.delete("hs-life-0")
    assert result.device_deleted is True
    assert await hs.find_devices(hostname="hs-life-0") == []
    node.process.stop()


@pytest.mark.parametrize("fault", ["drop", 502, "late"])
async def test_a_lost_create_answer_leaves_exactly_one_live_key_on_real_headscale(
    tailnet: Tailnet, api_key: str, fault: str | int
) -> None:
    # The create reaches Headscale (or, "late", reaches it after the retry) and its answer is
    # lost on the way back: the client finds the key by its expiry's mark and deletes it.
    wire = LossyTransport(httpx.AsyncHTTPTransport())
    wire.lose("POST", "/api/v1/preauthkey", fault)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    replica = f"hs-lost-{fault}"
    async with HeadscaleClient(
        APIKey(api_key), ClientOptions(base_url=tailnet.api_url), transport=wire, sleep=sleep
    ) as client:
        before = {k.id for k in await client.list_auth_keys()}
        store = MemoryStateStore()
        result = await AuthKeyLifecycle(client, store).ensure(replica, AuthKeyRequest(tags=(TAG,)))

        assert result.minted is True
        assert wire.lost == [f"{fault} POST /api/v1/preauthkey"]
        assert len(waits) == 1  # one retry of the create, after the look-up
        assert wire.late_statuses == ([200] if fault == "late" else [])  # minted after the retry
        new = [k for k in await client.list_auth_keys() if k.id not in before]
        assert [k.id for k in new] == [result.key_id]  # Headscale minted two; one is left
        assert new[0].invalid is False

        node = tailnet.join(replica, store.data[replica][StateKeys.AUTHKEY])
        [dev] = await client.find_devices(hostname=replica)
        assert dev.id == node.status()["Self"]["ID"]
        assert await client.delete_device(dev.id) is True
        node.process.stop()


async def test_a_key_minted_by_an_operator_killed_before_storing_it_is_revoked_by_its_successor(
    tailnet: Tailnet, hs: HeadscaleClient
) -> None:
    # What a leader SIGKILLed right after Headscale minted leaves behind: the mint's ticket in
    # the replica's state and a live key nobody holds (Headscale keeps no description: the
    # ticket finds it by its expiry's mark).
    req = AuthKeyRequest(tags=(TAG,), description="tsgw hs-killed-0")
    store = MemoryStateStore()
    ticket = await hs.mint_ticket(req)
    await store.save("hs-killed-0", {StateKeys.MINT_TICKET: ticket})
    orphan = await hs.create_auth_key(req, ticket=ticket)
    other = await hs.create_auth_key(req)  # same tags, another mark: not the orphan

    key = await AuthKeyLifecycle(hs, store).config_key(
        "hs-killed-0", AuthKeyRequest(tags=(TAG,)), current_key=None, key_field="tsgw-authkey"
    )

    live = {k.id for k in await hs.list_auth_keys() if not k.invalid}
    state = store.data["hs-killed-0"]
    assert orphan.id not in live
    assert {other.id, state[StateKeys.AUTHKEY_ID]} <= live
    assert state["tsgw-authkey"] == key
    assert StateKeys.MINT_TICKET not in state
    node = tailnet.join("hs-killed-0", key)  # the stored key is the one that works
    [dev] = await hs.find_devices(hostname="hs-killed-0")
    assert await hs.delete_device(dev.id) is True
    assert await hs.delete_auth_key(other.id) is True
    node.process.stop()
