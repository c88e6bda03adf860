"""One tailnet: tsgw.tailscale drives the hosted-API fake, real tailscaled live in the box.

The fake (:class:`~tests.support.boxed_fake.BoxedFake`) answers the API as before, and keeps
keys, services and devices in the box (``tsgw-testcontrol``), so what tsgw does through the
documented API is what the real tailscaled nodes experience.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest

from tests.support.boxed_fake import BoxedTailnet, boxed_tailnet
from tests.support.netns import NetNS
from tests.support.tailnet_box import TailnetBox, wait_for
from tsgw.tailscale import (
    AuthKeyLifecycle,
    AuthKeyRequest,
    InvalidRequestError,
    ProxyConfig,
    StateKeys,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def _state(box: TailnetBox, name: str) -> str:
    return str(next(n for n in box.nodes if n.name == name).status()["BackendState"])


async def test_keys_services_and_devices_through_tsgw_tailscale_act_on_real_nodes(
    tailnet_box: BoxedTailnet,
) -> None:
    box, fake = tailnet_box.box, tailnet_box.fake
    async with tailnet_box.client() as ts:
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


def test_the_policy_file_set_through_the_api_reaches_the_box(tailnet_box: BoxedTailnet) -> None:
    tn = tailnet_box
    owners = {"tag:k8s-operator": [], "tag:proxy": ["tag:k8s-operator"], "tag:edge": ["tag:k8s-operator"]}
    doc = tn.set_policy(tag_owners=owners, services={"svc:web": ["tag:edge"]})
    assert (
        doc == tn.policy() == {"tagOwners": owners, "autoApprovers": {"services": {"svc:web": ["tag:edge"]}}}
    )
    assert tn.box.admin.policy() == doc  # the control plane's tagOwners and autoApprovers

    # Tag ownership follows the policy: tag:edge may now be minted, tag:k8s (gone) may not.
    assert tn.call(tn.ts.create_auth_key, AuthKeyRequest(tags=("tag:edge",))).key
    with pytest.raises(InvalidRequestError, match="not permitted"):
        tn.call(tn.ts.create_auth_key, AuthKeyRequest(tags=("tag:k8s",)))

    # A write against a stale ETag is refused and changes nothing, in the fake or the box.
    stale = httpx.post(
        f"{tn.api_url}/api/v2/tailnet/-/acl",
        json={"tagOwners": {}},
        headers={"If-Match": '"0000"'},
        auth=(tn.api_key, ""),
    )
    assert stale.status_code == 412
    assert tn.policy() == tn.box.admin.policy() == doc
    # tsgw's own OAuth client has no policy_file scope.
    token = httpx.post(
        f"{tn.api_url}/api/v2/oauth/token",
        data={"client_id": tn.oauth_client_id, "client_secret": tn.oauth_client_secret},
    ).json()["access_token"]
    denied = httpx.get(f"{tn.api_url}/api/v2/tailnet/-/acl", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403


def test_the_box_runs_in_a_namespace_the_test_made_and_leaves_it(tmp_path: Path) -> None:
    ns = NetNS(prefix="tsgw-mine", address="10.213.7.1/24")
    try:
        with boxed_tailnet(tmp_path, ns=ns) as tn:
            assert tn.box.ns is ns
            assert tn.box.url == "http://10.213.7.1:8080"
            key = tn.call(tn.ts.create_auth_key, AuthKeyRequest(tags=("tag:k8s",)))
            node = tn.box.join("mine-0", key.key)
            [dev] = tn.call(tn.ts.list_devices)
            assert (dev.hostname, dev.tags) == ("mine-0", ("tag:k8s",))
            assert node.ip4() in dev.addresses
            assert len(ns.pids()) >= 2  # the server and the node, in our namespace
        # Closed: its processes are gone, our namespace stays ours to delete.
        assert Path(ns.path).exists()
        assert ns.pids() == []
    finally:
        ns.delete()
    assert not Path(ns.path).exists()


@dataclass
class _DiskStateStore:
    """A replica's state as the operator's state Secret would hold it, without Kubernetes.

    tailscaled's own state is the file containerboot keeps under ``TS_STATE_DIR`` (the same keys
    its kube store writes into the Secret); tsgw's fields live beside it. As containerboot does
    with the Secret after a login, the ``authkey`` field is gone once tailscaled has state.
    """

    root: Path
    fields: dict[str, dict[str, str]] = field(default_factory=dict)

    def _tailscaled(self, replica: str) -> dict[str, str]:
        try:
            raw = json.loads((self.root / "nodes" / replica / "state" / "tailscaled.state").read_text())
        except FileNotFoundError:
            return {}
        return {k: "present" for k in raw}

    async def load(self, replica: str) -> Mapping[str, str] | None:
        ts = self._tailscaled(replica)
        mine = self.fields.get(replica)
        if mine is None and not ts:
            return None
        state = {**(mine or {}), **ts}
        if ts:
            state.pop(StateKeys.AUTHKEY, None)
        return state

    async def save(self, replica: str, changes: Mapping[str, str | None]) -> None:
        mine = self.fields.setdefault(replica, {})
        for k, v in changes.items():
            if v is None:
                mine.pop(k, None)
            else:
                mine[k] = v


async def test_one_key_is_minted_per_proxy_replica_across_restarts(tailnet_box: BoxedTailnet) -> None:
    box, fake = tailnet_box.box, tailnet_box.fake
    store = _DiskStateStore(box.dir)
    replicas = ("proxy-0", "proxy-1")
    async with tailnet_box.client() as ts:
        lifecycle = AuthKeyLifecycle(ts, store)
        for round_ in range(3):  # three starts of each replica: one login, two restarts
            for name in replicas:
                cfg = ProxyConfig(hostname=name, tags=("tag:k8s",), login_server=box.url)
                await lifecycle.ensure(name, cfg.auth_key_request())
                state = await store.load(name) or {}
                cfg = replace(
                    cfg,
                    auth_key=state.get(StateKeys.AUTHKEY, ""),
                    outbound_http_proxy="",
                    local_addr_port="",
                )
                assert bool(cfg.auth_key) == (round_ == 0)  # a key only before the first login
                node = box.start_proxy(f"{name}", cfg.env())
                node.process.stop(timeout=30)
                box.nodes.remove(node)
        devices = await ts.list_devices()

    minted = [c for c in fake.calls if c.method == "POST" and c.path == "/api/v2/tailnet/-/keys"]
    assert len(minted) == len(replicas)  # exactly one key per replica, across restarts
    assert sorted(d.hostname for d in devices) == list(replicas)  # one device each, never re-created
    assert all(k["uses"] == 1 for k in box.admin.list_keys())
