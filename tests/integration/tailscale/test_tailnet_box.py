"""Tailscale Services hosted by real tailscaled through the tailnet in a box.

The control plane is ``tsgw-testcontrol`` (tailscale's own testcontrol, see
``tests/tailnet/README.md``); every node is a real tailscaled v1.102.3, the service hosts run
under tailscale's own ``containerboot`` configured only from :class:`tsgw.tailscale.ProxyConfig`
(serve config with a TCP forward and PROXY protocol v2). A client node reaches a service through
its SOCKS5 server, so every byte crosses WireGuard inside the box's namespace.

The tests drive the tailnet as tsgw would: keys, services and devices through tsgw's
``TailscaleClient`` against the hosted-API fake bound to the box, ``autoApprovers`` through the
policy file endpoint. ``tn.box.admin`` is used only where Tailscale's hosted API has no
endpoint: explicit host approval (the admin console's), forcing a node key's expiry, register
rate limiting, and reading control-plane state the API does not report (the primary host of
a service, a key's uses).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.boxed_fake import BoxedTailnet
from tests.support.tailnet import Node
from tests.support.tailnet_box import wait_for
from tests.support.tailnet_services import (
    SVC,
    auth_key,
    auto_approve,
    backend,
    define_service,
    host_status,
    primary,
    reach,
    run_failover,
    service_proxy,
    socks_client,
    unreachable,
)

pytestmark = pytest.mark.integration


def _service_host_cap(node: Node) -> object:
    return (node.status()["Self"].get("CapMap") or {}).get("service-host")


def test_a_tagged_containerboot_proxy_hosts_a_service_reached_by_vip_and_magicdns_name(
    tailnet_box: BoxedTailnet,
) -> None:
    tn, box = tailnet_box, tailnet_box.box
    auto_approve(tn, {SVC: ["tag:proxy"]})
    svc = tn.call(lambda: tn.ts.ensure_service(SVC, ports=["tcp:80"], tags=["tag:k8s"], comment="ingress"))
    vip4, vip6 = svc.addrs
    web = backend(box, "proxy-0")
    proxy = service_proxy(tn, "proxy-0", web)
    client = socks_client(tn)

    wait_for(lambda: primary(box) == "proxy-0", what="proxy-0 carrying the VIP")
    # The control plane learnt the service from the host itself (ServicesHash, then c2n).
    assert host_status(box, "proxy-0")["ports"] == ["tcp:80"]
    wait_for(lambda: _service_host_cap(proxy) == [{SVC: [vip4, vip6]}], what="the service-host capability")
    [dev] = tn.call(lambda: tn.ts.find_devices(hostname="proxy-0"))
    assert dev.tags == ("tag:proxy",)  # from its auth key

    by_vip = wait_for(lambda: reach(box, client, vip4), what="the VIP answering")
    by_name = reach(box, client, "web.tailnet.test")
    client_ip = client.ip4()
    assert by_vip.startswith(f"backend=proxy-0 src={client_ip}:")
    assert by_name.startswith(f"backend=proxy-0 src={client_ip}:")
    assert [s.split(":")[0] for s in web.sources] == [client_ip, client_ip]
    assert web.errors == []


def test_retagging_a_device_through_the_api_makes_it_an_approved_service_host(
    tailnet_box: BoxedTailnet,
) -> None:
    tn, box = tailnet_box, tailnet_box.box
    auto_approve(tn, {SVC: ["tag:proxy"]})
    vip4 = define_service(tn).addrs[0]
    proxy = service_proxy(tn, "proxy-0", backend(box, "proxy-0"), tags=("tag:k8s",))  # not an autoApprover
    client = socks_client(tn)
    wait_for(lambda: host_status(box, "proxy-0")["advertised"], what="advertised")
    assert not host_status(box, "proxy-0")["approved"]
    assert unreachable(box, client, vip4)

    [dev] = tn.call(lambda: tn.ts.find_devices(hostname="proxy-0"))
    tn.call(tn.ts.set_device_tags, dev.id, ["tag:proxy"])
    assert tn.call(tn.ts.get_device, dev.id).tags == ("tag:proxy",)
    # The node itself and its peers see the new tags; the policy now approves it as a host.
    wait_for(lambda: proxy.status()["Self"].get("Tags") == ["tag:proxy"], what="the node seeing its tags")
    ip = proxy.ip4()
    wait_for(
        lambda: (
            [p.get("Tags") for p in client.status()["Peer"].values() if ip in p["TailscaleIPs"]]
            == [["tag:proxy"]]
        ),
        what="the peer seeing the new tags",
    )
    assert wait_for(lambda: reach(box, client, vip4), what="the VIP answering").startswith("backend=proxy-0")
    assert _service_host_cap(proxy) is not None


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_two_hosts_when_the_primary_stops_traffic_continues_through_the_other(
    tailnet_box: BoxedTailnet, how: str, record_property: Callable[[str, object], None]
) -> None:
    f = run_failover(tailnet_box, how)
    print("\n" + f.summary())
    record_property("failover_gap_s", round(f.gap, 3))
    assert primary(tailnet_box.box) == f.standby
    assert f.answers_after_switch() == {f"backend={f.standby}"}  # once moved, it stays with the survivor


def test_an_untagged_host_and_an_unapproved_host_get_no_traffic(tailnet_box: BoxedTailnet) -> None:
    tn, box = tailnet_box, tailnet_box.box
    auto_approve(tn, {SVC: ["tag:proxy"]})
    vip4 = define_service(tn).addrs[0]
    untagged_backend = backend(box, "untagged")
    untagged = service_proxy(tn, "untagged", untagged_backend, tags=())  # a user's key, untagged
    # Explicit host approval is the admin console's (no API endpoint): the box's admin API.
    box.admin.approve(SVC, "untagged")  # even approved: untagged nodes cannot host services
    other_backend = backend(box, "other")
    other = service_proxy(tn, "other", other_backend, tags=("tag:k8s",))  # not an autoApprover
    client = socks_client(tn)

    wait_for(
        lambda: host_status(box, "untagged")["advertised"] and host_status(box, "other")["advertised"],
        what="advertised",
    )
    assert not host_status(box, "untagged")["serviceHost"]
    assert not host_status(box, "other")["approved"]
    assert primary(box) == ""
    assert unreachable(box, client, vip4)
    assert _service_host_cap(untagged) is None
    assert _service_host_cap(other) is None

    box.admin.approve(SVC, "other")  # the same host, now approved: traffic flows
    assert wait_for(lambda: reach(box, client, vip4), what="approved host answering").startswith(
        "backend=other"
    )
    assert untagged_backend.sources == []

    box.admin.approve(SVC, "other", approved=False)  # approval withdrawn: the VIP goes dark
    wait_for(lambda: unreachable(box, client, vip4), what="the VIP going dark")
    wait_for(lambda: _service_host_cap(other) is None, what="the service-host capability withdrawn")


def test_deleting_the_service_stops_traffic(tailnet_box: BoxedTailnet) -> None:
    tn, box = tailnet_box, tailnet_box.box
    auto_approve(tn, {SVC: ["tag:proxy"]})
    vip4 = define_service(tn).addrs[0]
    proxy = service_proxy(tn, "proxy-0", backend(box, "proxy-0"))
    client = socks_client(tn)
    wait_for(lambda: reach(box, client, vip4), what="the VIP answering")

    assert tn.call(tn.ts.delete_service, SVC)
    wait_for(lambda: unreachable(box, client, vip4), what="the VIP going dark")
    assert unreachable(box, client, "web.tailnet.test")
    wait_for(lambda: _service_host_cap(proxy) is None, what="the service-host capability withdrawn")


def test_a_deleted_device_is_logged_out(tailnet_box: BoxedTailnet) -> None:
    tn, box = tailnet_box, tailnet_box.box
    node = box.join("doomed", auth_key(tn, ("tag:k8s",)))
    peer = socks_client(tn)
    box.wait_peers(peer, 1)
    [dev] = tn.call(lambda: tn.ts.find_devices(hostname="doomed"))

    assert tn.call(tn.ts.delete_device, dev.id)
    wait_for(lambda: node.status()["BackendState"] == "NeedsLogin", what="NeedsLogin")
    assert tn.call(lambda: tn.ts.find_devices(hostname="doomed")) == []
    ip = node.status()["TailscaleIPs"]
    wait_for(
        lambda: all(
            p.get("Expired") for p in peer.status()["Peer"].values() if set(p["TailscaleIPs"]) & set(ip)
        ),
        what="peers see it expired",
    )


def test_an_expired_node_rejoins_with_a_new_key(tailnet_box: BoxedTailnet) -> None:
    tn, box = tailnet_box, tailnet_box.box
    node = box.join("proxy-0", auth_key(tn, ("tag:proxy",)))
    peer = socks_client(tn)
    box.wait_peers(peer, 1)
    before = box.admin.node("proxy-0")
    ip = node.ip4()

    box.admin.expire_node(before["id"])  # the API cannot force a node key's expiry
    wait_for(lambda: node.status()["BackendState"] == "NeedsLogin", what="NeedsLogin after expiry")

    used = auth_key(tn, ("tag:proxy",))  # the old key is single-use and spent: a new one
    node.up(used)
    wait_for(lambda: node.status()["BackendState"] == "Running", what="Running again")
    after = box.admin.node("proxy-0")
    assert after["id"] == before["id"]  # the same device, as on Tailscale
    assert after["nodeKey"] != before["nodeKey"]
    assert not after["expired"]
    assert after["tags"] == ["tag:proxy"]
    assert node.ip4() == ip
    # Peers reach it again (the old key's entry no longer shadows it).
    wait_for(lambda: peer.cli("ping", "--c=1", "--timeout=2s", ip, timeout=10), what="ping")


def test_a_spent_single_use_key_is_refused_and_rate_limited_registers_are_retried(
    tailnet_box: BoxedTailnet,
) -> None:
    tn, box = tailnet_box, tailnet_box.box
    key = auth_key(tn, ("tag:proxy",))
    box.join("first", key)
    second = box.start_node("second")
    with pytest.raises(RuntimeError, match="timeout"):  # never Running
        second.up(key, "--timeout=10s")  # the register succeeds; the box refuses the node right after
    wait_for(lambda: second.status()["BackendState"] == "NeedsLogin", what="the second node refused")
    assert [d.hostname for d in tn.call(tn.ts.list_devices)] == ["first"]
    [k] = [k for k in box.admin.list_keys() if k["tags"] == ["tag:proxy"]]  # the API shows no uses
    assert k["uses"] == 1

    box.admin.rate_limit_register(reject_next=1, retry_after="1")  # no API for this: the box's
    third = box.start_node("third")
    with pytest.raises(RuntimeError, match="rate limited"):
        third.up(auth_key(tn, ("tag:proxy",)))  # `tailscale up` reports the 429 ...
    # ... and tailscaled retries the registration by itself.
    wait_for(lambda: third.status()["BackendState"] == "Running", timeout=90, what="Running after the retry")
    stats = box.admin.register_stats()
    assert stats["rejected"] == 1
    assert stats["attempts"] >= 3


def test_a_key_expiry_set_in_the_future_takes_effect_then(tailnet_box: BoxedTailnet) -> None:
    tn, box = tailnet_box, tailnet_box.box
    node = box.join("proxy-0", auth_key(tn, ("tag:proxy",)))
    peer = socks_client(tn)
    box.wait_peers(peer, 1)
    at = datetime.now(UTC) + timedelta(seconds=4)
    box.admin.expire_node("proxy-0", at.strftime("%Y-%m-%dT%H:%M:%SZ"))  # no API for this
    assert node.status()["BackendState"] == "Running"  # not yet
    assert not box.admin.node("proxy-0")["expired"]
    wait_for(
        lambda: node.status()["BackendState"] == "NeedsLogin", timeout=30, what="NeedsLogin at the expiry"
    )
    assert box.admin.node("proxy-0")["expired"]
    wait_for(
        lambda: all(p.get("Expired") for p in peer.status()["Peer"].values() if p["HostName"] == "proxy-0"),
        what="the peer seeing it expired",
    )
