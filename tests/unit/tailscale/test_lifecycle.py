"""The auth-key lifecycle against the fake API: one key per replica, devices cleaned up."""

from __future__ import annotations

import re
from collections.abc import Mapping

import anyio
import pytest
from prometheus_client import REGISTRY

from tests.fake_tailscale import FakeTailscale
from tsgw.tailscale import (
    AuthKeyLifecycle,
    AuthKeyRequest,
    InvalidRequestError,
    MemoryStateStore,
    StateKeys,
    TailscaleClient,
)

pytestmark = pytest.mark.anyio

KEYS = "/api/v2/tailnet/-/keys"
REQ = AuthKeyRequest(tags=("tag:k8s",))


def containerboot_joins(
    fake: FakeTailscale, store: MemoryStateStore, replica: str, *, tidy: bool = True
) -> str:
    """What containerboot does on first start: log in with ``authkey``, write ``device_id``,
    and (with TS_AUTH_ONCE and patch rights) delete ``authkey``."""
    state = store.data[replica]
    dev = fake.register_device(state[StateKeys.AUTHKEY], replica)
    state[StateKeys.DEVICE_ID] = dev["nodeId"]
    state["_machinekey"] = "privkey:..."
    if tidy:
        del state[StateKeys.AUTHKEY]
    return str(dev["nodeId"])


