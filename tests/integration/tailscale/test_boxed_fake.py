"""One tailnet: tsgw.tailscale drives the hosted-API fake, real tailscaled live in the box.

The fake (:class:`~tests.support.boxed_fake.BoxedFake`) answers the API as before, and keeps
keys, services and devices in the box (``tsgw-testcontrol``), so what tsgw does through the
documented API is what the real tailscaled nodes experience.
"""

from __future__ import annotations

import pytest

from tests.fake_tailscale import serve
from tests.support.boxed_fake import BoxedFake
from tests.support.tailnet_box import TailnetBox, wait_for
from tsgw.tailscale import AuthKeyRequest, ClientOptions, OAuthClientCredentials, TailscaleClient

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def _state(box: TailnetBox, name: str) -> str:
    return str(next(n for n in box.nodes if n.name == name).status()["BackendState"])


async def test_keys_services_and_devices_through_tsgw_tailscale_act_on_real_nodes(
    tailnet_box: TailnetBox,
) -> None:
    box = tailnet_box
    fake = BoxedFake(box=box.admin)
    cid, secret = fake.add_oauth_client()
    with serve(fake) as url:
        async with TailscaleClient(OAuthClientCredentials(cid, secret), ClientOptions(base_url=url)) as ts:
            key = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
            node = box.join("proxy-0", key.key)  # a real tailscaled, with the key tsgw minted
            [dev] = await ts.list_devices()
            assert (dev.hostname, dev.tags) == ("proxy-0", ("tag:k8s",))  # the key's tags
            assert node.ip4() in dev.addresses

            # The key is single use: a second node cannot join with it.
            other = box.start_node("proxy-1")
            with pytest.raises(RuntimeError, match="timeout"):
                other.up(key.key, "--timeout=10s")
            assert [d.hostname for d in await ts.list_devices()] == ["proxy-0"]

            # Expired: the node re-joins with a new key minted through tsgw.tailscale.
            box.admin.expire_node(dev.legacy_id)
            wait_for(lambda: _state(box, "proxy-0") == "NeedsLogin", what="NeedsLogin after expiry")
            fresh = await ts.create_auth_key(AuthKeyRequest(tags=("tag:k8s",)))
            node.up(fresh.key)
            wait_for(lambda: _state(box, "proxy-0") == "Running", what="Running with the new key")
            [again] = await ts.list_devices()
            assert again.id == dev.id  # the same device, as on Tailscale

            # Services are the box's: VIPs allocated by control, kept across updates.
            svc = await ts.ensure_service("svc:web", ports=["tcp:80"], tags=["tag:k8s"])
            svc2 = await ts.ensure_service("svc:web", ports=["tcp:80", "tcp:443"], tags=["tag:k8s"])
            assert svc.addrs == svc2.addrs == tuple(box.admin.get_service("svc:web")["addrs"])
            assert box.admin.get_service("svc:web")["ports"] == ["tcp:80", "tcp:443"]

            # Deleting the device through the API logs the node out.
            assert await ts.delete_device(dev.id)
            wait_for(lambda: _state(box, "proxy-0") == "NeedsLogin", what="logged out")
            assert await ts.list_devices() == []
            assert await ts.delete_service("svc:web")
            assert box.admin.list_services() == []

    keys = {k["id"]: k for k in box.admin.list_keys()}
    assert [keys[key.id]["uses"], keys[fresh.id]["uses"]] == [1, 1]
    assert fake.count("POST", r"/api/v2/tailnet/-/keys") == 2
