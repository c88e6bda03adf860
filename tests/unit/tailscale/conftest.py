"""A fake Tailscale API in process and clients wired to it, with recorded sleeps and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.fake_tailscale import FakeTailscale
from tsgw.tailscale import APIKey, ClientOptions, OAuthClientCredentials, RetryOptions, TailscaleClient


@dataclass
class Clock:
    """A monotonic clock the test moves by hand (shared by the fake and the client)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sleeps:
    """Records the waits the retry policy asked for instead of sleeping."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake(clock: Clock) -> FakeTailscale:
    return FakeTailscale(clock=clock)


def make_client(
    fake: FakeTailscale,
    sleeps: Sleeps,
    clock: Clock,
    credentials: OAuthClientCredentials | APIKey | None = None,
    retry: RetryOptions | None = None,
) -> TailscaleClient:
    if credentials is None:
        cid, secret = fake.add_oauth_client()
        credentials = OAuthClientCredentials(cid, secret)
    return TailscaleClient(
        credentials,
        ClientOptions(base_url="http://fake-tailscale", retry=retry or RetryOptions()),
        transport=httpx.ASGITransport(app=fake),
        sleep=sleeps,
        clock=clock,
    )


@pytest.fixture
async def ts(fake: FakeTailscale, sleeps: Sleeps, clock: Clock) -> AsyncIterator[TailscaleClient]:
    async with make_client(fake, sleeps, clock) as client:
        yield client