async def test_each_replica_gets_exactly_one_key_however_often_it_is_reconciled(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    for _ in range(5):
        for replica in ("web-0", "web-1", "web-2"):
            await life.ensure(replica, REQ)
    assert fake.count("POST", KEYS) == 3
    assert {store.data[r][StateKeys.AUTHKEY_ID] for r in store.data} == set(fake.keys)
    for r in ("web-0", "web-1", "web-2"):
        key = fake.keys[store.data[r][StateKeys.AUTHKEY_ID]]
        assert re.fullmatch(f"tsgw {r} [0-9]{{6}}", key["description"])  # the mint's mark
        create = key["capabilities"]["devices"]["create"]
        assert create == {"reusable": False, "ephemeral": False, "preauthorized": True, "tags": ["tag:k8s"]}


async def test_concurrent_reconciles_of_one_replica_mint_one_key(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    life = AuthKeyLifecycle(ts, MemoryStateStore())
    results = []

    async def go() -> None:
        results.append(await life.ensure("web-0", REQ))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(go)
    assert fake.count("POST", KEYS) == 1
    assert sum(r.minted for r in results) == 1


async def test_a_registered_replica_never_gets_a_new_key_even_after_its_key_is_gone(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    await life.ensure("web-0", REQ)
    device_id = containerboot_joins(fake, store, "web-0")
    result = await life.ensure("web-0", REQ)
    assert (result.minted, result.device_id) == (False, device_id)
    assert fake.count("POST", KEYS) == 1
    assert StateKeys.AUTHKEY_ID not in store.data["web-0"]


async def test_a_key_left_behind_after_registration_is_removed_from_the_state(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    await life.ensure("web-0", REQ)
    containerboot_joins(fake, store, "web-0", tidy=False)
    await life.ensure("web-0", REQ)
    assert StateKeys.AUTHKEY not in store.data["web-0"]
    assert store.data["web-0"][StateKeys.DEVICE_ID]


async def test_tailscaled_state_alone_counts_as_state(fake: FakeTailscale, ts: TailscaleClient) -> None:
    store = MemoryStateStore({"web-0": {"_current-profile": "profile-1"}})
    result = await AuthKeyLifecycle(ts, store).ensure("web-0", REQ)
    assert result.minted is False
    assert fake.count("POST", KEYS) == 0


async def test_deleting_a_proxy_deletes_its_device_by_the_id_in_its_state(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    await life.ensure("web-0", REQ)
    device_id = containerboot_joins(fake, store, "web-0")
    result = await life.delete("web-0")
    assert (result.device_deleted, result.key_revoked) == (True, False)
    assert device_id not in fake.devices
    assert fake.count("DELETE", f"/api/v2/device/{device_id}") == 1
    again = await life.delete("web-0")  # a finalizer may run twice
    assert again.device_deleted is False


async def test_deleting_a_proxy_before_it_joined_revokes_its_unused_key(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    await life.ensure("web-0", REQ)
    result = await life.delete("web-0")
    assert (result.device_deleted, result.key_revoked) == (False, True)
    assert fake.keys == {}
    assert StateKeys.AUTHKEY not in store.data["web-0"]


class FailingStore(MemoryStateStore):
    """Stores the mint's ticket, then fails the write carrying the key."""

    async def save(self, replica: str, changes: Mapping[str, str | None]) -> None:
        if StateKeys.AUTHKEY_ID in changes:
            raise OSError("state store unavailable")
        await super().save(replica, changes)


class DownStore(MemoryStateStore):
    async def save(self, replica: str, changes: Mapping[str, str | None]) -> None:
        raise OSError("state store unavailable")


async def test_a_key_that_could_not_be_stored_is_revoked_not_leaked(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = FailingStore()
    life = AuthKeyLifecycle(ts, store)
    with pytest.raises(OSError, match="unavailable"):
        await life.ensure("web-0", REQ)
    assert fake.count("POST", KEYS) == 1
    assert fake.keys == {}
    assert StateKeys.MINT_TICKET in store.data["web-0"]  # swept by the next mint: nothing left


async def test_nothing_is_minted_while_the_mint_cannot_be_recorded_first(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    with pytest.raises(OSError, match="unavailable"):
        await AuthKeyLifecycle(ts, DownStore()).config_key("web-0", REQ, current_key=None)
    assert fake.count("POST", KEYS) == 0


async def killed_mid_mint(ts: TailscaleClient, store: MemoryStateStore, replica: str) -> str:
    """What a process killed right after the server minted leaves (no ``finally`` runs on
    SIGKILL): the mint's ticket in the state, a live key nobody holds. Its id."""
    req = AuthKeyRequest(tags=REQ.tags, preauthorized=REQ.preauthorized, description=f"tsgw {replica}")
    ticket = await ts.mint_ticket(req)
    await store.save(replica, {StateKeys.MINT_TICKET: ticket})
    return (await ts.create_auth_key(req, ticket=ticket)).id


@pytest.mark.parametrize("mode", ["config", "state"])
async def test_a_key_minted_by_a_process_killed_before_storing_it_is_revoked_by_the_next(
    fake: FakeTailscale, ts: TailscaleClient, mode: str
) -> None:
    store = MemoryStateStore()
    orphan = await killed_mid_mint(ts, store, "web-0")
    life = AuthKeyLifecycle(ts, store)  # the successor (a new leader)
    if mode == "config":
        key = await life.config_key("web-0", REQ, current_key=None, key_field="tsgw-authkey")
    else:
        key = (await life.ensure("web-0", REQ)).key_id
    assert key
    state = store.data["web-0"]
    assert orphan not in fake.keys
    assert list(fake.keys) == [state[StateKeys.AUTHKEY_ID]]  # one live key, the stored one
    assert StateKeys.MINT_TICKET not in state
    assert fake.count("POST", KEYS) == 2


async def test_a_mint_never_sent_leaves_a_ticket_that_revokes_nothing(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    await store.save("web-0", {StateKeys.MINT_TICKET: await ts.mint_ticket(REQ)})
    other = await ts.create_auth_key(REQ)  # another replica's key, marked differently
    await AuthKeyLifecycle(ts, store).config_key("web-0", REQ, current_key=None)
    assert other.id in fake.keys
    assert len(fake.keys) == 2


async def test_deleting_a_replica_whose_mint_was_interrupted_revokes_what_it_minted(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    orphan = await killed_mid_mint(ts, store, "web-0")
    result = await AuthKeyLifecycle(ts, store).delete("web-0")
    assert (result.device_deleted, result.key_revoked) == (False, True)
    assert orphan not in fake.keys
    assert store.data["web-0"] == {}


async def test_a_ticket_that_does_not_parse_is_refused_not_swept(ts: TailscaleClient) -> None:
    with pytest.raises(InvalidRequestError, match="not a mint ticket"):
        await ts.revoke_minted("{not json")
    with pytest.raises(InvalidRequestError, match="not a mint ticket"):
        await ts.revoke_minted("[1]")


async def test_config_mode_mints_for_a_new_config_then_keeps_then_drops_the_key(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    key = await life.config_key("web-0", REQ, current_key=None)
    assert key is not None
    assert key.startswith("tskey-auth-")
    # Reconciled again before the proxy joined: the same key stays, nothing is minted.
    assert await life.config_key("web-0", REQ, current_key=key) == key
    assert fake.count("POST", KEYS) == 1
    dev = fake.register_device(key, "web-0")
    await store.save("web-0", {StateKeys.DEVICE_ID: dev["nodeId"]})
    assert await life.config_key("web-0", REQ, current_key=key) is None  # used: leaves the file
    assert await life.config_key("web-0", REQ, current_key="") is None
    assert fake.count("POST", KEYS) == 1


async def test_config_mode_answers_a_reissue_request_once_deleting_the_stale_device(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    old = await life.config_key("web-0", REQ, current_key=None)
    assert old is not None
    dev = fake.register_device(old, "web-0")
    # The proxy lost its state and its single-use key is spent: containerboot asks for a new one.
    await store.save("web-0", {StateKeys.DEVICE_ID: dev["nodeId"], StateKeys.REISSUE_AUTHKEY: old})
    new = await life.config_key("web-0", REQ, current_key=old)
    assert new is not None
    assert new != old
    assert dev["nodeId"] not in fake.devices
    # Until containerboot picks the new key up and clears the request, nothing more is minted.
    assert await life.config_key("web-0", REQ, current_key=new) == new
    assert fake.count("POST", KEYS) == 2
    # containerboot reads the new key and clears the request with the old device's fields; the
    # key stays in the file until the new device registered, then leaves it.
    await store.save("web-0", {StateKeys.REISSUE_AUTHKEY: None, StateKeys.DEVICE_ID: None})
    assert await life.config_key("web-0", REQ, current_key=new) == new
    dev2 = fake.register_device(new, "web-0")
    await store.save("web-0", {StateKeys.DEVICE_ID: dev2["nodeId"]})
    assert await life.config_key("web-0", REQ, current_key=new) is None
    assert fake.count("POST", KEYS) == 2


async def test_config_mode_answers_an_empty_reissue_request_once(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    """The usual re-issue: the used key already left the config file, so containerboot names
    an empty key (``reissue_authkey: ""``) beside the stale device id. One new key, kept until
    the new device registered."""
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    old = await life.config_key("web-0", REQ, current_key=None, key_field="tsgw-authkey")
    assert old is not None
    dev = fake.register_device(old, "web-0")
    await store.save("web-0", {StateKeys.DEVICE_ID: dev["nodeId"], "tsgw-authkey": None})
    fake.devices.pop(dev["nodeId"])  # an admin deletes the device; the pod restarts
    await store.save("web-0", {StateKeys.REISSUE_AUTHKEY: ""})
    new = await life.config_key("web-0", REQ, current_key=None, key_field="tsgw-authkey")
    assert new is not None
    assert new != old
    state = await store.load("web-0")
    assert state is not None
    assert state["tsgw-authkey"] == new
    assert await life.config_key("web-0", REQ, current_key=new, key_field="tsgw-authkey") == new
    assert fake.count("POST", KEYS) == 2
    await store.save("web-0", {StateKeys.REISSUE_AUTHKEY: None, StateKeys.DEVICE_ID: None})
    dev2 = fake.register_device(new, "web-0")
    await store.save("web-0", {StateKeys.DEVICE_ID: dev2["nodeId"]})
    assert await life.config_key("web-0", REQ, current_key=new, key_field="tsgw-authkey") is None
    assert fake.count("POST", KEYS) == 2


async def test_config_mode_stores_a_new_key_with_its_id_in_one_write(
    fake: FakeTailscale, ts: TailscaleClient
) -> None:
    """With ``key_field`` the key and its id are one write to the state, after the mint's
    ticket (the operator's state Secret: two API writes per key). A re-issue request is left
    for containerboot to clear: it clears it with the old device's fields once it read the
    new key."""
    store = MemoryStateStore()
    saves: list[dict[str, str | None]] = []
    real_save = store.save

    async def save(replica: str, changes: Mapping[str, str | None]) -> None:
        saves.append(dict(changes))
        await real_save(replica, changes)

    store.save = save  # type: ignore[method-assign]
    life = AuthKeyLifecycle(ts, store)
    key = await life.config_key("web-0", REQ, current_key=None, key_field="tsgw-authkey")
    assert key is not None
    assert len(saves) == 2
    assert list(saves[0]) == [StateKeys.MINT_TICKET]
    assert saves[1]["tsgw-authkey"] == key
    assert saves[1][StateKeys.AUTHKEY_ID]
    assert saves[1][StateKeys.MINT_TICKET] is None
    dev = fake.register_device(key, "web-0")
    await real_save("web-0", {StateKeys.DEVICE_ID: dev["nodeId"], StateKeys.REISSUE_AUTHKEY: key})
    new = await life.config_key("web-0", REQ, current_key=key, key_field="tsgw-authkey")
    assert new is not None
    assert new != key
    assert saves[-1] == {
        StateKeys.AUTHKEY_ID: saves[-1][StateKeys.AUTHKEY_ID],
        "tsgw-authkey": new,
        StateKeys.MINT_TICKET: None,
    }
    assert len(saves) == 4
    # The stale device_id beside the new key does not take the key out of the file.
    assert await life.config_key("web-0", REQ, current_key=new, key_field="tsgw-authkey") == new


async def test_minted_keys_are_counted_as_new_or_reissued(fake: FakeTailscale, ts: TailscaleClient) -> None:
    def minted(reason: str) -> float:
        labels = {"tailnet": ts.name, "reason": reason}
        return REGISTRY.get_sample_value("tsgw_tailscale_auth_keys_minted_total", labels) or 0.0

    new, reissued = minted("new"), minted("reissue")
    store = MemoryStateStore()
    life = AuthKeyLifecycle(ts, store)
    old = await life.config_key("web-0", REQ, current_key=None)
    assert old is not None
    dev = fake.register_device(old, "web-0")
    await store.save("web-0", {StateKeys.DEVICE_ID: dev["nodeId"], StateKeys.REISSUE_AUTHKEY: old})
    assert await life.config_key("web-0", REQ, current_key=old) not in (None, old)
    await life.ensure("db-0", REQ)
    assert (minted("new"), minted("reissue")) == (new + 2, reissued + 1)
