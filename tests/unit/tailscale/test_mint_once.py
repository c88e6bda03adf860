"""Minting an auth key is never repeated blindly: a lost answer leaves exactly one live key.

Against the fake of Tailscale's API, with :class:`LossyTransport` losing requests or answers
between client and fake the way a network or a gateway does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fake_tailscale import FakeTailscale
from tests.support.lossy import LossyTransport
from tests.unit.tailscale.conftest import Clock, Sleeps
from tsgw.tailscale import (
    AuthKeyLifecycle,
    AuthKeyRequest,
    ClientOptions,
    MemoryStateStore,
    OAuthClientCredentials,
    OutcomeUnknownError,
    RetryOptions,
    ServerError,
    StateKeys,
    TailscaleClient,
    TransportError,
)
from tsgw.tailscale._client import mark_description

pytestmark = pytest.mark.anyio

KEYS = "/api/v2/tailnet/-/keys"
KEY = KEYS + "/[^/]+"
REQ = AuthKeyRequest(tags=("tag:k8s",))


@pytest.fixture
def wire(fake: FakeTailscale) -> LossyTransport:
    return LossyTransport(httpx.ASGITransport(app=fake))


@pytest.fixture
async def ts(
    fake: FakeTailscale, wire: LossyTransport, sleeps: Sleeps, clock: Clock
) -> AsyncIterator[TailscaleClient]:
    cid, secret = fake.add_oauth_client()
    async with TailscaleClient(
        OAuthClientCredentials(cid, secret),
        ClientOptions(base_url="http://fake-tailscale", retry=RetryOptions(attempts=3)),
        transport=wire,
        sleep=sleeps,
        clock=clock,
    ) as client:
        yield client


def minted(fake: FakeTailscale) -> int:
    """Keys the fake minted (create answered 200 on the server side, heard or not)."""
    return sum(1 for c in fake.calls if c.method == "POST" and c.path == KEYS and c.status == 200)


@pytest.mark.parametrize("fault", ["drop", "timeout", 502, 504])
async def test_a_mint_whose_answer_was_lost_leaves_exactly_one_live_key_for_the_replica(
    fake: FakeTailscale, ts: TailscaleClient, wire: LossyTransport, fault: str | int
) -> None:
    wire.lose("POST", KEYS, fault)
    store = MemoryStateStore()
    result = await AuthKeyLifecycle(ts, store).ensure("web-0", REQ)

    assert result.minted is True
    assert minted(fake) == 2  # the lost one, then the retry
    [(live_id, live)] = fake.keys.items()  # the lost one was found by its mark and revoked
    state = store.data["web-0"]
    assert state[StateKeys.AUTHKEY_ID] == live_id == result.key_id
    assert state[StateKeys.AUTHKEY] == fake.key_secrets[live_id]
    assert fake.count("GET", KEYS) == 2  # the look-up after the failure, the sweep after success
    assert fake.count("DELETE", KEY) == 1
    # The replica's key works, and it is the only one it will ever get.
    fake.register_device(state[StateKeys.AUTHKEY], "web-0")
    assert live["invalid"] is True


async def test_a_slow_mint_applied_after_its_retry_is_revoked_once_the_retry_succeeds(
    fake: FakeTailscale, ts: TailscaleClient, wire: LossyTransport
) -> None:
    # The first create times out before the fake sees it (so the look-up finds nothing), and
    # reaches the fake only after the retry was answered.
    wire.lose("POST", KEYS, "late")
    key = await ts.create_auth_key(REQ)

    assert wire.late_statuses == [200]
    assert minted(fake) == 2
    assert list(fake.keys) == [key.id]
    assert fake.count("GET", KEYS) == 2  # the look-up after the failure, the sweep after success


async def test_when_every_try_is_ambiguous_no_key_is_left_and_the_mint_error_is_raised(
    fake: FakeTailscale, ts: TailscaleClient, wire: LossyTransport
) -> None:
    wire.lose("POST", KEYS, 502, times=3)
    store = MemoryStateStore()
    with pytest.raises(ServerError) as e:
        await AuthKeyLifecycle(ts, store).ensure("web-0", REQ)

    assert e.value.status == 502
    assert minted(fake) == 3  # one per try, never two for one try
    assert fake.keys == {}  # each revoked before the next try
    assert StateKeys.AUTHKEY not in store.data.get("web-0", {})


async def test_when_the_look_up_fails_too_the_error_says_a_key_may_have_been_minted(
    fake: FakeTailscale, ts: TailscaleClient, wire: LossyTransport
) -> None:
    wire.lose("POST", KEYS, "drop")
    fake.fail("GET", KEYS, 500, times=3)  # every try of the listing

    with pytest.raises(OutcomeUnknownError) as e:
        await ts.create_auth_key(REQ)

    assert isinstance(e.value.cause, TransportError)
    assert e.value.cause.sent is True
    assert isinstance(e.value.__cause__, ServerError)
    assert "may have been minted" in str(e.value)
    assert minted(fake) == 1  # no blind retry: at most the one key nobody holds
    assert len(fake.keys) == 1


async def test_a_429_on_mint_is_retried_after_retry_after_and_mints_one_key(
    fake: FakeTailscale, ts: TailscaleClient, sleeps: Sleeps
) -> None:
    fake.fail("POST", KEYS, 429, retry_after="7")
    key = await ts.create_auth_key(REQ)

    assert [c.status for c in fake.calls if c.path == KEYS] == [429, 200]
    assert sleeps.waits == [7.0]
    assert list(fake.keys) == [key.id]
    assert fake.count("GET", KEYS) == 0  # a 429 was certainly not applied: nothing to look up


async def test_a_mint_that_never_left_is_retried_without_a_look_up(
    fake: FakeTailscale, ts: TailscaleClient, wire: LossyTransport
) -> None:
    wire.lose("POST", KEYS, "refuse", times=2)
    key = await ts.create_auth_key(REQ)

    assert wire.lost == ["refuse POST " + KEYS] * 2
    assert list(fake.keys) == [key.id]
    assert fake.count("GET", KEYS) == 0


async def test_idempotent_calls_are_still_retried_on_5xx_and_lost_answers(
    fake: FakeTailscale, ts: TailscaleClient, wire: LossyTransport
) -> None:
    wire.lose("GET", "/api/v2/tailnet/-/devices", "drop")  # the fake's first 503 is lost too
    fake.fail("GET", "/api/v2/tailnet/-/devices", 503, times=2)
    assert await ts.list_devices() == []
    assert [c.status for c in fake.calls if c.path.endswith("/devices")] == [503, 503, 200]


async def test_a_501_on_mint_is_raised_without_a_look_up(fake: FakeTailscale, ts: TailscaleClient) -> None:
    fake.fail("POST", KEYS, 501)
    with pytest.raises(ServerError) as e:
        await ts.create_auth_key(REQ)
    assert e.value.status == 501
    assert fake.count("GET", KEYS) == 0


def test_the_mark_fits_tailscales_50_character_description() -> None:
    long = mark_description("tsgw " + "n" * 60, 42)
    assert len(long) == 50
    assert long.endswith(" 000042")
    assert mark_description("tsgw web-0", 123456) == "tsgw web-0 123456"
    assert mark_description("", 7) == "tsgw 000007"
