"""The client over real HTTP: the fake served on loopback, and a port where nothing listens."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_tailscale import FakeTailscale, serve
from tests.support.process import refusing_port
from tsgw.tailscale import (
    AuthKeyRequest,
    ClientOptions,
    OAuthClientCredentials,
    RetryOptions,
    TailscaleClient,
    TransportError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_the_client_reaches_a_configured_base_url_over_http_on_loopback() -> None:
    fake = FakeTailscale()
    cid, secret = fake.add_oauth_client()
    with serve(fake) as url:
        assert url.startswith("http://127.0.0.1:")
        async with TailscaleClient(OAuthClientCredentials(cid, secret), ClientOptions(base_url=url)) as ts:
            key = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
            fake.register_device(key.key, "proxy-0")
            [dev] = await ts.list_devices()
            svc = await ts.ensure_service("svc:web", ports=["tcp:443"], tags=["tag:k8s"])
        async with httpx.AsyncClient() as raw:  # the documented error shape, on the wire
            resp = await raw.get(f"{url}/api/v2/tailnet/-/devices")
    assert dev.hostname == "proxy-0"
    assert svc.addrs
    assert resp.status_code == 401
    assert resp.json() == {"message": "API token invalid"}
    assert [c.path for c in fake.calls][:2] == ["/api/v2/oauth/token", "/api/v2/tailnet/-/keys"]


async def test_nothing_listening_is_a_transport_error_after_every_retry() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    with refusing_port() as port:
        opts = ClientOptions(base_url=f"http://127.0.0.1:{port}", retry=RetryOptions(attempts=3), timeout=2)
        async with TailscaleClient(
            OAuthClientCredentials("id", "tskey-client-id-x"), opts, sleep=sleep
        ) as ts:
            with pytest.raises(TransportError, match="ConnectError"):
                await ts.list_devices()
    assert len(waits) == 2
